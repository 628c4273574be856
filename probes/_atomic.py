"""Atomic writes: the one primitive every file of the project is written through.

This is the project's lowest layer. It sits in ``probes`` because ``probes`` imports nothing
else of the project: ``interp`` may import ``probes`` and ``experiments`` may import both, but
not the other way round, so this is the only place that ``probes.io``, ``interp.cache`` and
``experiments.artifacts`` can all share. It imports only the standard library.

- :func:`write_file`: a temp file in the target's directory, written (bytes, or by a callback
  such as safetensors' ``save_file``), flushed and fsynced, given the permissions the umask
  allows, then renamed into place with ``os.replace`` (and the directory fsynced).
- :func:`write_dir`: the same for a whole directory (an HF checkpoint, a training state): a
  staged directory is filled by a callback, every file in it is checksummed into
  ``.neglect_checksums.json`` and fsynced, then the directory is renamed into place.

A kill, a full disk or any error leaves the old file or directory (or none), never a partial
one, and removes the temp file. A failure whatever library raised it (safetensors raises its own
error type, torch a ``RuntimeError``) becomes a :class:`WriteError`: an ``OSError`` whose errno
says why (``ENOSPC`` full disk, ``EFBIG`` file-size limit, ``EACCES``/``EPERM`` permissions,
``EROFS`` read-only file system, ``EIO`` otherwise) and whose filename is the target.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Union

CHECKSUMS = ".neglect_checksums.json"
TEMP_PREFIX = ".tmp-"  # every temp file and directory starts so (a killed run's leftovers are removed by it)

# Test-only hook: ``NEGLECT_TEST_KILL_AT="<substring>@<n>"`` makes the process SIGKILL itself
# just before the n-th atomic replace (file or directory) whose target path contains
# <substring>, i.e. with the new content fully written to a temp file but not yet in place.
# tests/experiments/artifacts/test_resume_after_kill.py and the training tests use it to kill runs at
# exact points; never set it otherwise.
KILL_ENV = "NEGLECT_TEST_KILL_AT"
_kill_counts: dict[str, int] = {}

Data = Union[bytes, Callable[[Path], None]]


class WriteError(OSError):
    """A write that failed and left the old content in place. ``errno`` says why,
    ``filename`` is the path that was being written."""


def kill_point(target: str | Path) -> None:
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    pattern, _, nth = spec.rpartition("@")
    if pattern and pattern in str(target):
        _kill_counts[spec] = _kill_counts.get(spec, 0) + 1
        if _kill_counts[spec] == int(nth):
            os.kill(os.getpid(), signal.SIGKILL)


def file_digest(path: str | Path) -> str:
    """blake2b-128 of a file's bytes, as hex."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_path(path: Path) -> None:
    """fsync a file or, where the platform allows opening one, a directory."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) * path.is_dir())
    except OSError:
        if path.is_dir():
            return  # directories cannot be opened for fsync here (e.g. Windows)
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        if not path.is_dir() or exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


_ERRNO_TEXT = re.compile(r"(?:os error|\[Errno|errno|Os \{ code:)\s*(\d+)", re.IGNORECASE)


def _diagnose(exc: BaseException, staged: Path) -> int | None:
    """The errno behind a failed write, whatever raised it: an OSError in the exception chain,
    an errno quoted in the message (safetensors: "... (os error 28)"), or, when the library said
    nothing usable, what the file system says now (a staged file at the file-size limit, no
    free blocks)."""
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            return seen.errno
        match = _ERRNO_TEXT.search(str(seen))
        if match:
            return int(match.group(1))
        seen = seen.__cause__ or seen.__context__
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        files = [staged] if staged.is_file() else list(staged.rglob("*")) if staged.is_dir() else []
        if limit != resource.RLIM_INFINITY and any(p.is_file() and p.stat().st_size >= limit for p in files):
            return errno.EFBIG
    except (ImportError, OSError):
        pass
    try:
        if os.statvfs(staged.parent).f_bavail == 0:
            return errno.ENOSPC
    except (AttributeError, OSError):
        pass
    if "i/o error" in str(exc).lower() or "ioerror" in str(exc).lower():
        return errno.EIO
    return None


def _as_write_error(exc: BaseException, target: Path, staged: Path) -> WriteError | None:
    """``exc`` as a :class:`WriteError` naming ``target``, or None when it is not a failure of
    the file system (a bug, an interrupt: those keep their own type)."""
    if isinstance(exc, WriteError) or not isinstance(exc, Exception):
        return None
    code = _diagnose(exc, staged)
    return None if code is None else WriteError(code, os.strerror(code), str(target))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except OSError:
            pass


def _same_bytes(path: Path, data: bytes) -> bool:
    try:
        return path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def _replace(staged: Path, path: Path) -> None:
    """Rename ``staged`` to ``path``; a directory (or anything) in the way of a staged directory
    is moved aside first and removed after, or put back when the rename fails."""
    if not staged.is_dir() or not (path.exists() or path.is_symlink()):
        os.replace(staged, path)
        return
    holder = Path(tempfile.mkdtemp(dir=path.parent, prefix=f"{TEMP_PREFIX}old-{path.name}."))
    os.replace(path, holder / path.name)
    try:
        os.replace(staged, path)
    except BaseException:
        os.replace(holder / path.name, path)
        raise
    finally:
        if path.exists():  # the replaced content, or the empty holder it went back from
            _remove(holder)


@contextlib.contextmanager
def _staged(path: Path, directory: bool) -> Iterator[Path]:
    """A temp file (or directory) next to ``path`` for the body to fill; renamed into place
    when the body returns (after the kill-point hook), removed when anything fails, and a
    failure of the file system raised as a :class:`WriteError` naming ``path``."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if directory:
            tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}."))
        else:
            fd, name = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.")
            os.close(fd)
            tmp = Path(name)
        yield tmp
        kill_point(path)
        _replace(tmp, path)
        tmp = None
        _fsync_path(path.parent)
    except BaseException as exc:
        error = _as_write_error(exc, path, tmp or path)
        if tmp is not None:
            _remove(tmp)
        if error is None:
            raise
        raise error from exc


def write_file(path: str | Path, data: Data) -> Path:
    """Write one file atomically and durably.

    Parameters
    ----------
    path : the file to write; its directory is created if needed.
    data : the bytes to write, or a callback ``data(temp_path)`` that writes the file itself
        (e.g. ``lambda p: save_file(tensors, p)``). A file that already holds exactly the given
        bytes is left alone (so its mtime says when it was computed).

    Returns
    -------
    ``path``. Raises :class:`WriteError` (an ``OSError``) when the file system refuses the
    write; the previous file, if any, is then untouched and no temp file remains.
    """
    path = Path(path)
    if not callable(data) and _same_bytes(path, bytes(data)):
        return path
    with _staged(path, directory=False) as tmp:
        if callable(data):
            data(tmp)
        else:
            tmp.write_bytes(data)
        _fsync_path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
    return path


def write_dir(path: str | Path, fill: Callable[[Path], None]) -> Path:
    """Write a directory atomically and durably, with a checksum of every file.

    Parameters
    ----------
    path : the directory to (re)place; its parent is created if needed.
    fill : a callback ``fill(staging_dir)`` that writes the files (e.g. an HF
        ``save_pretrained``) into an empty staging directory next to ``path``.

    Returns
    -------
    ``path``, holding what ``fill`` wrote plus ``.neglect_checksums.json`` (relative path ->
    :func:`file_digest`). A directory already at ``path`` is replaced only once the new one is
    complete. Raises :class:`WriteError` when the file system refuses; the previous directory,
    if any, is then untouched and no staging directory remains.
    """
    path = Path(path)
    with _staged(path, directory=True) as staged:
        fill(staged)
        files = sorted(p for p in staged.rglob("*") if p.is_file() and p.name != CHECKSUMS)
        sums = {p.relative_to(staged).as_posix(): file_digest(p) for p in files}
        (staged / CHECKSUMS).write_text(json.dumps(sums, indent=1, sort_keys=True))
        file_mode, dir_mode = 0o666 & ~_umask(), 0o777 & ~_umask()
        for p in sorted(staged.rglob("*"), reverse=True) + [staged]:  # files before their directories
            os.chmod(p, dir_mode if p.is_dir() else file_mode)
            _fsync_path(p)
    return path
