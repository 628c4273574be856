"""Estimators on planted data: a known direction in Gaussian noise."""
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from probes import CCSProbe, LogisticProbe, MassMeanProbe, PolarityAwareProbe
from probes.linear import sigmoid


def planted(n=4000, d=16, margin=3.0, seed=0, u=None):
    """Labels y in {0,1}; x = noise + (2y-1) * margin/2 * u + offset, for a random unit u."""
    rng = np.random.default_rng(seed)
    if u is None:
        u = rng.normal(size=d)
        u /= np.linalg.norm(u)
    y = rng.integers(0, 2, n)
    return rng.normal(size=(n, d)) + np.outer((2 * y - 1) * margin / 2, u) + 1.5, y, u


def cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("probe", [LogisticProbe(), MassMeanProbe(), MassMeanProbe(lda=True)],
                         ids=["logistic", "mass-mean", "lda"])
def test_recovers_planted_direction_and_matches_sklearn(probe):
    X, y, u = planted()
    X_test, y_test, _ = planted(seed=1, u=u)
    probe.fit(X, y)
    assert cos(probe.direction_, u) >= 0.99
    scaler = StandardScaler().fit(X)
    ref_acc = LogisticRegression().fit(scaler.transform(X), y).score(scaler.transform(X_test), y_test)
    assert ref_acc > 0.9
    assert abs(probe.score(X_test, y_test) - ref_acc) <= 0.01


def test_lda_recovers_the_discriminant_under_correlated_noise_where_mass_mean_does_not():
    """Noise covariance S and class-mean gap S @ w: the Bayes direction is w, the mean gap is not."""
    rng = np.random.default_rng(3)
    d, n = 16, 16000
    w = rng.normal(size=d)
    w /= np.linalg.norm(w)
    rotation, _ = np.linalg.qr(rng.normal(size=(d, d)))
    A = rotation @ np.diag(np.sqrt(np.geomspace(0.2, 10.0, d)))      # well-conditioned, correlated
    S = A @ A.T
    gap = S @ w * 3.0 / np.sqrt(w @ S @ w)        # Mahalanobis separation 3

    def sample(seed):
        r = np.random.default_rng(seed)
        y = r.integers(0, 2, n)
        return r.normal(size=(n, d)) @ A.T + np.outer(y - 0.5, gap), y

    X, y = sample(4)
    X_test, y_test = sample(5)
    lda, mm = MassMeanProbe(lda=True).fit(X, y), MassMeanProbe().fit(X, y)
    assert cos(lda.direction_, w) >= 0.99
    assert cos(mm.direction_, w) < 0.9
    assert lda.score(X_test, y_test) > mm.score(X_test, y_test) + 0.02


def contrast_pairs(n=600, d=24, margin=4.0, seed=0):
    """x+ and x- share the statement content; truth moves them apart along u, in opposite senses.
    x+ also carries a constant 'ends in yes' offset that normalisation must remove."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    y = rng.integers(0, 2, n)
    content = rng.normal(size=(n, d)) * 2.0
    content -= np.outer(content @ u, u)          # shared content carries no truth signal
    shift = np.outer((2 * y - 1) * margin / 2, u)
    x_pos = content + shift + rng.normal(size=(n, d)) * 0.5 + 3.0 * rng.normal(size=d)
    x_neg = content - shift + rng.normal(size=(n, d)) * 0.5
    return np.stack([x_pos, x_neg], axis=1), y, u


def test_ccs_finds_planted_direction_up_to_sign():
    pairs, y, u = contrast_pairs()
    ccs = CCSProbe(n_restarts=5, max_iter=300, random_state=0).fit(pairs)     # no labels
    assert abs(cos(ccs.direction_, u)) >= 0.99
    acc = (ccs.predict(pairs) == y).mean()
    assert max(acc, 1 - acc) >= 0.95
    # with labels only the sign is chosen: now the accuracy itself is high
    oriented = CCSProbe(n_restarts=5, max_iter=300, random_state=0).fit(pairs, y)
    assert cos(oriented.direction_, u) >= 0.99
    test_pairs, y_test, _ = contrast_pairs(seed=0)
    assert oriented.score(test_pairs.reshape(len(test_pairs), -1), y_test) >= 0.95   # flat layout too


def test_ccs_sides_are_linear_probes_in_raw_space():
    """Each side of a CCS probe reads single statements: p(x+) and p(x-) from coef_ with the
    intercept of that side (x+ carries an offset, so the two intercepts differ)."""
    pairs, y, _ = contrast_pairs(n=300)
    ccs = CCSProbe(n_restarts=3, max_iter=200, random_state=0).fit(pairs, y)
    p_pos = sigmoid(pairs[:, 0] @ ccs.coef_ + ccs.intercept_)
    p_neg = sigmoid(pairs[:, 1] @ ccs.coef_ + ccs.intercept_negated_)
    np.testing.assert_allclose(ccs.predict_proba(pairs)[:, 1], 0.5 * (p_pos + 1 - p_neg), atol=1e-9)
    assert abs(ccs.intercept_ - ccs.intercept_negated_) > 1.0
    assert ((p_pos > 0.5) == y).mean() > 0.95 and ((p_neg > 0.5) != y).mean() > 0.95


def polarity_data(n, d=20, seed=0, negated_fraction=0.5, directions=None):
    """TTPD's setting: x = mu + p*n + tau*t_G + tau*p*t_P + noise, with |t_P| > |t_G| so the
    'affirmative truth' axis t_G + t_P points the wrong way for negated statements."""
    rng = np.random.default_rng(seed)
    if directions is None:
        q, _ = np.linalg.qr(np.random.default_rng(100).normal(size=(d, 3)))
        directions = 1.0 * q[:, 0], 2.5 * q[:, 1], 3.0 * q[:, 2]       # t_G, t_P, negation offset
    t_g, t_p, neg = directions
    y = rng.integers(0, 2, n)
    p = np.where(rng.random(n) < negated_fraction, -1.0, 1.0)
    tau = 2.0 * y - 1
    X = rng.normal(size=(n, d)) + np.outer(p, neg) + np.outer(tau, t_g) + np.outer(tau * p, t_p)
    return X, y, p, directions


def test_polarity_aware_probe_generalises_to_negated_where_affirmative_only_fails():
    X, y, p, dirs = polarity_data(4000)
    X_neg, y_neg, _, _ = polarity_data(1000, seed=1, negated_fraction=1.0, directions=dirs)

    affirmative_only = LogisticProbe().fit(X[p > 0], y[p > 0])
    assert affirmative_only.score(X[p > 0], y[p > 0]) > 0.95           # it does learn affirmatives
    assert affirmative_only.score(X_neg, y_neg) < 0.3                  # ... and inverts negations

    ttpd = PolarityAwareProbe().fit(X, y, polarity=np.where(p > 0, "affirmative", "negated"))
    assert ttpd.score(X_neg, y_neg) > 0.8
    assert cos(ttpd.truth_direction_, dirs[0]) >= 0.99
    assert cos(ttpd.polarity_truth_direction_, dirs[1]) >= 0.99
    with_pol = PolarityAwareProbe(use_polarity_direction=True).fit(X, y, polarity=p < 0)
    assert with_pol.score(X_neg, y_neg) > 0.8


@pytest.mark.parametrize("lda", [False, True], ids=["mass-mean", "lda"])
def test_mass_mean_is_the_same_probe_at_any_activation_scale(lda):
    # A small-activation layer once got an all-zero probe: its unscaled 1-D fit never left 0.
    from probes.sweep import sweep_probes

    X, y, u = planted(n=600, margin=1.0)
    ref = MassMeanProbe(lda=lda).fit(X, y)
    assert cos(ref.coef_, u) >= 0.85 and ref.score(X, y) > 0.65
    for factor in (1e-4, 1e3):
        probe = MassMeanProbe(lda=lda).fit(X * factor, y)
        assert cos(probe.coef_, ref.coef_) >= 0.9999
        np.testing.assert_allclose(probe.predict_proba(X * factor), ref.predict_proba(X), atol=1e-3)
        batched = sweep_probes((X * factor)[None], y, method="mass_mean", lda=lda, test_size=0.0)
        np.testing.assert_allclose(batched.coef[0] * factor, ref.coef_, rtol=1e-3, atol=1e-6)
