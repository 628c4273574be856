"""``jobs`` > 1: finetuning runs and checkpoint evaluations in spawned worker processes
(experiments/training/parallel.py) give the tables of one process, report a failing worker as
one line, and resume after a worker is killed."""
from __future__ import annotations

import errno
import os
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
        f.write(f"{torch.get_num_threads()} {os.environ.get('TQDM_DISABLE')} {os.getppid()}")


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


def test_workers_are_spawned_with_their_thread_count(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    paths = [str(tmp_path / f"w{i}.txt") for i in range(2)]
    parallel.run_units(record_worker, [(p,) for p in paths], 2, desc="test units")
    for p in paths:
        threads, tqdm_disabled, parent = open(p).read().split()
        assert (threads, tqdm_disabled, int(parent)) == ("1", "1", os.getpid())


def test_a_failing_worker_raises_its_own_error_and_stops_the_others():
    start = time.monotonic()
    with pytest.raises(UserError) as info:
        parallel.run_units(fail_with, [("user",), ("sleep", 120.0)], 2, desc="test units")
    assert str(info.value).splitlines()[0] == "config key 'x' is wrong; expected y"
    assert time.monotonic() - start < 60  # the sleeping worker was terminated, not waited for
    with pytest.raises(WriteError) as info:
        parallel.run_units(fail_with, [("write",), ("none",)], 2, desc="test units")
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, "/run/evals/base.csv")


def test_parallel_run_gives_the_serial_tables_and_resumes_after_a_worker_is_killed(tiny_run, tmp_path, monkeypatch,
                                                                                     capsys):
    """One run directory: a jobs=2 run whose worker finetuning 'negated' is SIGKILLed at its
    2nd training state (one line, exit 2), then the same command resumes it; its tables are
    byte for byte those of the one-process session run (same seeds, one thread each)."""
    ref, _ = tiny_run
    out = tmp_path / "par"
    argv = ["run", "--preset", "tiny", "--set", "jobs=2", "--out", str(out)]
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv(KILL_ENV, "train_state/negated_seed0/step-@2")  # inherited by the spawned workers only
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("neglect: error:")]
    assert errors == [errors[0]] and "a worker process died while running finetuning runs" in errors[0]
    monkeypatch.delenv(KILL_ENV)
    assert main(argv) == 0
    assert (out / "results" / "metrics.csv").read_bytes() == (ref / "results" / "metrics.csv").read_bytes()
    for name in ("results/incontext.csv", "evals/base.csv", "docs/negated.jsonl"):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    for condition in ("plain", "negated"):  # the resumed run's training log too, but for its clock
        logs = [pd.read_csv(RunDir(d).train_log(condition, 0)).drop(columns="time") for d in (out, ref)]
        pd.testing.assert_frame_equal(*logs)


def test_a_run_resumes_with_another_jobs_value(tiny_run):
    out, table = tiny_run
    again = run_pipeline(load_config("tiny", overrides=["jobs=3"]), out)  # nothing left to do: no worker started
    pd.testing.assert_frame_equal(again, table)
