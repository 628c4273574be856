"""Is an artefact whole? Digests, checksum files, and the checks that decide whether a
finished file or directory of a run is trusted or recomputed.

Tables carry their checksum in ``.<name>.b2`` next to them; directories written by
``probes._atomic.write_dir`` (HF checkpoints, training states) carry ``.neglect_checksums.json``.
"""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pandas as pd

from experiments.errors import warn
from probes._atomic import CHECKSUMS, file_digest

ADAPTER_CONFIG = "adapter_config.json"

__all__ = ["CHECKSUMS", "checksum", "checksum_path", "dir_problem", "file_digest", "hf_dir_problem",
           "read_csv_or_none", "safetensors_problem", "table_problem"]


def checksum(data: bytes) -> str:
    """blake2b-128 of ``data`` as hex (the same digest as :func:`file_digest` of a file)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def checksum_path(path: Path) -> Path:
    """Where the checksum of a table lives: ``.<name>.b2`` next to it."""
    return path.with_name(f".{path.name}.b2")


def safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file is unusable (truncated, garbled header), or None if its
    header parses and its tensors exactly fill the file."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return "shorter than a safetensors header"
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                return "truncated (header runs past the end of the file)"
            header = json.loads(f.read(n))
        ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        return f"unreadable header ({type(exc).__name__})"
    if 8 + n + max(ends, default=0) != size:
        return f"truncated or padded ({size} bytes, header describes {8 + n + max(ends, default=0)})"
    return None


def dir_problem(path: Path) -> str | None:
    """Why a directory written by ``write_dir`` is damaged (a file missing or not matching the
    checksum recorded when it was written), or None. A directory without a checksum file
    (written before checksums existed) is not checked."""
    sums_file = Path(path) / CHECKSUMS
    if not sums_file.is_file():
        return None
    try:
        sums = json.loads(sums_file.read_text())
    except (ValueError, UnicodeDecodeError):
        return f"{CHECKSUMS} is not valid JSON"
    for name, digest in sums.items():
        if not (path / name).is_file():
            return f"{name} is missing"
        if file_digest(path / name) != digest:
            return f"{name} does not match its checksum"
    return None


def hf_dir_problem(path: Path) -> str | None:
    """Why an HF model directory written by this toolkit is unusable, or None if it is
    complete: config.json (a peft adapter directory: adapter_config.json) parses, every safetensors file is whole, and every file matches the
    checksum recorded when it was saved."""
    path = Path(path)
    config = "config.json" if (path / "config.json").is_file() or not (path / ADAPTER_CONFIG).is_file() \
        else ADAPTER_CONFIG  # a peft adapter directory has adapter_config.json instead
    if not (path / config).is_file():
        return "no config.json"
    try:
        json.loads((path / config).read_text())
    except (ValueError, UnicodeDecodeError):
        return f"{config} is not valid JSON"
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        return "no .safetensors weights"
    for w in weights:
        problem = safetensors_problem(w)
        if problem:
            return f"{w.name}: {problem}"
    return dir_problem(path)


def table_problem(path: Path) -> str | None:
    """Why a table is unusable (missing, not matching its checksum, unparsable), or None."""
    path = Path(path)
    if not path.is_file():
        return "missing"
    sums = checksum_path(path)
    if sums.is_file():
        try:
            if sums.read_text().strip() != checksum(path.read_bytes()):
                return "does not match its checksum (truncated or modified)"
        except (OSError, UnicodeDecodeError):
            return "its checksum file is unreadable"
    return None


def read_csv_or_none(path: Path) -> pd.DataFrame | None:
    """A finished table, or None when it is missing, damaged or unreadable (then it is
    recomputed; a damaged one with a warning line on stderr). Tables written by
    ``atomic_write_csv`` carry a checksum, so truncation at a row boundary is caught too."""
    path = Path(path)
    problem = table_problem(path)
    if problem is None:
        try:
            return pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
            problem = "not a readable CSV"
    if problem != "missing":
        warn(f"table {str(path)!r}: {problem}; ignoring it (it is recomputed where possible)")
    return None
