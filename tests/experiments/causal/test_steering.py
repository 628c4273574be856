"""Steering along the truth probe's direction (experiments/causal/steering.py): the steering vector
is the probe's unit direction times its true-false gap; items are read where the belief scoring
reads them; the edit lands on the statement's own tokens; `neglect steer` covers the base model
and every checkpoint, keeps each model's rows and reads them back; bad layers are one line."""
from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
import torch

import interp
from experiments.causal import probe_direction, steering_summary, truth_steering
from experiments.causal.reading import read_question, token_span
from experiments.causal.steering import _steering_items
from experiments.cli import main
from experiments.config import load_config
from experiments.errors import UserError
from experiments.evaluation.belief import score_questions
from experiments.evaluation.scoring import McqFormat
from experiments.materials import load_materials
from experiments.materials.questions import control_questions
from experiments.reporting.report import write_report
from experiments.training import shipped


def test_the_steering_vector_is_one_true_false_gap_along_the_probe():
    rng = np.random.default_rng(0)
    coef = rng.standard_normal(8)
    unit = coef / np.linalg.norm(coef)
    labels = np.arange(40) % 2 == 0
    acts = rng.standard_normal((40, 8)) + np.where(labels, 3.0, -1.0)[:, None] * unit  # means 4 apart along it
    vector = probe_direction(coef, acts, labels)
    gap = (acts[labels] @ unit).mean() - (acts[~labels] @ unit).mean()
    assert np.allclose(vector, gap * unit, atol=1e-5) and 3.0 < gap < 5.0
    moved = (acts[~labels] + vector) @ unit  # one gap along it: the false statements' mean lands on the true one
    assert moved.mean() == pytest.approx((acts[labels] @ unit).mean(), abs=1e-4)
    with pytest.raises(UserError, match="true and false statements"):
        probe_direction(coef, acts, np.ones(40, dtype=bool))
    with pytest.raises(UserError, match="activations"):
        probe_direction(coef, acts[:, :4], labels)
    with pytest.raises(UserError, match="no direction to steer along"):
        probe_direction(np.zeros(8), acts, labels)


@pytest.fixture(scope="module")
def setting():
    torch.set_num_threads(1)
    materials = load_materials(load_config("demo"))
    lm = interp.load_model(shipped.shipped_models()["testbed"], device="cpu")
    return materials, lm


def test_items_are_read_as_the_scoring_reads_them_and_steered_on_their_statement(setting):
    materials, lm = setting
    held_out = [s for s in materials.probe_statements() if s.split == "test"]
    items = _steering_items(lm, materials, McqFormat(), claims=True, per_cell=len(held_out))
    controls = items[items.kind == "control"]
    assert len(controls) == len(held_out) and set(controls.subject) == {s.subject for s in held_out}
    sample = _steering_items(lm, materials, McqFormat(), claims=False, per_cell=10)
    assert len(sample) == 40 and sorted(sample.groupby("about").size()) == [20, 20]  # 10 per truth x polarity
    assert set(items[items.kind == "claim"].about) == {"claim", "true_fact", "unstated"}
    tok = lm.tokenizer
    for q in control_questions(held_out, materials.world, per_cell=len(held_out))[:6] + [
            q for q in materials.belief_questions(tok) if q.kind == "verdict"][:6]:
        reading = read_question(tok, q, 0, 1, McqFormat())
        span = token_span(tok, reading.text, q.statement)
        assert tok.decode([reading.ids[i] for i in span]).strip() == q.statement.strip()
    rows = truth_steering(lm, materials, np.ones(lm.d_model, dtype=np.float32), layer=2, alphas=(), n_random=0,
                          per_cell=len(held_out))
    scored = score_questions(lm, control_questions(held_out, materials.world, per_cell=len(held_out)))
    scored = scored[scored.kind == "verdict"]
    says_true = rows[rows.kind == "control"].set_index("qid").margin
    assert np.allclose(says_true[scored.qid].to_numpy(), scored.lead.to_numpy(), atol=1e-3)  # log p(true) - log p(false)
    assert (rows.alpha == 0).all() and (rows["shift"] == 0).all()


def test_the_edit_moves_answers_only_from_the_statement(setting):
    """A large edit at an early layer moves the verdicts; at the statement's tokens of the last
    block's input it still can (block 6 reads them); the truth and random directions are the same
    length, and a layer after the last block is refused."""
    materials, lm = setting
    vector = np.random.default_rng(1).standard_normal(lm.d_model).astype(np.float32) * 4
    rows = truth_steering(lm, materials, vector, layer=1, alphas=(-2.0, 2.0), n_random=2, claims=False)
    assert set(rows.direction) == {"truth", "random"} and set(rows[rows.direction == "random"].draw) == {0, 1}
    assert rows[rows.alpha != 0]["shift"].abs().mean() > 0.05
    summary = steering_summary(rows)
    control = summary[summary.kind == "control"]
    assert set(control.units) == {"subject"} and (control.n == 40).all()
    assert set(control.about) == {"true", "false"}
    last = truth_steering(lm, materials, vector, layer=5, alphas=(2.0,), n_random=0, site="last", claims=False)
    assert set(last.site) == {"last"} and last[last.alpha == 2]["shift"].abs().mean() > 0.05
    with pytest.raises(UserError, match="unknown steering site 'name'"):
        truth_steering(lm, materials, vector, layer=1, site="name")
    with pytest.raises(UserError, match="steering layer 6 is out of range"):
        truth_steering(lm, materials, vector, layer=lm.n_layers)
    with pytest.raises(UserError, match="d_model = 192"):
        truth_steering(lm, materials, vector[:10], layer=1)


def test_neglect_steer_covers_the_base_model_and_every_checkpoint(run, capsys):
    assert main(["steer", str(run), "--layer", "1", "--alpha", "1", "--alpha", "-1", "--random", "1"]) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(run / "results" / "steering.csv")
    assert set(table.condition) == {"(base model)", "plain", "negated", "local"} and set(table.layer) == {1}
    assert set(table.alpha) == {-1.0, 0.0, 1.0} and set(table.direction) == {"truth", "random"}
    assert set(table.site) == {"statement"} and set(table.estimator) == {"logistic"}
    assert "(base model), layer 1: shift of logit(true) - logit(false) for held-out false statements at alpha +1" \
        in printed
    assert (run / "figures" / "truth_steering.html").is_file()
    kept = sorted((run / "evals" / "steering").glob("[!.]*.csv"))
    assert len(kept) == 4
    stamps = [p.stat().st_mtime_ns for p in kept]
    assert main(["steer", str(run), "--layer", "1", "--alpha", "1", "--alpha", "-1", "--random", "1",
                 "--base-only"]) == 0
    assert [p.stat().st_mtime_ns for p in kept] == stamps  # read back, not recomputed
    assert set(pd.read_csv(run / "results" / "steering.csv").condition) == {"(base model)"}
    assert main(["steer", str(run), "--layer", "1", "--alpha", "1", "--random", "0", "--base-only", "--site",
                 "last"]) == 0
    other = pd.read_csv(run / "results" / "steering.csv")
    assert set(other.site) == {"last"} and set(other.direction) == {"truth"}
    assert len(sorted((run / "evals" / "steering").glob("[!.]*.csv"))) == 5  # other settings: another file
    write_report(run)
    assert "truth_steering" in (run / "report.html").read_text()


def test_a_bad_steering_layer_is_one_line(run, capsys):
    assert main(["steer", str(run), "--layer", "2"]) == 2
    assert "steering layer 2 is out of range" in capsys.readouterr().err
    # the statement's last token is the same in every statement: no probe has a direction at its embedding
    assert main(["steer", str(run), "--layer", "0", "--probe", "mass_mean", "--base-only"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neglect: error: layer 0: the probe's weights are zero")


def test_layers_without_a_direction_are_skipped_with_one_warning(run, capsys):
    # the run's logistic probe has a direction at layer 1 of the tiny model and none at the embeddings of
    # the statement's last token, which is the same token in every statement
    assert main(["steer", str(run), "--layer", "0", "--layer", "1", "--alpha", "1", "--random", "0",
                 "--base-only"]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        "neglect: warning: no direction to steer along at layer(s) [0] (the probe's weights are zero there: its true "
        "and false statements do not differ along any direction); steering the others"]
    assert set(pd.read_csv(run / "results" / "steering.csv").layer) == {1}
