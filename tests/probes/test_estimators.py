"""scikit-learn compatibility and input validation of every probe."""
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from probes import CCSProbe, LogisticProbe, MassMeanProbe, PolarityAwareProbe, ProbeInputError

SUPERVISED = [LogisticProbe(C=0.5), MassMeanProbe(), MassMeanProbe(lda=True)]


def data(n=300, d=8, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, d))
    X[:, 0] += 3 * (2 * y - 1)
    return X, y


def pairs_data(n=200, d=6, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    content = rng.normal(size=(n, d))
    content[:, 0] = 0
    shift = np.zeros((n, d))
    shift[:, 0] = 2 * (2 * y - 1)
    return np.concatenate([content + shift, content - shift], axis=1), y     # flat [n, 2d]


@pytest.mark.parametrize("probe", SUPERVISED, ids=lambda p: repr(p))
def test_clone_cross_val_and_pipeline(probe):
    X, y = data()
    copy = clone(probe)
    assert copy.get_params() == probe.get_params()
    assert cross_val_score(clone(probe), X, y, cv=3).mean() > 0.95
    pipe = make_pipeline(StandardScaler(), clone(probe)).fit(X, y)
    assert pipe.score(X, y) > 0.95
    assert pipe.predict_proba(X).shape == (len(X), 2)


def test_ccs_in_sklearn_tools():
    X, y = pairs_data()
    ccs = CCSProbe(n_restarts=3, max_iter=200)
    assert clone(ccs).get_params()["n_restarts"] == 3
    assert cross_val_score(ccs, X, y, cv=3).mean() > 0.95       # y only orients the sign
    assert make_pipeline(StandardScaler(), clone(ccs)).fit(X, y).score(X, y) > 0.95


def test_polarity_probe_cross_val_with_polarity_routed_as_fit_param():
    rng = np.random.default_rng(0)
    n, d = 400, 6
    y, neg = rng.integers(0, 2, n), rng.random(n) < 0.5
    X = rng.normal(size=(n, d))
    X[:, 0] += 2 * (2 * y - 1)
    X[:, 1] += 2 * neg
    scores = cross_val_score(PolarityAwareProbe(), X, y, cv=3, params={"polarity": neg})
    assert scores.mean() > 0.95
    assert clone(PolarityAwareProbe(use_polarity_direction=True)).use_polarity_direction


@pytest.mark.parametrize("probe", SUPERVISED + [CCSProbe(n_restarts=2, max_iter=10)], ids=lambda p: repr(p))
def test_bad_inputs_raise_one_line_probe_errors(probe):
    X, y = pairs_data() if isinstance(probe, CCSProbe) else data()
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ProbeInputError, match="NaN or infinite"):
        clone(probe).fit(bad, y)
    bad[3, 1] = np.inf
    with pytest.raises(ProbeInputError, match="NaN or infinite"):
        clone(probe).fit(bad, y)
    with pytest.raises(ProbeInputError, match="exactly two classes"):
        clone(probe).fit(X, np.ones(len(X)))
    with pytest.raises(ProbeInputError, match="1-D with"):
        clone(probe).fit(X, y[:-1])
    with pytest.raises(ProbeInputError):
        clone(probe).fit(X[None], y)
    fitted = clone(probe).fit(X, y)
    with pytest.raises(ProbeInputError, match="features but the probe was fit on"):
        fitted.predict(np.concatenate([X, X], axis=1))
    for err in (ProbeInputError("x"),):
        assert isinstance(err, ValueError)                      # sklearn tools catch ValueError


def test_error_messages_are_one_line():
    X, y = data()
    for call in (lambda: LogisticProbe().fit(X, np.zeros(len(X))),
                 lambda: MassMeanProbe().fit(X[:, :, None], y),
                 lambda: PolarityAwareProbe().fit(X, y, polarity=np.zeros(len(X))),
                 lambda: PolarityAwareProbe().fit(X, y, polarity=None),
                 lambda: CCSProbe().fit(X[:, :7], y)):
        with pytest.raises(ProbeInputError) as info:
            call()
        assert "\n" not in str(info.value)


def test_polarity_probe_needs_both_classes_in_both_polarities():
    X, y = data()
    neg = np.arange(len(X)) % 2 == 0
    y_bad = np.where(neg, 1, y)                                  # every negated statement true
    with pytest.raises(ProbeInputError, match="true and false negated"):
        PolarityAwareProbe().fit(X, y_bad, polarity=neg)
    with pytest.raises(ProbeInputError, match="'affirmative' or 'negated'"):
        PolarityAwareProbe().fit(X, y, polarity=np.where(neg, "negative", "affirmative"))


def test_accepts_torch_tensors_and_string_labels():
    X, y = data()
    labels = np.where(y == 1, "true", "false")
    probe = LogisticProbe().fit(torch.tensor(X, dtype=torch.float32, requires_grad=True), labels)
    assert set(probe.predict(X)) <= {"true", "false"}
    assert probe.score(torch.tensor(X), labels) > 0.95
    assert probe.direction_[0] > 0.9                             # points to classes_[1] == "true"


def test_unfitted_probe_raises_not_fitted():
    from sklearn.exceptions import NotFittedError
    for probe in (LogisticProbe(), CCSProbe(), PolarityAwareProbe()):
        with pytest.raises(NotFittedError):
            probe.predict_proba(np.zeros((2, 4)))
