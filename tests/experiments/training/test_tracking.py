"""Judgement tracked during pretraining: one row per tracking step, measures in range, and the
base model it leaves is the one an untracked run leaves (scoring never touches training)."""
from __future__ import annotations

import pandas as pd
import torch
from safetensors.torch import load_file

from experiments.artifacts.rundir import RunDir
from experiments.config import load_config
from experiments.pipeline import pretrain_stage
from experiments.reporting.report import build_figure
from experiments.training.stages import tracking_steps

SETTINGS = ["pretrain.steps=25", 'pretrain.shipped="off"', "world.heldout_entity_fraction=0.5",
            "world.two_word_names=true", "world.n_people=20", "corpus.tagged=1"]


def test_tracking_steps_cover_every_n_and_the_last():
    assert tracking_steps(25, 10) == [10, 20, 25]
    assert tracking_steps(20, 10) == [10, 20]
    assert tracking_steps(20, 0) == []


def test_pretraining_tracks_judgement_without_changing_the_model(tmp_path):
    torch.set_num_threads(1)
    tracked = pretrain_stage(load_config("tiny", None, SETTINGS + ["pretrain.track_every=10"]), tmp_path / "a")
    plain = pretrain_stage(load_config("tiny", None, SETTINGS), tmp_path / "b")
    table = pd.read_csv(RunDir(tmp_path / "a").table("pretrain_tracking"))
    assert table.step.tolist() == [10, 20, 25]
    assert (table.tokens == table.step * 8 * 64).all()  # the tiny preset's batch x sequence length
    for kind in ("judged", "never_judged"):
        for measure in ("verdict_acc", "verdict_first_share", "yesno_acc", "tagged_acc", "statement_cloze_acc"):
            values = table[f"{kind}_{measure}"]
            assert values.between(0, 1).all() and values.notna().all()
    for measure in ("judged_acc", "transfer_acc", "heldout_acc"):  # the world holds out people
        assert table[f"name_city_{measure}"].between(0, 1).all()
    assert not RunDir(tmp_path / "b").table("pretrain_tracking").exists()
    fig = build_figure(tmp_path / "a", "pretraining_tracking")  # `neglect plot RUN pretraining_tracking`
    names = {trace.name for trace in fig.data}
    assert {"verdict, never judged", "judged -> held-out"} <= names
    assert build_figure(tmp_path / "b", "pretraining_tracking") is None
    a, b = load_file(tracked / "model.safetensors"), load_file(plain / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
