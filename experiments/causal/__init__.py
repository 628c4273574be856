"""Causal analyses: which sites of the model carry what finetuning changed (activation patching
between a base model and its finetuned checkpoints), and whether the judgements follow the truth
probe's direction (steering along it)."""
from experiments.causal.patching import KINDS, SITES, belief_patching, default_sites, patching_summary, probe_patching
from experiments.causal.runs import patch_run, steer_run
from experiments.causal.steering import ALPHAS, probe_direction, steering_summary, truth_steering

__all__ = ["KINDS", "SITES", "belief_patching", "default_sites", "patch_run", "patching_summary", "probe_patching",
           "ALPHAS", "probe_direction", "steer_run", "steering_summary", "truth_steering"]
