"""Every write of a run goes through here: text, JSON, checksummed CSV tables and HF
directories, each atomic and durable (``probes._atomic`` is the one primitive underneath).

A write the file system refuses raises :class:`WriteError` (an ``OSError`` naming the target
and why: full disk, file-size limit, permissions, read-only file system), which the CLI prints
as one line; the previous content, if any, is left in place.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from experiments.artifacts.checksums import checksum, checksum_path
from probes._atomic import KILL_ENV, WriteError, kill_point, write_dir, write_file

__all__ = ["KILL_ENV", "WriteError", "atomic_write_csv", "atomic_write_hf_dir", "atomic_write_json", "atomic_write_text",
           "kill_point", "write_dir", "write_file"]


def atomic_write_text(path: str | Path, text: str) -> Path:
    """``text`` (UTF-8) into ``path`` atomically."""
    return write_file(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj) -> Path:
    """``obj`` as indented JSON with sorted keys into ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_write_csv(path: str | Path, frame: pd.DataFrame) -> Path:
    """The table, then its checksum in ``.<name>.b2`` (so a table damaged later is detected,
    not trusted; see ``checksums.table_problem``)."""
    data = frame.to_csv(index=False).encode("utf-8")
    write_file(path, data)
    write_file(checksum_path(Path(path)), (checksum(data) + "\n").encode())
    return Path(path)


def atomic_write_hf_dir(path: str | Path, model, tokenizer=None, *, state_dict: dict | None = None) -> Path:
    """An HF directory (``model.save_pretrained`` and ``tokenizer.save_pretrained``) written
    atomically with a checksum of every file (``checksums.hf_dir_problem`` checks it).

    Parameters
    ----------
    path : the directory; one already there is replaced once the new one is complete.
    model : anything with ``save_pretrained(directory, ...)`` (a model, a peft model).
    tokenizer : saved into the same directory when given.
    state_dict : passed to ``save_pretrained`` (e.g. a peft model's merged weights).

    Returns
    -------
    ``path``.
    """
    def fill(staging: Path) -> None:
        if state_dict is None:
            model.save_pretrained(staging)
        else:
            model.save_pretrained(staging, state_dict=state_dict)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)

    return write_dir(path, fill)
