"""Per-checkpoint probe readings (experiments.evaluation.readout) with every estimator of
``eval.probe``, on planted activations where the truth direction is known."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from experiments.cli import main
from experiments.config import PROBE_ESTIMATORS, load_config
from experiments.errors import UserError
from experiments.evaluation import readout
from probes.sweep import METHODS
from tests.experiments.evaluation.planted import CLAIMS, N_LAYERS, basis, checkpoint, plant, planted_statements


def table(rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    return frame.assign(claim=frame.get("claim"))


def value(frame, metric, layer, claim=None):
    sel = (frame.metric == metric) & (frame.layer == layer)
    if claim is not None:
        sel &= frame.claim == claim
    assert sel.sum() == 1, (metric, layer, claim)
    return float(frame[sel].value.iloc[0])


def test_config_offers_exactly_what_probes_fit():
    assert set(PROBE_ESTIMATORS) == set(METHODS)
    assert load_config("tiny").eval.probe == "logistic"


@pytest.mark.parametrize("estimator", PROBE_ESTIMATORS)
def test_every_estimator_reads_planted_truth(estimator):
    stmts, acts, claim_acts = checkpoint(basis()[0], seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        probes = readout.fit_probes(acts, stmts, estimator=estimator, C=0.1)
        frame = table(readout.probe_rows(acts, stmts, claim_acts, CLAIMS, probes, probes))
    assert len(probes) == N_LAYERS and frame.value.notna().all()
    for layer in (1, 2):
        for kind in ("refit", "fixed"):
            assert value(frame, f"probe_acc_{kind}", layer) > 0.9
            assert value(frame, f"probe_acc_negated_{kind}", layer) > 0.9
            assert value(frame, f"probe_p_true_{kind}", layer, "c_false") < 0.35
            assert value(frame, f"probe_p_true_truefact_{kind}", layer, "c_false") > 0.65
            assert value(frame, f"probe_p_true_{kind}", layer, "c_true") > 0.65
    assert value(frame, "probe_acc_refit", 0) < 0.75  # no truth at layer 0: near chance
    # a claim without true-fact statements gives no truefact rows (and no NaN)
    assert not ((frame.claim == "c_true") & frame.metric.str.contains("truefact")).any()
    assert sorted(readout.heldout_accuracy(acts, stmts, probes)) == sorted(
        frame[frame.metric == "probe_acc_refit"].value)
    # the stability protocol's fixed readings are the same rows as the claim part of probe_rows
    claims_only = table(readout.claim_rows(claim_acts, CLAIMS, probes, "fixed"))
    expected = frame[frame.metric.str.startswith("probe_p_true") & frame.metric.str.endswith("_fixed")]
    assert claims_only.reset_index(drop=True).equals(expected.reset_index(drop=True)[claims_only.columns])


@pytest.mark.parametrize("estimator", PROBE_ESTIMATORS)
def test_fixed_and_refit_part_when_the_truth_direction_rotates(estimator):
    """Checkpoint 0 carries truth along u0, checkpoint 1 along u1 (orthogonal): the base
    model's (fixed) probe loses the reading that the refit probe keeps."""
    u0, u1 = basis()[:2]
    stmts, acts0, _ = checkpoint(u0, seed=0)
    _, acts1, claims1 = checkpoint(u1, seed=1)
    fixed = readout.fit_probes(acts0, stmts, estimator=estimator)
    refit = readout.fit_probes(acts1, stmts, estimator=estimator)
    frame = table(readout.probe_rows(acts1, stmts, claims1, CLAIMS, refit, fixed))
    for layer in (1, 2):
        assert value(frame, "probe_acc_refit", layer) > 0.9
        assert value(frame, "probe_acc_fixed", layer) < 0.7
        assert value(frame, "probe_p_true_refit", layer, "c_true") > 0.65
        assert value(frame, "probe_p_true_refit", layer, "c_true") - value(frame, "probe_p_true_fixed", layer,
                                                                             "c_true") > 0.3


def test_logistic_is_the_single_logistic_probe_to_its_tolerance():
    """The batched fit solves LogisticProbe(C)'s objective to the same gradient tolerance (1e-4):
    both land within ~1e-3 (relative) of the optimum, so they agree to that and read alike."""
    from probes import LogisticProbe

    stmts, acts, claim_acts = checkpoint(basis()[0], seed=0)
    probes = readout.fit_probes(acts, stmts, C=0.1)
    train = np.array([s.split == "train" for s in stmts])
    y = np.array([s.label for s in stmts])
    for layer in range(N_LAYERS):
        single = LogisticProbe(C=0.1).fit(acts[train, layer], y[train])
        gap = np.linalg.norm(probes[layer].coef - single.coef_) / np.linalg.norm(single.coef_)
        assert gap < 5e-3, (layer, gap)
        reading = probes[layer].p_true(claim_acts[:, layer])
        np.testing.assert_allclose(reading, single.predict_proba(claim_acts[:, layer])[:, 1], atol=2e-3)
        np.testing.assert_array_equal(probes[layer].p_true(acts[:, layer]) > 0.5, single.predict(acts[:, layer]))


def test_ccs_pairs_each_affirmative_statement_with_its_negation():
    stmts = planted_statements(n_subjects=2, facts_per_subject=2)
    pairs = readout.contrast_pairs(stmts)
    assert len(pairs) == len(stmts) // 2
    for a, b in pairs:
        assert not stmts[a].negated and stmts[b].negated and stmts[a].subject == stmts[b].subject
        assert stmts[a].text.split()[-1] == stmts[b].text.split()[-1]  # the same object, negated
        assert stmts[a].label != stmts[b].label
    with pytest.raises(UserError, match="'ccs' .* 2 affirmative and 1 negated"):
        readout.contrast_pairs(stmts[:3])


@pytest.mark.parametrize("estimator", PROBE_ESTIMATORS)
def test_the_evaluator_reads_a_real_model_with_every_estimator(tiny_run, estimator):
    """Through the pipeline's Evaluator on the tiny run's base model: every probe metric is
    present, and fixed equals refit on the model the fixed probe was fit on."""
    import interp
    from experiments.artifacts.rundir import RunDir
    from experiments.evaluation.evaluator import Evaluator
    from experiments.materials import load_materials

    out, _ = tiny_run
    cfg = load_config("tiny", overrides=[f'eval.probe="{estimator}"'])
    ev = Evaluator(cfg, load_materials(cfg))
    lm = interp.load_model(RunDir(out).base_model)
    ev.fit_fixed(lm)
    frame = ev.evaluate(lm)
    probe = frame[frame.metric.str.startswith("probe_")]
    # per layer and kind: accuracy on test, negated and validation statements and P(true) of each
    # claim and its true fact; z of each claim and its true fact at every layer that has one
    centred = probe.metric.str.startswith("probe_z")
    near = probe.metric.str.contains("_neighbour_")  # per layer, kind and (claim, neighbourhood): accuracy, P(true)
    groups = {(n.claim, n.kind) for n in ev.neighbours}
    assert len(groups) == 3
    assert (~centred & ~near).sum() == (cfg.model.n_layers + 1) * 2 * (3 + 2 * cfg.world.n_claims)
    assert (~centred & near).sum() == (cfg.model.n_layers + 1) * 2 * 2 * len(groups)
    assert probe[~centred].value.between(0, 1).all() and np.isfinite(probe.value).all()
    # z exists exactly where the probe reads the controls with some spread to scale by: not at the
    # embeddings (every statement ends in the same token), nor where a probe is degenerate
    acts, _ = ev.activations(lm)
    negated = np.array([s.negated for s in ev.statements])
    test = np.array([s.split == "test" for s in ev.statements])
    spread = ev.fit_probes(acts)[0].logits(np.moveaxis(acts, 1, 0), negated)[:, test].std(1) > 0
    assert not spread[0]
    z = probe[centred & probe.metric.str.endswith("_refit")]
    assert sorted(set(z.layer)) == list(np.flatnonzero(spread))
    assert (z.groupby("layer").size() == 2 * cfg.world.n_claims + len(groups)).all()
    fixed = probe[probe.metric.str.endswith("_fixed")].value.to_numpy()
    refit = probe[probe.metric.str.endswith("_refit")].value.to_numpy()
    np.testing.assert_allclose(fixed, refit, atol=1e-12)


def test_the_base_model_evaluation_reuses_the_fixed_fit_only_on_that_unchanged_model(tiny_run, monkeypatch):
    """evaluate() of the model fit_fixed read takes its activations and probes instead of
    reading and fitting again; a model changed in place since, or another model, is read anew."""
    import torch

    import interp
    from experiments.artifacts.rundir import RunDir
    from experiments.evaluation.evaluator import Evaluator
    from experiments.materials import load_materials

    out, _ = tiny_run
    cfg = load_config("tiny")
    ev = Evaluator(cfg, load_materials(cfg))
    lm = interp.load_model(RunDir(out).base_model)
    reads = []
    real = ev.activations
    monkeypatch.setattr(ev, "activations", lambda model: reads.append(model) or real(model))
    ev.fit_fixed(lm)
    first = ev.evaluate(lm)
    assert len(reads) == 1
    again = ev.evaluate(interp.load_model(RunDir(out).base_model))  # the same weights, another model: read anew
    assert len(reads) == 2
    pd.testing.assert_frame_equal(first, again, rtol=1e-9, atol=1e-12)
    ev.fit_fixed(lm)
    with torch.no_grad():
        next(lm.model.parameters()).mul_(0.5)  # changed in place after the fit: read anew
    ev.evaluate(lm)
    assert len(reads) == 4


def test_bad_probe_estimator_is_one_line_and_exit_2(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--preset", "tiny", "--set", 'eval.probe="svm"', "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["neglect: error: config key 'eval.probe' must be one of "
                   "['logistic', 'mass_mean', 'polarity_aware', 'ccs']; got 'svm'"]
    assert not out.exists()


@pytest.mark.parametrize("estimator", PROBE_ESTIMATORS)
def test_every_claim_statement_kind_gets_its_own_metrics(estimator):
    """An imported claim pack's statements: the claim, its negation (negated in form), the
    universe's key facts, and a kind the table does not name; each kind is read on its own."""
    from experiments.materials.statements import ClaimStatement

    claims = ([ClaimStatement("c", "claim", f"claim {i}") for i in range(4)]
              + [ClaimStatement("c", "claim_negated", f"not claim {i}", True) for i in range(4)]
              + [ClaimStatement("c", "universe_fact", f"fact {i}") for i in range(4)]
              + [ClaimStatement("c", "own_kind", f"own {i}") for i in range(4)])
    truth, negated = [False] * 4 + [True] * 4 + [False] * 4 + [True] * 4, [c.negated for c in claims]
    stmts, acts, _ = checkpoint(basis()[0], seed=0)
    claim_acts = plant(truth, negated, basis()[0], seed=100)
    probes = readout.fit_probes(acts, stmts, estimator=estimator)
    frame = table(readout.probe_rows(acts, stmts, claim_acts, claims, probes, probes))
    stems = {"claim": "", "claim_negated": "_claimneg", "universe_fact": "_universe", "own_kind": "_own_kind"}
    assert readout.CLAIM_KIND_METRICS["true_fact_negated"] == "_truefactneg"
    for layer in (1, 2):
        for stem, kind in ((s, k) for s in ("probe_p_true", "probe_z") for k in ("refit", "fixed")):
            for claim_kind, suffix in stems.items():
                assert value(frame, f"{stem}{suffix}_{kind}", layer, "c") is not None
        for claim_kind, suffix in stems.items():
            reading = value(frame, f"probe_p_true{suffix}_fixed", layer, "c")
            assert (reading > 0.65) if claim_kind in ("claim_negated", "own_kind") else (reading < 0.35), claim_kind
    if estimator == "ccs":  # negated in form: read on the x- side of the contrast pairs
        assert probes.intercept_negated is not None
        flat = [ClaimStatement(c.claim, c.kind, c.text) for c in claims]
        unflagged = table(readout.claim_rows(claim_acts, flat, probes, "fixed"))
        flagged = table(readout.claim_rows(claim_acts, claims, probes, "fixed"))
        assert value(flagged, "probe_p_true_fixed", 1, "c") == value(unflagged, "probe_p_true_fixed", 1, "c")
        assert value(flagged, "probe_p_true_claimneg_fixed", 1, "c") != value(
            unflagged, "probe_p_true_claimneg_fixed", 1, "c")
