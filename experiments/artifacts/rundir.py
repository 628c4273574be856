"""The run directory: where every artefact of a run lives, and atomic writes into it.

Layout::

    RUN/config.json  world.json  versions.json
    RUN/base/                         the base model (HF directory)
    RUN/docs/<condition>.jsonl        finetuning documents
    RUN/checkpoints/<condition>/seed<k>/step_<n>/   HF directories
    RUN/evals/base.csv, RUN/evals/<condition>/seed<k>/step_<n>.csv   per-checkpoint rows
    RUN/results/metrics.csv  RUN/results/train_log.csv
    RUN/figures/*.html  RUN/report.html
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import struct
import sys
import tempfile
from pathlib import Path

import pandas as pd

from experiments.errors import UserError

# Test-only hook: ``NEGLECT_TEST_KILL_AT="<substring>@<n>"`` makes the process SIGKILL itself
# just before the n-th atomic replace (file, HF directory or training state) whose target path
# contains <substring>, i.e. with the new content fully written to a temp file but not yet in
# place. tests/experiments/artifacts/test_resume_after_kill.py uses it to kill runs at exact points; never set it
# otherwise.
KILL_ENV = "NEGLECT_TEST_KILL_AT"
_kill_counts: dict[str, int] = {}


def kill_point(target: str | Path) -> None:
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    pattern, _, nth = spec.rpartition("@")
    if pattern and pattern in str(target):
        _kill_counts[spec] = _kill_counts.get(spec, 0) + 1
        if _kill_counts[spec] == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)


def warn(message: str) -> None:
    """One line on stderr about something recovered from (e.g. a corrupt file recomputed)."""
    print(f"neglect: warning: {message}", file=sys.stderr)


class RunDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, *parts: str) -> Path:
        p = self.root.joinpath(*parts).resolve()
        if self.root.resolve() not in p.parents and p != self.root.resolve():
            raise UserError(f"path {p} escapes the run directory {self.root}")
        return p

    @property
    def base_model(self) -> Path:
        return self.path("base")

    def checkpoint(self, condition: str, seed: int, step: int) -> Path:
        return self.path("checkpoints", condition, f"seed{seed}", f"step_{step:06d}")

    def eval_file(self, condition: str | None, seed: int = 0, step: int = 0) -> Path:
        if condition is None:
            return self.path("evals", "base.csv")
        return self.path("evals", condition, f"seed{seed}", f"step_{step:06d}.csv")

    @property
    def metrics(self) -> Path:
        return self.path("results", "metrics.csv")


def ensure_writable(root: Path) -> None:
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise UserError(f"output path {str(root)!r} is a file; expected a directory (new or from an earlier run)")
    for parent in root.parents:
        if parent.exists() and not parent.is_dir():
            raise UserError(f"output path {str(root)!r} lies under the file {str(parent)!r}; expected a directory")
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"output directory {str(root)!r} is not writable ({exc.strerror}); "
                        "expected a directory you can write to") from exc


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file next to ``path``, fsync it, then rename it into place: a
    kill or a full disk leaves the old file (or none), never a partial one. A file that
    already holds exactly ``data`` is left alone (so its mtime says when it was computed)."""
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-" + path.name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        kill_point(path)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def checksum(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def checksum_path(path: Path) -> Path:
    """Where the checksum of a table lives: ``.<name>.b2`` next to it."""
    return path.with_name(f".{path.name}.b2")


def atomic_write_csv(path: Path, frame: pd.DataFrame) -> None:
    """The table, then its checksum (so a table damaged later is detected, not trusted)."""
    data = frame.to_csv(index=False).encode("utf-8")
    atomic_write_bytes(path, data)
    atomic_write_bytes(checksum_path(path), (checksum(data) + "\n").encode())


CHECKSUMS = ".neglect_checksums.json"


def file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_save_pretrained(path: Path, model, tokenizer) -> None:
    """Save an HF model (a peft model merged) + tokenizer into a temp dir with a checksum of
    every file, then rename it into place."""
    from experiments.training.checkpoints import save_checkpoint

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=".tmp-" + path.name))
    try:
        staged = save_checkpoint(tmp / "model", model, tokenizer)
        sums = {p.name: file_digest(p) for p in sorted(staged.iterdir()) if p.is_file()}
        (staged / CHECKSUMS).write_text(json.dumps(sums, indent=1, sort_keys=True))
        kill_point(path)
        if path.exists():
            shutil.rmtree(path)
        os.replace(staged, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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


def hf_dir_problem(path: Path) -> str | None:
    """Why an HF model directory written by this toolkit is unusable, or None if it is
    complete: config.json parses, every safetensors file is whole, and every file matches the
    checksum recorded when it was saved."""
    path = Path(path)
    if not (path / "config.json").is_file():
        return "no config.json"
    try:
        json.loads((path / "config.json").read_text())
    except (ValueError, UnicodeDecodeError):
        return "config.json is not valid JSON"
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        return "no .safetensors weights"
    for w in weights:
        problem = safetensors_problem(w)
        if problem:
            return f"{w.name}: {problem}"
    sums_file = path / CHECKSUMS
    if sums_file.is_file():
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
    :func:`atomic_write_csv` carry a checksum, so truncation at a row boundary is caught too."""
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
