"""The one atomic-write primitive (probes._atomic) on its own: what it writes, what a failure
leaves, and how a failure of any library becomes a WriteError with the right errno. Failures
are real (a file-size limit in a child process, a read-only tmpfs), not patched."""
from __future__ import annotations

import ast
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.artifacts.checksums import dir_problem
from probes import _atomic
from probes._atomic import CHECKSUMS, WriteError, write_dir, write_file

from tests.paths import REPO


def test_the_primitive_imports_only_the_standard_library():
    tree = ast.parse(Path(_atomic.__file__).read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names and names <= set(sys.stdlib_module_names) | {"__future__"}, names


def test_write_file_writes_bytes_with_umask_permissions_and_no_leftovers(tmp_path):
    target = tmp_path / "a" / "b.txt"
    old = os.umask(0o027)
    try:
        write_file(target, b"hello")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"hello"
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in target.parent.iterdir()) == ["b.txt"]


def test_identical_content_is_left_alone(tmp_path):
    target = write_file(tmp_path / "t.csv", b"x,y\n")
    os.utime(target, ns=(1, 1))
    write_file(target, b"x,y\n")
    assert target.stat().st_mtime_ns == 1
    write_file(target, b"x,z\n")
    assert target.read_bytes() == b"x,z\n" and target.stat().st_mtime_ns != 1


def test_a_failing_writer_keeps_the_old_file_and_its_own_error_type(tmp_path):
    target = write_file(tmp_path / "f.bin", b"old")

    def broken(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise ValueError("a bug, not the file system")

    with pytest.raises(ValueError, match="a bug"):
        write_file(target, broken)
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_write_dir_stages_checksums_and_replaces(tmp_path):
    target = tmp_path / "ckpt"

    def fill(content: bytes):
        def go(staging: Path) -> None:
            (staging / "weights.bin").write_bytes(content)
            (staging / "sub").mkdir()
            (staging / "sub" / "c.json").write_text("{}")
        return go

    write_dir(target, fill(b"one"))
    sums = json.loads((target / CHECKSUMS).read_text())
    assert sorted(sums) == ["sub/c.json", "weights.bin"] and dir_problem(target) is None
    write_dir(target, fill(b"two"))
    assert (target / "weights.bin").read_bytes() == b"two" and dir_problem(target) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # staging and the replaced dir are gone
    (target / "weights.bin").write_bytes(b"tw0")
    assert dir_problem(target) == "weights.bin does not match its checksum"

    def fails(staging: Path) -> None:
        (staging / "weights.bin").write_bytes(b"three")
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        write_dir(target, fails)
    assert (target / "weights.bin").read_bytes() == b"tw0" and sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


LIMITED = r"""
import errno, json, resource, signal, sys
from pathlib import Path
import numpy as np
from safetensors.numpy import save_file
from probes._atomic import WriteError, write_dir, write_file
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
out = Path(sys.argv[1])
write_file(out / "f.safetensors", lambda p: save_file({"a": np.zeros(4)}, str(p)))
write_dir(out / "d", lambda p: save_file({"a": np.zeros(4)}, str(p / "w.safetensors")))
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
seen = {}
for name, write in [
    ("safetensors file", lambda: write_file(out / "f.safetensors", lambda p: save_file({"a": np.zeros(4096)}, str(p)))),
    ("safetensors dir", lambda: write_dir(out / "d", lambda p: save_file({"a": np.zeros(4096)}, str(p / "w.safetensors")))),
    ("bytes", lambda: write_file(out / "b.txt", b"x" * 10000)),
]:
    try:
        write()
        seen[name] = None
    except WriteError as exc:
        seen[name] = [exc.errno, exc.filename, isinstance(exc, OSError)]
print(json.dumps(seen))
"""


def test_a_real_file_size_limit_becomes_efbig_naming_the_target(tmp_path):
    proc = subprocess.run([sys.executable, "-c", LIMITED, str(tmp_path)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout)
    assert seen == {"safetensors file": [errno.EFBIG, str(tmp_path / "f.safetensors"), True],
                    "safetensors dir": [errno.EFBIG, str(tmp_path / "d"), True],
                    "bytes": [errno.EFBIG, str(tmp_path / "b.txt"), True]}
    from safetensors.numpy import load_file

    assert load_file(str(tmp_path / "f.safetensors"))["a"].shape == (4,)  # the old files are whole
    assert load_file(str(tmp_path / "d" / "w.safetensors"))["a"].shape == (4,) and dir_problem(tmp_path / "d") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f.safetensors"]  # no temp file, no partial one


def test_a_read_only_file_system_is_erofs(tmp_path):
    where = tmp_path / "ro"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(where)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({mounted.stderr.strip()[:200]})")
    try:
        with pytest.raises(WriteError) as info:
            write_file(where / "x.txt", b"data")
        assert info.value.errno == errno.EROFS and info.value.filename == str(where / "x.txt")
        from experiments.cli import USER_ERRNOS, os_error_line

        assert info.value.errno in USER_ERRNOS
        assert os_error_line(info.value).startswith(f"cannot write '{where / 'x.txt'}': Read-only file system")
    finally:
        subprocess.run(["umount", str(where)], capture_output=True)
