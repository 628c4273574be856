"""Pretraining's own seed (``pretrain.seed``): unset, it is the world's seed (so every earlier
run and shipped model is reproduced); another value pretrains the same world again from other
initial weights, corpus sample and batch order."""
from __future__ import annotations

import json

from safetensors.torch import load_file

from experiments.artifacts.rundir import RunDir
from experiments.config import load_config
from experiments.materials import load_materials
from experiments.training import stages


def _pretrain(tmp_path, name, *overrides):
    cfg = load_config("tiny", overrides=['pretrain.shipped="off"', "pretrain.steps=2", *overrides])
    run = RunDir(tmp_path / name)
    stages.pretrain(run, cfg, load_materials(cfg))
    return load_file(str(run.base_model / "model.safetensors")), json.loads(
        (run.base_model / "tokenizer.json").read_text())["model"]["vocab"]


def test_the_default_pretraining_seed_is_the_world_seed_and_another_one_changes_the_weights(tmp_path):
    default, vocab = _pretrain(tmp_path, "default")
    same, same_vocab = _pretrain(tmp_path, "same", "pretrain.seed=0")  # tiny's world seed is 0
    other, other_vocab = _pretrain(tmp_path, "other", "pretrain.seed=7")
    assert all((default[k] == same[k]).all() for k in default)
    assert any(not (default[k] == other[k]).all() for k in default)
    assert vocab == same_vocab == other_vocab  # the same world: the same words
