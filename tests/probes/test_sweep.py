"""Batched sweeps over layers x checkpoints agree with the scikit-learn reference loop."""
import numpy as np
import pytest
import torch

from probes import LogisticProbe, ProbeInputError
from probes.sweep import stratified_split, sweep_probes, sweep_selectivity


def planted_sweep(C=2, L=3, n=2400, d=16, seed=0):
    """One random direction per (checkpoint, layer), with margins from hard to easy."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    u = rng.normal(size=(C, L, d))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    margin = np.linspace(0.5, 3.0, C * L).reshape(C, L)
    X = rng.normal(size=(C, L, n, d)) + ((2 * y - 1)[:, None] * margin[..., None, None] / 2) * u[:, :, None] + 0.7
    return X, y, u


@pytest.mark.parametrize("method,kw", [("logistic", {}), ("mass_mean", {}), ("mass_mean", {"lda": True})])
def test_batched_sweep_matches_sklearn_reference(method, kw):
    X, y, u = planted_sweep()
    fast = sweep_probes(X, y, method=method, **kw)
    ref = sweep_probes(X, y, method=method, backend="sklearn", **kw)
    assert fast.test_accuracy.shape == (2, 3) and fast.coef.shape == (2, 3, 16)
    assert np.abs(fast.test_accuracy - ref.test_accuracy).max() <= 0.01
    assert np.abs(fast.train_accuracy - ref.train_accuracy).max() <= 0.01
    assert ((fast.direction * ref.direction).sum(-1) >= 0.999).all()
    assert ((fast.direction * u).sum(-1)[1, 2] >= 0.99)           # the widest margin: planted direction
    assert (fast.test_accuracy[1, 2] > 0.9) and (fast.test_accuracy[0, 0] < 0.75)


def test_sweep_accepts_torch_float64_chunks_and_explicit_split():
    X, y, _ = planted_sweep(C=1, L=4, n=400)
    train, test = np.arange(300), np.arange(300, 400)
    whole = sweep_probes(torch.tensor(X[0]), y, train_index=train, test_index=test, dtype=torch.float64)
    chunked = sweep_probes(X[0], y, train_index=train, test_index=test, dtype=torch.float64, chunk_size=3)
    np.testing.assert_allclose(whole.coef, chunked.coef, rtol=1e-6, atol=1e-8)
    assert whole.test_logits.shape == (4, 100)
    assert np.array_equal(whole.test_index, test)
    rows = whole.rows(dims=("layer",))
    assert len(rows) == 4 and set(rows[0]) == {"layer", "method", "train_accuracy", "test_accuracy"}
    no_test = sweep_probes(X[0], y, test_size=0.0)
    assert np.isnan(no_test.test_accuracy).all() and len(no_test.train_index) == 400


def test_stratified_split_is_seeded_and_balanced():
    t = np.array([0] * 300 + [1] * 100)
    tr, te = stratified_split(t, 0.25, seed=3)
    assert len(te) == 100 and t[te].sum() == 25 and len(np.intersect1d(tr, te)) == 0
    assert np.array_equal(te, stratified_split(t, 0.25, seed=3)[1])


def test_sweep_input_errors():
    X, y, _ = planted_sweep(C=1, L=2, n=100, d=4)
    bad = X.copy()
    bad[0, 1, 5, 2] = np.nan
    with pytest.raises(ProbeInputError, match="NaN"):
        sweep_probes(bad, y)
    with pytest.raises(ProbeInputError, match="exactly two classes"):
        sweep_probes(X, np.zeros(100))
    with pytest.raises(ProbeInputError, match="1-D with 100"):
        sweep_probes(X, y[:50])
    with pytest.raises(ProbeInputError, match="method"):
        sweep_probes(X, y, method="svm")
    with pytest.raises(ProbeInputError, match="shape"):
        sweep_probes(np.zeros(5), y)


def test_selectivity_of_sweep_separates_signal_from_chance():
    X, y, _ = planted_sweep(C=1, L=2, n=800, d=8)
    sel = sweep_selectivity(X, y, n_controls=2)
    assert (np.abs(sel["control_accuracy"] - 0.5) < 0.1).all()
    assert sel["selectivity"][0, 1] > 0.3


def fact_groups(n_facts=150, d=12, L=2, seed=0):
    """Statements in groups of four per fact (A(o), A(o'), not A(o), not A(o')) in TTPD's model:
    content + p * negation offset + tau * t_G + tau * p * t_P + noise. Returns acts [L, n, d],
    truth labels, negation flags, contrast pairs (each affirmative with its negation) and t_G."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, 3)))
    t_g, t_p, offset = 1.5 * q[:, 0], 0.8 * q[:, 1], 3.0 * q[:, 2]
    rows, y, negated = [], [], []
    for _ in range(n_facts):
        content = rng.normal(size=d)
        content -= (content @ q[:, 0]) * q[:, 0]            # the content carries no truth
        for neg in (False, True):
            for correct in (True, False):
                truth, p = correct != neg, -1.0 if neg else 1.0
                tau = 1.0 if truth else -1.0
                rows.append(content + p * offset + tau * t_g + tau * p * t_p)
                y.append(truth)
                negated.append(neg)
    X = np.stack(rows)
    acts = np.stack([X + 0.6 * rng.normal(size=X.shape) for _ in range(L)])
    i = np.arange(len(y))
    pairs = np.stack([i[i % 4 < 2], i[i % 4 < 2] + 2], axis=1)
    return acts, np.array(y), np.array(negated), pairs, q[:, 0]


@pytest.mark.parametrize("method", ["polarity_aware", "ccs"])
def test_polarity_aware_and_ccs_sweeps_match_their_single_estimators(method):
    acts, y, negated, pairs, t_g = fact_groups()
    kw = dict(polarity=negated) if method == "polarity_aware" else dict(pairs=pairs, max_iter=300)
    train, test = np.arange(400), np.arange(400, 600)
    fast = sweep_probes(acts, y, method=method, train_index=train, test_index=test, dtype=torch.float64, **kw)
    ref = sweep_probes(acts, y, method=method, backend="sklearn", train_index=train, test_index=test, **kw)
    assert np.abs(fast.test_accuracy - ref.test_accuracy).max() <= 0.01
    assert ((fast.direction * ref.direction).sum(-1) >= 0.999).all()
    assert (fast.test_accuracy > 0.9).all() and ((fast.direction @ t_g) > 0.9).all()
    # the stack reads statements as the sweep scored them (CCS: negated ones on the x- side)
    p = fast.p_true(acts[:, test], negated=negated[test])
    assert np.array_equal(p > 0.5, fast.test_logits > 0)
    assert ((p > 0.5) == y[test])[:, negated[test]].mean() > 0.9


def test_sweep_result_reads_like_the_single_probe_and_indexes_by_layer():
    X, y, _ = planted_sweep(C=1, L=3, n=400)
    result = sweep_probes(X[0], y, backend="sklearn", C=0.5)
    layer = result[1]
    assert len(result) == 3 and layer.coef.shape == (16,) and layer.intercept.shape == ()
    single = LogisticProbe(C=0.5).fit(X[0, 1, result.train_index], y[result.train_index])
    np.testing.assert_array_equal(layer.p_true(X[0, 1]), single.predict_proba(X[0, 1])[:, 1])
    np.testing.assert_array_equal(result.p_true(X[0])[1], layer.p_true(X[0, 1]))
    with pytest.raises(TypeError):
        len(layer)
    with pytest.raises(ProbeInputError, match="linear probes need"):
        result.p_true(X[0, 1])


def test_new_methods_need_their_inputs():
    acts, y, negated, pairs, _ = fact_groups(n_facts=10, d=4, L=1)
    with pytest.raises(ProbeInputError, match="polarity is required"):
        sweep_probes(acts, y, method="polarity_aware")
    with pytest.raises(ProbeInputError, match="needs pairs"):
        sweep_probes(acts, y, method="ccs")
    with pytest.raises(ProbeInputError, match=r"shape \[k, 2\]"):
        sweep_probes(acts, y, method="ccs", pairs=pairs[:, :1])
    with pytest.raises(ProbeInputError, match="true and false negated"):
        sweep_probes(acts, y, method="polarity_aware", polarity=negated, train_index=np.flatnonzero(~negated | y))
