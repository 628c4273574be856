"""Real write failures in `neglect run --preset tiny`, not patched ones: the kernel refuses the
write while safetensors (inside transformers' save_pretrained, or our training-state writer)
is writing, and the run must end in one line and exit 2, lose nothing finished, and resume.

- A file-size limit (``RLIMIT_FSIZE`` with SIGXFSZ ignored, so a write past it fails with
  EFBIG), chosen from the sizes of the files already written: below a checkpoint's weights, so the
  step-6 checkpoint of `plain` cannot be written; then between a checkpoint and a training
  state, so that checkpoint is written and the training state after it is not.
- A full disk (ENOSPC): the killed run directory copied onto a tmpfs just too small for the
  next checkpoint (skipped with the reason where this sandbox cannot mount one).
- NaN in a float config key is refused before anything is written, and the corrected command
  then runs in the same directory.

One run directory goes through the chain: the NaN command (refused); the corrected command,
killed just before the step-6 checkpoint of `plain` (test hook ``NEGLECT_TEST_KILL_AT``) so
that a resumed run's first big write is that checkpoint; the two limited runs; the same command
without a limit, which must end with the metrics of the session's uninterrupted tiny run.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.artifacts.checksums import hf_dir_problem, table_problem
from experiments.artifacts.rundir import RunDir
from experiments.cli import main
from experiments.training import state as training_state

from tests.paths import REPO
KILL_BEFORE = "checkpoints/plain/seed0/step_000006@1"  # the 2nd checkpoint of the first condition


def neglect_run(out: Path, *extra: str, fsize: int | None = None, kill: str | None = None):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1",
           "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    env.pop("NEGLECT_TEST_KILL_AT", None)
    if kill:
        env["NEGLECT_TEST_KILL_AT"] = kill

    def limit() -> None:  # in the child only
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run([sys.executable, "-m", "experiments", "run", "--preset", "tiny", *extra, "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600,
                          preexec_fn=limit if fsize is not None else None)


def finished(root: Path) -> dict[str, str]:
    """relative path -> sha1 of every finished file (training states and temp files aside)."""
    return {rel: hashlib.sha1(p.read_bytes()).hexdigest() for p in root.rglob("*")
            if p.is_file() and not (rel := p.relative_to(root).as_posix()).startswith("train_state/")
            and ".tmp-" not in rel}


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The run's one stderr line, after checking it is the only one and the exit code is 2."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("neglect: error: "), proc.stderr[-3000:]
    return lines[0]


def damage(root: Path, before: dict[str, str]) -> list[str]:
    """What a failed run broke: finished files changed or removed, model directories or tables
    no longer matching their checksums, temp files left behind (empty when nothing)."""
    after = finished(root)
    out = [f"changed or removed: {k}" for k in before if after.get(k) != before[k]]
    models = [p.parent for p in root.rglob(".neglect_checksums.json") if "train_state" not in p.parts]
    out += [f"{m}: {hf_dir_problem(m)}" for m in models if hf_dir_problem(m) is not None]
    out += [f"{t}: {table_problem(t)}" for t in root.rglob("*.csv") if table_problem(t) is not None]
    out += [f"left behind: {t}" for t in root.rglob(".tmp-*")]
    return out if models else ["no checksummed model directory found"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """One run directory through: NaN refused; the corrected command killed just before the
    step-6 checkpoint of `plain`; a limit below a checkpoint's size; a limit between a
    checkpoint's and a training state's; no limit. Each limited run is recorded with what it
    broke (``damage``) and the training state it left."""
    root = tmp_path_factory.mktemp("chain")
    out = root / "run"
    run = RunDir(out)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):  # in-process: the refusal needs no model
        code = main(["run", "--preset", "tiny", "--set", "pretrain.lr=NaN", "--out", str(out)])
    refused = subprocess.CompletedProcess([], code, "", err.getvalue())
    written = sorted(p.name for p in out.rglob("*")) if out.exists() else []
    killed = neglect_run(out, kill=KILL_BEFORE)
    assert killed.returncode == -signal.SIGKILL, f"kill point never reached: {killed.stderr[-2000:]}"
    checkpoint_size = (run.checkpoint("plain", 0, 2) / "model.safetensors").stat().st_size
    (state_file,) = run.finetune_state("plain", 0).glob("step-*/tensors.safetensors")
    state_size = state_file.stat().st_size
    assert state_size > checkpoint_size + 2
    shutil.copytree(out, root / "killed", ignore=shutil.ignore_patterns(".tmp-*"))  # for the full-disk test
    limited = []
    for fsize in (checkpoint_size - 1, (checkpoint_size + state_size) // 2):
        before = finished(out)
        proc = neglect_run(out, fsize=fsize)
        restored = training_state.load_latest(run.finetune_state("plain", 0))
        checkpoint = run.checkpoint("plain", 0, 6)
        limited.append(dict(proc=proc, before=before, damage=damage(out, before),
                            state_step=restored[1]["step"] if restored else None,
                            checkpoint=hf_dir_problem(checkpoint) if checkpoint.exists() else "absent"))
    final = neglect_run(out)
    return dict(out=out, refused=refused, written=written, limited=limited, final=final, killed=root / "killed",
                checkpoint_size=checkpoint_size)


def test_nan_config_is_refused_before_anything_is_written_then_the_fix_runs(chain):
    line = error_line(chain["refused"])
    assert "'pretrain.lr'" in line and "finite number" in line and "nan" in line
    assert chain["written"] == []  # no config.json, nothing at all
    assert chain["final"].returncode == 0  # the corrected command, in the same directory, finished


def test_file_size_limit_while_writing_a_checkpoint(chain):
    first = chain["limited"][0]
    line = error_line(first["proc"])
    assert f"cannot write '{RunDir(chain['out']).checkpoint('plain', 0, 6)}': File too large" in line, line
    assert "ulimit -f" in line and "rerun the same command" in line
    assert first["damage"] == []
    assert first["checkpoint"] == "absent"  # no partial directory
    assert first["state_step"] == 5  # the training state the kill left is still the latest


def test_file_size_limit_while_writing_a_training_state(chain):
    second = chain["limited"][1]
    line = error_line(second["proc"])
    target = f"{RunDir(chain['out']).finetune_state('plain', 0)}/step-000000006"
    assert f"cannot write '{target}': File too large" in line, line
    assert second["damage"] == []
    assert second["checkpoint"] is None  # the checkpoint before the state was written whole
    assert second["state_step"] == 5  # the previous training state is kept


def test_rerun_without_the_limit_resumes_to_the_uninterrupted_tables(chain, tiny_run):
    assert chain["final"].returncode == 0, chain["final"].stderr[-3000:]
    out, ref = chain["out"], tiny_run[0]
    assert (out / "results" / "metrics.csv").read_bytes() == (ref / "results" / "metrics.csv").read_bytes()
    for rel in ("checkpoints/plain/seed0/step_000006/model.safetensors", "base/model.safetensors"):
        assert (out / rel).read_bytes() == (ref / rel).read_bytes(), rel
    assert not list(out.rglob(".tmp-*"))


# ---------------------------------------------------------------- a full disk (tmpfs)

def _mount(where: Path, size: int) -> str | None:
    """Mount (or remount) a tmpfs of ``size`` bytes at ``where``; the reason when not permitted."""
    if shutil.which("mount") is None:
        return "no mount command"
    options = f"size={size}" if not os.path.ismount(where) else f"remount,size={size}"
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    return None if proc.returncode == 0 else f"mounting a tmpfs is not permitted here ({proc.stderr.strip()[:200]})"


def test_full_disk_while_writing_a_checkpoint(chain, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    why = _mount(disk, 64 << 20)
    if why:
        pytest.skip(why)
    try:
        out = disk / "run"
        shutil.copytree(chain["killed"], out)
        used = os.statvfs(disk).f_blocks - os.statvfs(disk).f_bfree
        checkpoint_size = chain["checkpoint_size"]
        page = os.statvfs(disk).f_frsize
        assert _mount(disk, (used + 4) * page) is None  # a few pages free: not enough for the weights
        assert os.statvfs(disk).f_bavail * page < checkpoint_size
        before = finished(out)
        line = error_line(neglect_run(out))
        assert f"cannot write '{RunDir(out).checkpoint('plain', 0, 6)}': {os.strerror(errno.ENOSPC)}" in line
        assert "free some space" in line
        assert damage(out, before) == []
        assert not RunDir(out).checkpoint("plain", 0, 6).exists()
        # (that the same command then resumes is shown by the file-size chain above, which leaves
        # the directory in the same state)
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
