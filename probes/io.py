"""Share fitted directions: one safetensors file with JSON metadata in its header. Never pickle.

``save_directions``/``load_directions`` store named arrays plus free JSON metadata.
``save_probe``/``load_probe`` store a fitted probe (only the classes of this package, rebuilt
from arrays and JSON: loading a file never runs code from it). ``save_sweep``/``load_sweep``
store the directions of a whole layer x checkpoint sweep.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from probes._atomic import write_file
from probes._validation import ProbeInputError, to_numpy
from probes.ccs import CCSProbe
from probes.linear import LogisticProbe, MassMeanProbe
from probes.polarity import PolarityAwareProbe
from probes.sweep import SweepResult

FORMAT = "neglect-lens/directions/1"
_PROBES = {cls.__name__: cls for cls in (LogisticProbe, MassMeanProbe, CCSProbe, PolarityAwareProbe)}
_ARRAYS = {  # fitted array attributes that reconstruct each probe
    "LogisticProbe": ("coef_",), "MassMeanProbe": ("coef_",),
    "PolarityAwareProbe": ("coef_", "truth_direction_", "polarity_truth_direction_", "polarity_direction_"),
    "CCSProbe": ("weight_", "scale_", "mean_pos_", "mean_neg_", "restart_losses_"),
}
_SCALARS = {"LogisticProbe": ("intercept_",), "MassMeanProbe": ("intercept_",),
            "PolarityAwareProbe": ("intercept_",), "CCSProbe": ("bias_", "loss_")}


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"metadata value {value!r} is not JSON-serialisable")


def save_directions(path, arrays: dict, metadata: dict | None = None) -> Path:
    """Write ``arrays`` (name -> array/tensor) and JSON ``metadata`` to ``path`` atomically
    (``probes._atomic.write_file``: a refused write raises its ``WriteError``, an OSError)."""
    path = Path(path)
    tensors = {}
    for name, value in arrays.items():
        a = to_numpy(value)
        if a.dtype.kind not in "fiub":
            raise ProbeInputError(f"array {name!r} has dtype {a.dtype}; only numeric arrays can be saved")
        tensors[name] = np.ascontiguousarray(a)
    header = {"format": FORMAT, "metadata": json.dumps(metadata or {}, default=_jsonable)}
    return write_file(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))


def load_directions(path) -> tuple[dict[str, np.ndarray], dict]:
    """Read a file written by :func:`save_directions`: ``(arrays, metadata)``."""
    path = Path(path)
    if not path.is_file():
        raise ProbeInputError(f"no directions file at {path}")
    try:
        with safe_open(str(path), framework="numpy") as f:
            header = f.metadata() or {}
            arrays = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise ProbeInputError(f"{path} is not a safetensors file: {exc}".replace("\n", " ")) from None
    if header.get("format") != FORMAT:
        raise ProbeInputError(f"{path} is not a neglect-lens directions file (format {header.get('format')!r})")
    return arrays, json.loads(header["metadata"])


def save_probe(probe, path, **metadata) -> Path:
    """Save a fitted probe of this package; ``metadata`` (layer, checkpoint, model, ...) rides along."""
    name = type(probe).__name__
    if name not in _PROBES:
        raise ProbeInputError(f"can only save {sorted(_PROBES)}; got {name}")
    if not hasattr(probe, "classes_"):
        raise ProbeInputError(f"{name} is not fitted; fit it before saving")
    arrays = {attr: getattr(probe, attr) for attr in _ARRAYS[name]}
    arrays["direction"] = probe.direction_
    meta = dict(metadata, probe=name, params=probe.get_params(), classes=probe.classes_.tolist(),
                n_features=int(probe.n_features_in_),
                scalars={attr: float(getattr(probe, attr)) for attr in _SCALARS[name]})
    return save_directions(path, arrays, meta)


def load_probe(path):
    """Rebuild a probe saved by :func:`save_probe`; returns ``(probe, metadata)``."""
    arrays, meta = load_directions(path)
    name = meta.get("probe")
    if name not in _PROBES:
        raise ProbeInputError(f"{path} holds no saved probe (probe={name!r})")
    probe = _PROBES[name](**meta["params"])
    for attr in _ARRAYS[name]:
        setattr(probe, attr, arrays[attr].astype(np.float64))
    for attr, value in meta["scalars"].items():
        setattr(probe, attr, value)
    probe.classes_ = np.asarray(meta["classes"])
    probe.n_features_in_ = meta["n_features"]
    extra = {k: v for k, v in meta.items() if k not in ("probe", "params", "classes", "n_features", "scalars")}
    return probe, extra


def save_sweep(result: SweepResult, path, dims: tuple[str, ...] = ("checkpoint", "layer"), **metadata) -> Path:
    """Save every direction of a sweep (coef, intercept, accuracies) with its axis names."""
    if len(dims) != result.intercept.ndim:
        raise ProbeInputError(f"dims {dims} name {len(dims)} axes but the sweep has batch shape "
                              f"{result.intercept.shape}")
    arrays = dict(coef=result.coef, intercept=result.intercept, train_accuracy=result.train_accuracy,
                  test_accuracy=result.test_accuracy, train_index=result.train_index,
                  test_index=result.test_index)
    if result.intercept_negated is not None:
        arrays["intercept_negated"] = result.intercept_negated
    meta = dict(metadata, kind="sweep", dims=list(dims), method=result.method, backend=result.backend,
                classes=result.classes.tolist(), params=result.params, seconds=result.seconds)
    return save_directions(path, arrays, meta)


def load_sweep(path) -> tuple[SweepResult, dict]:
    """Read :func:`save_sweep` output back; test logits are not stored (recompute from coef)."""
    arrays, meta = load_directions(path)
    if meta.get("kind") != "sweep":
        raise ProbeInputError(f"{path} holds no saved sweep")
    result = SweepResult(
        method=meta["method"], backend=meta["backend"], classes=np.asarray(meta["classes"]),
        coef=arrays["coef"], intercept=arrays["intercept"], train_accuracy=arrays["train_accuracy"],
        test_accuracy=arrays["test_accuracy"], test_logits=np.zeros(arrays["intercept"].shape + (0,)),
        train_index=arrays["train_index"], test_index=arrays["test_index"], seconds=meta["seconds"],
        params=meta["params"], intercept_negated=arrays.get("intercept_negated"))
    extra = {k: v for k, v in meta.items()
             if k not in ("kind", "method", "backend", "classes", "params", "seconds")}
    return result, extra
