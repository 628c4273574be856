"""``jobs`` > 1: finetuning runs and checkpoint evaluations in spawned worker processes
(experiments/training/parallel.py) give the tables of one process, report a failing worker as
one line, and resume after a worker is killed."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import time

import pandas as pd
import pytest

from experiments.artifacts.atomic import KILL_ENV, WriteError
from experiments.artifacts.rundir import RunDir
from experiments.cli import main
from experiments.config import load_config
from experiments.errors import UserError
from experiments.pipeline import run_pipeline
from experiments.training import parallel
from tests.paths import REPO


# Units for run_units: module-level, so that a spawned worker can import them by name.
def fail_with(kind: str, delay: float = 0.0) -> None:
    time.sleep(delay)
    if kind == "user":
        raise UserError("config key 'x' is wrong; expected y\nsecond line")
    if kind == "write":
        raise WriteError(errno.ENOSPC, "No space left on device", "/run/evals/base.csv")


def record_worker(path: str) -> None:
    import torch

    with open(path, "w") as f:
        f.write(f"{torch.get_num_threads()} {os.environ.get('TQDM_DISABLE')} {os.getppid()} {os.getpid()}")


def test_worker_threads_divide_the_cores_unless_omp_num_threads_says(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("experiments.training.threads.available_cores", lambda: 16)
    assert [parallel.worker_threads(j) for j in (1, 2, 4, 5, 32)] == [16, 8, 4, 3, 1]
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert parallel.worker_threads(4) == 2
    assert [parallel.pool_size(4, n) for n in (0, 1, 3, 9)] == [1, 1, 3, 4]


def test_jobs_must_be_at_least_one():
    with pytest.raises(UserError, match="config key 'jobs' must be >= 1; got 0"):
        load_config("tiny", overrides=["jobs=0"])


def test_workers_are_spawned_with_their_thread_count_and_shared_within_a_block(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    paths = [[str(tmp_path / f"call{c}-unit{i}.txt") for i in range(2)] for c in range(2)]
    with parallel.shared_workers():
        for call in paths:
            parallel.run_units(record_worker, [(p,) for p in call], 2, desc="test units")
    pids = []
    for p in paths[0] + paths[1]:
        threads, tqdm_disabled, parent, pid = open(p).read().split()
        assert (threads, tqdm_disabled, int(parent)) == ("1", "1", os.getpid())
        pids.append(pid)
    assert set(pids[2:]) <= set(pids[:2])  # the second call ran in the first call's workers


def test_a_failing_worker_raises_its_own_error_and_stops_the_others():
    start = time.monotonic()
    with pytest.raises(UserError) as info:
        parallel.run_units(fail_with, [("user",), ("sleep", 120.0)], 2, desc="test units")
    assert str(info.value).splitlines()[0] == "config key 'x' is wrong; expected y"
    assert time.monotonic() - start < 60  # the sleeping worker was terminated, not waited for
    with pytest.raises(WriteError) as info:
        parallel.run_units(fail_with, [("write",), ("none",)], 2, desc="test units")
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, "/run/evals/base.csv")


def test_parallel_run_gives_the_serial_tables_and_resumes_after_a_worker_is_killed(tiny_run, tmp_path, monkeypatch):
    """One run directory: a jobs=2 `neglect run` whose worker finetuning 'negated' is SIGKILLed
    at its 2nd training state (exit 2, stderr one line: nothing from the workers either), then
    the same command resumes it; its tables are byte for byte those of the one-process session
    run (same seeds, one thread each)."""
    ref, _ = tiny_run
    out = tmp_path / "par"
    argv = ["run", "--preset", "tiny", "--set", "jobs=2", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1",
           "CUDA_VISIBLE_DEVICES": "", KILL_ENV: "train_state/negated_seed0/step-@2"}  # only workers write there
    proc = subprocess.run([sys.executable, "-m", "experiments", *argv], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.startswith("neglect: error: a worker process died while running finetuning runs (killed, or "
                                  "out of memory?); rerun the same command")
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-3000:]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert main(argv) == 0
    assert (out / "results" / "metrics.csv").read_bytes() == (ref / "results" / "metrics.csv").read_bytes()
    for name in ("results/incontext.csv", "evals/base.csv", "docs/negated_seed0.jsonl"):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    for condition in ("plain", "negated"):  # the resumed run's training log too, but for its clock
        logs = [pd.read_csv(RunDir(d).train_log(condition, 0)).drop(columns="time") for d in (out, ref)]
        pd.testing.assert_frame_equal(*logs)


def test_a_run_resumes_with_another_jobs_value(tiny_run):
    out, table = tiny_run
    again = run_pipeline(load_config("tiny", overrides=["jobs=3"]), out)  # nothing left to do: no worker started
    pd.testing.assert_frame_equal(again, table)
