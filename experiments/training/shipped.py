"""Pretrained base models shipped with the package, so a run on a toy preset can start from a
base model that passes the preconditions without pretraining it (hours on 2 CPU cores).

A shipped model is an HF directory under ``experiments/pretrained/<name>/`` (written by
``neglect pretrain --preset X --export DIR``), with its files' checksums
(``.neglect_checksums.json``) and ``provenance.json``: everything the base model depends on (the
world, corpus, model and pretraining config; the world seed is ``world.seed``), the command that
made it, the machine, and its check-base figures. ``pretrain`` copies a shipped model into a
run when the run's config matches one's provenance exactly (``pretrain.shipped = "auto"``, the
default); ``pretrain.shipped = "<name>"`` asks for one by name, and a run whose world or config
differs from it is refused in one line naming the keys; ``"off"`` always pretrains.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from experiments.artifacts.atomic import atomic_write_json
from experiments.artifacts.checksums import file_digest, hf_dir_problem
from experiments.config import SCREEN_KEYS, RunConfig
from experiments.errors import UserError

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "pretrained"
# how it ran, not what it learned (a screened-out run leaves no base model)
IGNORED_PRETRAIN_KEYS = ("compile", "log_every", "shipped", "track_every", *SCREEN_KEYS)


def provenance_key(cfg) -> dict:
    """What a pretrained toy base model depends on: world, corpus, model and pretraining
    settings (less the ones that only change speed), as plain data."""
    pretrain = {k: v for k, v in dataclasses.asdict(cfg.pretrain).items() if k not in IGNORED_PRETRAIN_KEYS}
    return json.loads(json.dumps({"world": dataclasses.asdict(cfg.world), "corpus": dataclasses.asdict(cfg.corpus),
                                  "model": dataclasses.asdict(cfg.model), "pretrain": pretrain}))


def shipped_config(path: Path) -> dict:
    """The provenance key a shipped model was pretrained with, with every config key added to
    the toolkit since at its default (a new key's default keeps the old behaviour, so a model
    pretrained before it existed was pretrained with that default)."""
    saved, defaults = read_provenance(path)["config"], provenance_key(RunConfig())
    return {section: ({**defaults[section], **value} if isinstance(value, dict) and section in defaults else value)
            for section, value in saved.items()}


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out += _differences(x, y, f"{prefix}{key}.")
        elif x != y:
            out.append(f"{prefix}{key} ({y!r} here, {x!r} shipped)")
    return out


def shipped_models() -> dict[str, Path]:
    """Name -> directory of every shipped base model."""
    if not SHIPPED_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(SHIPPED_DIR.iterdir()) if (p / "provenance.json").is_file()}


def read_provenance(path: Path) -> dict:
    return json.loads((path / "provenance.json").read_text(encoding="utf-8"))


def shipped_base_for(cfg) -> Path | None:
    """The shipped base model a run of ``cfg`` starts from, per ``cfg.pretrain.shipped``: None
    for "off" or when "auto" finds no exact match; a named model must match (else UserError)."""
    choice = cfg.pretrain.shipped
    if choice == "off":
        return None
    return find_shipped(cfg) if choice == "auto" else resolve_shipped(choice, cfg)


def find_shipped(cfg) -> Path | None:
    """The shipped base model whose provenance matches ``cfg`` exactly, or None."""
    key = provenance_key(cfg)
    for path in shipped_models().values():
        if shipped_config(path) == key:
            return _checked(path)
    return None


def resolve_shipped(name: str, cfg) -> Path:
    """The shipped model ``name`` (``pretrain.shipped = "<name>"``) for a run of ``cfg``.

    Raises
    ------
    UserError
        One line: no such model, a damaged copy, or a world/config that differs from the one
        the model was pretrained on (naming the keys).
    """
    models = shipped_models()
    if name not in models:
        raise UserError(f"no shipped base model {name!r}; shipped: {sorted(models) or 'none'}")
    diff = _differences(shipped_config(models[name]), provenance_key(cfg))
    if diff:
        raise UserError(f"shipped base model {name!r} was pretrained on another world or config: "
                        + "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
                        + f" (use --preset {name}, or pretrain your own)")
    return _checked(models[name])


def _checked(path: Path) -> Path:
    problem = hf_dir_problem(path)
    if problem is not None:
        raise UserError(f"shipped base model {str(path)!r} is damaged ({problem}); reinstall the package")
    return path


def parent_provenance(init_from: str) -> dict:
    """What a base model continued from (``pretrain.init_from``) was: its path, the digest of
    its weights and its own provenance (itself holding its parent's, when it had one), so a
    model pretrained in several phases records every phase.

    Parameters
    ----------
    init_from : str
        The saved base model the pretraining started from.

    Returns
    -------
    dict
        ``path``, ``weights_blake2b`` and ``provenance`` (None for a model exported without one).
    """
    path = Path(init_from)
    provenance = read_provenance(path) if (path / "provenance.json").is_file() else None
    return {"path": str(path), "weights_blake2b": file_digest(path / "model.safetensors"), "provenance": provenance}


def export_shipped(base: Path, cfg, dest: Path, extra: dict | None = None) -> Path:
    """Copy a run's pretrained base model to ``dest`` as a shipped model, with its provenance.

    Parameters
    ----------
    base : Path
        The run's base model directory (``RUN/base``), intact.
    cfg : RunConfig
        The run's config.
    dest : Path
        Where the shipped model goes (e.g. ``experiments/pretrained/standard``).
    extra : dict, optional
        More provenance (the command, the machine, check-base figures).

    Returns
    -------
    Path
        ``dest``.
    """
    _checked(base)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(base, dest)
    atomic_write_json(dest / "provenance.json", {"config": provenance_key(cfg), **(extra or {})})
    return dest
