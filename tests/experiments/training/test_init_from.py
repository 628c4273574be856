"""Pretraining continued from a saved base model (``pretrain.init_from``): it starts from that
model's weights, and a model of another world or shape is refused in one line."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from experiments.artifacts.checksums import file_digest
from experiments.artifacts.rundir import RunDir
from experiments.cli import main
from experiments.config import load_config
from experiments.errors import UserError
from experiments.materials import load_materials
from experiments.training import stages

OFF = 'pretrain.shipped="off"'


def _pretrain(tmp_path, name, *overrides):
    cfg = load_config("tiny", overrides=[OFF, *overrides])
    run = RunDir(tmp_path / name)
    stages.pretrain(run, cfg, load_materials(cfg))
    return run


def test_continued_pretraining_starts_where_the_saved_model_ended(tiny_run, tmp_path):
    base = RunDir(tiny_run[0]).base_model
    fresh = pd.read_csv(_pretrain(tmp_path, "fresh", "pretrain.steps=5", "pretrain.log_every=1").pretrain_log)
    cont = pd.read_csv(_pretrain(tmp_path, "cont", "pretrain.steps=5", "pretrain.log_every=1",
                                 f'pretrain.init_from="{base}"').pretrain_log)
    done = pd.read_csv(RunDir(tiny_run[0]).pretrain_log)
    # the first step of the continued run is at the saved model's loss, far below a fresh start
    assert abs(cont.loss.iloc[0] - done.loss.iloc[-1]) < 0.3 < fresh.loss.iloc[0] - cont.loss.iloc[0]


@pytest.mark.parametrize("override, message", [
    ("world.seed=5", "another world"),
    ("model.d_model=48", "another model shape .*hidden_size 32 there, 48 here"),
])
def test_a_base_model_of_another_world_or_shape_is_refused_in_one_line(tiny_run, tmp_path, override, message):
    base = RunDir(tiny_run[0]).base_model
    with pytest.raises(UserError, match=message) as err:
        _pretrain(tmp_path, "bad", "pretrain.steps=2", override, f'pretrain.init_from="{base}"')
    assert "\n" not in str(err.value)


def test_a_missing_directory_is_refused(tmp_path):
    with pytest.raises(UserError, match="not a saved base model"):
        _pretrain(tmp_path, "bad", "pretrain.steps=2", f'pretrain.init_from="{tmp_path / "nope"}"')


def test_an_exported_later_phase_records_the_phase_before_it(tmp_path):
    """`neglect pretrain --export` of a continued run nests the exported parent's provenance."""
    torch.set_num_threads(1)
    first, second = tmp_path / "first.export", tmp_path / "second.export"
    assert main(["pretrain", "--preset", "tiny", "--out", str(tmp_path / "first"), "--export", str(first),
                 "--set", "pretrain.steps=3"]) == 0
    assert main(["pretrain", "--preset", "tiny", "--out", str(tmp_path / "second"), "--export", str(second),
                 "--set", "pretrain.steps=3", "--set", f'pretrain.init_from="{first}"']) == 0
    record = json.loads((second / "provenance.json").read_text())["init_from"]
    assert record["path"] == str(first) and record["weights_blake2b"] == file_digest(first / "model.safetensors")
    assert "--export" in record["provenance"]["command"] and "init_from" not in record["provenance"]
    assert record["provenance"]["config"]["pretrain"]["steps"] == 3
