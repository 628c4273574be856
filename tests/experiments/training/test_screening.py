"""Screening a pretraining run (experiments/training/screening.py): at its screen step a run
whose tracked measure is below the bar stops with one line and exit 3, keeping its state and
tracking; the same command stops again at once; a lower bar resumes it, and the base model it
then leaves is the one an unscreened run leaves."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from experiments.artifacts.rundir import RunDir
from experiments.cli import main
from experiments.config import load_config
from experiments.errors import UserError
from experiments.pipeline import pretrain_stage

SETTINGS = ["pretrain.steps=25", "pretrain.track_every=10", 'pretrain.shipped="off"', "world.heldout_entity_fraction=0.5",
            "world.two_word_names=true", "world.n_people=20", "corpus.tagged=1"]


def _pretrain(out, *settings) -> int:
    args = ["pretrain", "--preset", "tiny", "--out", str(out)]
    for s in SETTINGS + list(settings):
        args += ["--set", s]
    return main(args)


def test_a_screened_out_run_stops_keeps_its_work_and_resumes_under_a_lower_bar(tmp_path, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "run"
    run = RunDir(out)
    # no accuracy reaches 1.5: the screen at step 10 always fails
    assert _pretrain(out, "pretrain.screen_step=10", "pretrain.screen_min=1.5") == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "screened out at step 10: name_city_transfer_acc" in err[0] and "1.5" in err[0]
    record = json.loads(run.pretrain_screened.read_text())
    assert record["step"] == 10 and record["measure"] == "name_city_transfer_acc" and record["value"] < 1.5
    assert pd.read_csv(run.table("pretrain_tracking")).step.tolist() == [10]
    assert not run.base_model.exists() and run.pretrain_state.is_dir()  # the state at step 10 is kept

    assert _pretrain(out, "pretrain.screen_step=10", "pretrain.screen_min=1.5") == 3  # the same bar: at once
    assert "screened out at step 10" in capsys.readouterr().err
    assert pd.read_csv(run.table("pretrain_tracking")).step.tolist() == [10]

    assert _pretrain(out, "pretrain.screen_step=10", "pretrain.screen_min=0.0") == 0  # cleared: resumes
    assert not run.pretrain_screened.exists()
    assert pd.read_csv(run.table("pretrain_tracking")).step.tolist() == [10, 20, 25]
    unscreened = pretrain_stage(load_config("tiny", None, SETTINGS), tmp_path / "plain")
    a, b = load_file(run.base_model / "model.safetensors"), load_file(unscreened / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_screen_settings_that_cannot_work_are_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(UserError, match="must be a tracked step"):
        load_config("tiny", None, SETTINGS + ["pretrain.screen_step=15"])  # not a multiple of track_every
    with pytest.raises(UserError, match="must be a tracked step"):
        load_config("tiny", None, ["pretrain.screen_step=10"])  # nothing tracked
    assert _pretrain(tmp_path / "x", "pretrain.screen_step=10", 'pretrain.screen_measure="no_such_measure"') == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_such_measure" in err[0]
