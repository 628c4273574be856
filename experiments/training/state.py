"""Saving and restoring a training run's full state, atomically.

Layout of a state directory::

    latest.json            {"step": 120, "dir": "step-000000120"}   (written last, by rename)
    step-000000120/
        tensors.safetensors  trainable parameters, optimizer moments, torch RNG states
        state.json           everything else: step, optimizer hyper-parameters, data position,
                             Python/NumPy RNG states, the loss log

A step directory is complete before ``latest.json`` points at it, so a kill at any moment
leaves either the previous state or the new one. ``state.json`` records a checksum of the
tensors file; a state that is truncated, garbled or fails its checksum is reported on stderr
and ignored (training restarts from step 0, which gives the same weights). Nothing is
unpickled on load.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from experiments.artifacts.rundir import file_digest, kill_point

LATEST = "latest.json"


def _fsync_write(path: Path, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _atomic_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    _fsync_write(tmp, json.dumps(obj))
    os.replace(tmp, path)


def rng_state() -> tuple[dict, dict]:
    """(tensors, json) snapshots of every RNG a training step may touch."""
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return tensors, {"python": [version, list(internal), gauss],
                     "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}


def restore_rng(tensors: dict, state: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.split(".")[-1]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Split ``optimizer.state_dict()`` into tensors (for safetensors) and the JSON-able rest."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, entry in sd["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{key}"] = value
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(tensors: dict, meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for name, value in meta["scalars"].items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_state(directory: str | Path, step: int, *, params: dict[str, torch.Tensor],
               optimizer: torch.optim.Optimizer, extra: dict) -> Path:
    """Write the state at ``step`` and point ``latest.json`` at it; older step dirs are removed."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:09d}"
    tmp = directory / f".tmp-{name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    rng_tensors, rng_json = rng_state()
    optim_tensors, optim_json = optimizer_to_flat(optimizer)
    tensors = {f"param.{k}": v for k, v in params.items()} | optim_tensors | rng_tensors
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / "tensors.safetensors"))
    with open(tmp / "tensors.safetensors", "rb+") as f:
        os.fsync(f.fileno())
    digest = file_digest(tmp / "tensors.safetensors")
    _fsync_write(tmp / "state.json", json.dumps({"step": step, "optimizer": optim_json, "rng": rng_json,
                                                 "tensors_checksum": digest, **extra}))
    final = directory / name
    if final.exists():
        shutil.rmtree(final)
    kill_point(final)
    os.replace(tmp, final)
    _atomic_json(directory / LATEST, {"step": step, "dir": name})
    for old in directory.glob("step-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_latest(directory: str | Path) -> tuple[dict, dict] | None:
    """``(tensors, state)`` of the last complete save in ``directory``, or None if there is none
    or it is damaged (then a warning names the problem and training starts over)."""
    pointer = Path(directory) / LATEST
    if not pointer.is_file():
        return None
    try:
        where = Path(directory) / json.loads(pointer.read_text())["dir"]
        state = json.loads((where / "state.json").read_text())
        expected = state.get("tensors_checksum")
        if expected is not None and file_digest(where / "tensors.safetensors") != expected:
            raise ValueError("tensors.safetensors does not match its checksum")
        tensors = load_file(str(where / "tensors.safetensors"))
    except Exception as exc:  # truncated/garbled JSON or safetensors raise assorted errors
        print(f"neglect: warning: training state in {str(directory)!r} is damaged "
              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); starting this training over",
              file=sys.stderr)
        return None
    return tensors, state
