"""Saving and restoring a training run's full state, atomically.

Layout of a state directory::

    latest.json            {"step": 120, "dir": "step-000000120"}   (written last, by rename)
    step-000000120/
        tensors.safetensors  trainable parameters, optimizer moments, torch RNG states
        state.json           everything else: step, optimizer hyper-parameters, data position,
                             Python/NumPy RNG states, the loss log

        .neglect_checksums.json   a checksum of each file (``experiments.artifacts.atomic.write_dir``)

A step directory is complete before ``latest.json`` points at it, so a kill at any moment
leaves either the previous state or the new one; both are written through the project's one
atomic primitive, so a full disk or a file-size limit is a one-line error that keeps the
previous state. A state that is truncated, garbled or fails its checksums is reported on stderr
and ignored (training restarts from step 0, which gives the same weights). Nothing is
unpickled on load.
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from experiments.artifacts.atomic import atomic_write_text, write_dir
from experiments.artifacts.checksums import dir_problem
from experiments.errors import warn

LATEST = "latest.json"


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


def optimizer_to_flat(optimizer: torch.optim.Optimizer | dict) -> tuple[dict, dict]:
    """Split ``optimizer.state_dict()`` (or such a dict) into tensors (for safetensors) and the JSON-able rest."""
    sd = optimizer if isinstance(optimizer, dict) else optimizer.state_dict()
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
               optimizer: torch.optim.Optimizer | dict, extra: dict) -> Path:
    """Write the state at ``step`` and point ``latest.json`` at it; older step dirs are removed.
    ``optimizer``: the optimizer, or its ``state_dict()`` (parameters by index)."""
    directory = Path(directory)
    name = f"step-{step:09d}"
    rng_tensors, rng_json = rng_state()
    optim_tensors, optim_json = optimizer_to_flat(optimizer)
    tensors = {f"param.{k}": v for k, v in params.items()} | optim_tensors | rng_tensors

    def fill(staging: Path) -> None:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(staging / "tensors.safetensors"))
        (staging / "state.json").write_text(json.dumps({"step": step, "optimizer": optim_json, "rng": rng_json,
                                                        **extra}))

    final = write_dir(directory / name, fill)
    atomic_write_text(directory / LATEST, json.dumps({"step": step, "dir": name}))
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
        problem = dir_problem(where)
        if problem is not None:
            raise ValueError(problem)
        state = json.loads((where / "state.json").read_text())
        tensors = load_file(str(where / "tensors.safetensors"))
    except Exception as exc:  # truncated/garbled JSON or safetensors raise assorted errors
        warn(f"training state in {str(directory)!r} is damaged "
             f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); starting this training over")
        return None
    return tensors, state
