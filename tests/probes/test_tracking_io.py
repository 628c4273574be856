"""Direction tracking over layers/checkpoints, and sharing directions through safetensors."""
import json

import numpy as np
import pytest

from probes import CCSProbe, LogisticProbe, MassMeanProbe, PolarityAwareProbe, ProbeInputError
from probes.io import load_directions, load_probe, load_sweep, save_directions, save_probe, save_sweep
from probes.sweep import sweep_probes
from probes.tracking import (adjacent_cosine, cosine_matrix, cosine_similarity, cosine_to_reference,
                             fixed_vs_refit, orthonormal_basis, principal_angles, transfer_matrix)


def rotating_truth(C=5, n=1500, d=12, seed=0):
    """The truth direction rotates from e0 towards e1 over checkpoints (0 to 90 degrees).
    Tracked with mass-mean probes, whose direction is unbiased in isotropic noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    angles = np.linspace(0, np.pi / 2, C)
    dirs = np.zeros((C, d))
    dirs[:, 0], dirs[:, 1] = np.cos(angles), np.sin(angles)
    acts = rng.normal(size=(C, n, d)) + 2.5 * (2 * y - 1)[None, :, None] * dirs[:, None, :]
    return acts, y, dirs, angles


def test_cosines_track_a_rotating_direction():
    acts, y, dirs, angles = rotating_truth()
    fit = sweep_probes(acts, y, method="mass_mean", test_size=0.0)
    cos_ref = cosine_to_reference(fit.coef, axis=0, reference=0)
    assert np.allclose(cos_ref, np.cos(angles), atol=0.05)
    assert np.allclose(adjacent_cosine(fit.coef), np.cos(angles[1] - angles[0]), atol=0.05)
    m = cosine_matrix(fit.coef)
    assert m.shape == (5, 5) and np.allclose(np.diag(m), 1) and np.allclose(m, m.T)
    assert cosine_similarity(np.eye(3), -np.eye(3)).tolist() == [-1, -1, -1]
    stacked = np.stack([fit.coef, fit.coef * 2])                       # [2, C, d]: axis 1 = checkpoints
    assert np.allclose(cosine_to_reference(stacked, axis=1)[1], cos_ref)


def test_transfer_matrix_decays_off_diagonal_and_fixed_probe_drifts():
    acts, y, dirs, _ = rotating_truth()
    fit = sweep_probes(acts, y, method="mass_mean", test_size=0.0)
    T = transfer_matrix(fit.coef, fit.intercept, acts, y)
    assert T.shape == (5, 5)
    assert (np.diag(T) > 0.95).all()
    assert T[0, 4] < 0.65 and T[4, 0] < 0.65                          # 90 degrees apart: near chance
    assert T[0, 1] > T[0, 2] > T[0, 4]

    true_stmt = acts[:, y == 1][:, :50]                               # [C, 50, d] true statements
    readings = fixed_vs_refit(true_stmt, fit.coef, fit.intercept, fixed_at=0)
    assert readings["fixed"].shape == readings["refit"].shape == (5, 50)
    assert readings["refit"].mean(1).min() > 0.9                      # refit probes keep reading "true"
    assert readings["fixed"].mean(1)[-1] < 0.7                        # the frozen probe loses it
    single = fixed_vs_refit(true_stmt[:, 0], fit.coef, fit.intercept)
    assert single["fixed"].shape == (5, 1)


def test_principal_angles():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 10))
    assert np.allclose(principal_angles(a, a), 0, atol=1e-6)
    mixed = np.array([[1.0, 1.0], [0.0, 1.0]]) @ a                     # same span, other basis
    assert np.allclose(principal_angles(a, mixed), 0, atol=1e-6)
    e = np.eye(4)
    angles = principal_angles(e[[0, 1]], np.stack([e[0], np.cos(0.3) * e[1] + np.sin(0.3) * e[2]]))
    assert np.allclose(angles, [0, 0.3], atol=1e-9)
    assert np.allclose(principal_angles(e[[0]], e[[3]]), np.pi / 2)
    assert orthonormal_basis(np.stack([e[0], 2 * e[0], e[1]])).shape == (4, 2)
    with pytest.raises(ProbeInputError, match="widths"):
        principal_angles(e[[0]], np.eye(5)[[0]])


def test_tracking_input_errors():
    with pytest.raises(ProbeInputError, match="zero norm"):
        cosine_similarity(np.zeros(3), np.ones(3))
    with pytest.raises(ProbeInputError, match="transfer_matrix needs"):
        transfer_matrix(np.ones((2, 3)), np.ones(2), np.ones((2, 5, 4)), np.ones(5))
    with pytest.raises(ProbeInputError, match="fixed_at"):
        fixed_vs_refit(np.ones((2, 3)), np.ones((2, 3)), np.ones(2), fixed_at=5)


def _pairs(n=200, d=5, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    c = rng.normal(size=(n, d))
    c[:, 0] = 0
    s = np.zeros((n, d))
    s[:, 0] = 2 * (2 * y - 1)
    return np.stack([c + s, c - s], 1), y


@pytest.mark.parametrize("make", [
    lambda X, y, p: LogisticProbe(C=0.3).fit(X, y),
    lambda X, y, p: MassMeanProbe(lda=True).fit(X, np.where(y == 1, "true", "false")),
    lambda X, y, p: PolarityAwareProbe(use_polarity_direction=True).fit(X, y, polarity=p),
    None,
], ids=["logistic", "lda-string-labels", "polarity", "ccs"])
def test_probe_round_trip_through_safetensors(tmp_path, make):
    rng = np.random.default_rng(0)
    if make is None:
        X, y = _pairs()
        probe = CCSProbe(n_restarts=2, max_iter=100).fit(X, y)
    else:
        X = rng.normal(size=(300, 6))
        y = rng.integers(0, 2, 300)
        p = rng.random(300) < 0.5
        X[:, 0] += 2 * (2 * y - 1)
        probe = make(X, y, p)
    path = save_probe(probe, tmp_path / "probe.safetensors", layer=3, checkpoint="step-100")
    loaded, meta = load_probe(path)
    assert type(loaded) is type(probe) and loaded.get_params() == probe.get_params()
    assert meta == {"layer": 3, "checkpoint": "step-100"}
    np.testing.assert_allclose(loaded.predict_proba(X), probe.predict_proba(X))
    np.testing.assert_allclose(loaded.direction_, probe.direction_)
    assert (loaded.predict(X) == probe.predict(X)).all()
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
    # the header is plain JSON that other tools can read without this package
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8:8 + header_len])
    assert json.loads(header["__metadata__"]["metadata"])["probe"] == type(probe).__name__


def test_sweep_and_raw_directions_round_trip(tmp_path):
    acts, y, _, _ = rotating_truth(C=3, n=300, d=6)
    result = sweep_probes(acts[None], y)
    path = save_sweep(result, tmp_path / "sweep.safetensors", dims=("seed", "checkpoint"), model="toy")
    back, meta = load_sweep(path)
    np.testing.assert_array_equal(back.coef, result.coef)
    np.testing.assert_array_equal(back.test_accuracy, result.test_accuracy)
    assert meta["dims"] == ["seed", "checkpoint"] and meta["model"] == "toy"
    assert back.intercept_negated is None

    rng = np.random.default_rng(1)
    pairs = np.stack([np.arange(0, 60, 2), np.arange(1, 60, 2)], axis=1)
    labels = np.zeros(60, int)
    labels[pairs[::2, 0]] = labels[pairs[1::2, 1]] = 1                 # each pair: one true, one false
    ccs = sweep_probes(rng.normal(size=(2, 60, 4)), labels, method="ccs", pairs=pairs, max_iter=20, test_size=0.0)
    back, _ = load_sweep(save_sweep(ccs, tmp_path / "ccs.safetensors", dims=("layer",)))
    np.testing.assert_array_equal(back.intercept_negated, ccs.intercept_negated)

    save_directions(tmp_path / "t.safetensors", {"t_G": np.ones(4, np.float32)}, {"note": "hi"})
    arrays, meta = load_directions(tmp_path / "t.safetensors")
    assert arrays["t_G"].dtype == np.float32 and meta == {"note": "hi"}


def test_io_errors(tmp_path):
    with pytest.raises(ProbeInputError, match="not fitted"):
        save_probe(LogisticProbe(), tmp_path / "x.safetensors")
    with pytest.raises(ProbeInputError, match="no directions file"):
        load_directions(tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    with pytest.raises(ProbeInputError, match="not a safetensors file"):
        load_directions(tmp_path / "junk.safetensors")
    save_directions(tmp_path / "d.safetensors", {"v": np.ones(2)})
    with pytest.raises(ProbeInputError, match="no saved probe"):
        load_probe(tmp_path / "d.safetensors")


def test_fixed_vs_refit_with_a_layer_axis_equals_one_call_per_layer():
    rng = np.random.default_rng(0)
    acts, coef, intercept = rng.normal(size=(3, 2, 7, 5)), rng.normal(size=(3, 2, 5)), rng.normal(size=(3, 2))
    both = fixed_vs_refit(acts, coef, intercept, fixed_at=1)
    assert both["fixed"].shape == both["refit"].shape == (3, 2, 7)
    for layer in range(2):
        one = fixed_vs_refit(acts[:, layer], coef[:, layer], intercept[:, layer], fixed_at=1)
        np.testing.assert_array_equal(both["fixed"][:, layer], one["fixed"])
        np.testing.assert_array_equal(both["refit"][:, layer], one["refit"])
    np.testing.assert_array_equal(both["fixed"][1], both["refit"][1])


def test_cosine_matrix_of_a_degenerate_direction():
    dirs = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    with pytest.raises(ProbeInputError, match="zero norm"):
        cosine_matrix(dirs)
    m = cosine_matrix(dirs, zero_norm="nan")
    assert np.isnan(m[1]).all() and np.isnan(m[:, 1]).all()
    assert m[0, 2] == pytest.approx(np.sqrt(0.5))
    with pytest.raises(ProbeInputError, match="zero_norm"):
        cosine_matrix(dirs, zero_norm="zero")
