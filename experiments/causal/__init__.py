"""Causal analyses: which sites of the model carry what finetuning changed (activation patching
between a base model and its finetuned checkpoints)."""
from experiments.causal.patching import KINDS, SITES, belief_patching, default_sites, patching_summary, probe_patching
from experiments.causal.runs import patch_run

__all__ = ["KINDS", "SITES", "belief_patching", "default_sites", "patch_run", "patching_summary", "probe_patching"]
