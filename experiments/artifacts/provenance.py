"""What a run directory records about how it was made: its config and the library versions."""
from __future__ import annotations

import dataclasses
import json
import platform
from pathlib import Path

import torch

from experiments.artifacts.atomic import atomic_write_json
from experiments.artifacts.rundir import RunDir, ensure_writable
from experiments.config import (SCREEN_KEYS, RunConfig, build_config, config_to_dict, local_paths_absolute,
                                pretraining_seed)
from experiments.errors import UserError, warn


def library_versions() -> dict:
    """Versions of Python and of every library whose numbers can change the results."""
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in ("torch", "transformers", "numpy", "scikit-learn", "peft", "safetensors", "pandas", "tokenizers"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    out["torch"] = torch.__version__
    return out


def read_json_artefact(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{str(path)!r} ({what}) is corrupt or truncated ({type(exc).__name__}); "
                        "restore it or start a new run directory") from exc


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The config a run directory was made with."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise UserError(f"{str(run_dir)!r} is not a run directory (no config.json); make one with `neglect run --out`")
    return build_config(read_json_artefact(path, "the run's config"))


def record_run(run: RunDir, cfg: RunConfig) -> None:
    """Write ``config.json`` and ``versions.json``; refuse to mix configs in one run directory.

    ``versions.json`` records the seeds and library versions of the first invocation; a resume
    under other versions is appended to its ``resumed_with`` list (and warned about)."""
    ensure_writable(run.root)
    config = config_to_dict(cfg)
    config_path = run.path("config.json")
    if config_path.is_file():
        previous = read_json_artefact(config_path, "the run's config")
        # Compared as configs, not dicts: keys added to the config since the run began
        # count as their defaults. ``jobs`` (how many worker processes) leaves the results
        # alone, the pretraining screen (``SCREEN_KEYS``) only stops a run, and more anchor
        # weights (``stability.weights``, every earlier one kept) only add arms to a stability
        # sweep, so a run may resume with other values (the new ones are recorded). A local path
        # recorded relative (before `neglect run` recorded them absolute) matches its absolute form.
        previous = build_config(previous)
        screen = {k: getattr(cfg.pretrain, k) for k in SCREEN_KEYS}
        weights = cfg.stability.weights if set(previous.stability.weights) <= set(cfg.stability.weights) \
            else previous.stability.weights
        kept = dataclasses.replace(previous, jobs=cfg.jobs, pretrain=dataclasses.replace(previous.pretrain, **screen),
                                   stability=dataclasses.replace(previous.stability, weights=weights))
        if local_paths_absolute(kept) != local_paths_absolute(cfg):
            raise UserError(f"run directory {str(run.root)!r} holds a run with a different config; "
                            "use another --out or delete it")
        if previous.pretrain != cfg.pretrain or previous.stability != cfg.stability:
            atomic_write_json(config_path, config)
    else:
        atomic_write_json(config_path, config)
    versions = library_versions()
    seeds = {"world": cfg.world.seed, "pretrain": pretraining_seed(cfg), "finetune": list(cfg.seeds), "torch_global": 0}
    versions_path = run.path("versions.json")
    try:
        recorded = json.loads(versions_path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        recorded = None  # missing, or damaged: written anew
    if not isinstance(recorded, dict) or "libraries" not in recorded:
        atomic_write_json(versions_path, {"libraries": versions, "seeds": seeds, "resumed_with": []})
    elif recorded["libraries"] != versions and versions not in recorded["resumed_with"]:
        changed = sorted(k for k in versions if recorded["libraries"].get(k) != versions[k])
        warn(f"resuming under other library versions than this run started with ({', '.join(changed)}); "
             "see versions.json")
        atomic_write_json(versions_path, {**recorded, "resumed_with": recorded["resumed_with"] + [versions]})
