"""A run's independent units (finetuning runs, checkpoint evaluations) in worker processes.

``run_units(fn, units, jobs)`` calls ``fn(*unit)`` for every unit in up to ``jobs`` worker
processes (config key ``jobs``), for models small enough that one of them leaves the device (or
the cores) mostly idle. Used by ``experiments.training.stages.finetune_in_workers`` and
``experiments.evaluation.evaluator.evaluate_all``.

- **Spawned, not forked.** The parent may have initialised CUDA (it pretrained the base model),
  and a forked child of such a process cannot use it. ``fn`` and the unit's arguments are
  pickled: ``fn`` is a module-level function and each unit carries what its worker re-creates
  state from (the ``RunConfig``, the run directory, the base model's path). A script that
  starts a run with ``jobs`` > 1 needs the ``if __name__ == "__main__":`` guard (spawn imports
  the main module again in each worker).
- **Threads.** Each worker takes ``worker_threads(jobs)`` intra-op threads: ``OMP_NUM_THREADS``
  when set (a per-process count, as everywhere else), else the available cores divided among
  the workers, at least one, so N workers on C cores do not oversubscribe them.
- **Errors.** The first unit that fails stops the others (running workers are terminated, units
  not started are dropped) and its exception is raised in the parent: the worker's own
  ``UserError`` or ``OSError`` (errno and file name kept), which the CLI prints as one line. A
  worker that died (killed, out of memory) is a ``UserError`` saying so. Every unit writes its
  outputs atomically and is skipped when they exist, so a rerun resumes after any of these, as
  after a kill of the whole run. Workers die with the parent (Linux: ``PR_SET_PDEATHSIG``).
- **Progress.** Workers run with ``TQDM_DISABLE=1``; the parent shows one bar over the units.
- **One start-up per run.** Starting a worker costs seconds (it imports torch and transformers).
  Inside a ``shared_workers()`` block (``run_pipeline``), the calls of ``run_units`` with the
  same ``jobs`` reuse one pool: the finetuning and the evaluation stages pay it once. Workers
  ignore SIGINT: Ctrl-C stops the parent, which ends them.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import signal
import sys
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

from experiments.errors import UserError


def pool_size(jobs: int, n_units: int) -> int:
    """How many workers ``run_units`` would start: ``jobs``, at most one per unit. 1 means the
    caller runs the units in its own process instead."""
    return max(1, min(jobs, n_units))


def worker_threads(jobs: int) -> int:
    """Intra-op threads of each of ``jobs`` workers: ``OMP_NUM_THREADS`` when set, else the
    available cores // ``jobs``, at least one."""
    from experiments.training.threads import available_cores

    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) >= 1:
        return int(value)
    return max(1, available_cores() // max(1, jobs))


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this worker when the process that started it ends (a killed run
    leaves no worker training on behind it)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent ended before the request took effect
        os._exit(1)


def _init_worker(threads: int, parent: int, progress_bars: bool) -> None:
    """Runs first in every worker, before torch is imported there."""
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent handles it
    os.environ["TQDM_DISABLE"] = "1"  # read when tqdm is imported; the parent shows the bar
    import threading

    from tqdm.std import tqdm

    # tqdm's default lock holds a named semaphore, which a terminated worker would leave behind
    # (a "leaked semaphore" warning when the run ends); a worker's bars need no inter-process lock.
    tqdm.set_lock(threading.RLock())
    os.environ["OMP_NUM_THREADS"] = str(threads)
    from experiments.training.threads import configure_threads

    configure_threads()
    if not progress_bars:
        import transformers

        transformers.utils.logging.disable_progress_bar()


def _progress_bars_enabled() -> bool:
    if "transformers" not in sys.modules:
        return True
    return sys.modules["transformers"].utils.logging.is_progress_bar_enabled()


def _terminate(pool: cf.ProcessPoolExecutor) -> None:
    """End the pool's workers now (the units they were running are resumed by a rerun)."""
    if hasattr(pool, "terminate_workers"):  # Python >= 3.14
        pool.terminate_workers()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


_SHARED: dict = {}  # inside a shared_workers() block: "pool" -> (jobs, executor) once started


@contextmanager
def shared_workers() -> Iterator[None]:
    """Within the block, ``run_units`` calls with the same ``jobs`` share one pool of ``jobs``
    workers (started by the first call, ended with the block); nested blocks are one block."""
    if _SHARED:
        yield
        return
    _SHARED["pool"] = None
    try:
        yield
    finally:
        started = _SHARED.pop("pool", None)
        _SHARED.clear()
        if started is not None:
            started[1].shutdown(wait=True)


def _new_pool(workers: int) -> cf.ProcessPoolExecutor:
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                  initializer=_init_worker,
                                  initargs=(worker_threads(workers), os.getpid(), _progress_bars_enabled()))


def _pool_for(jobs: int, n_units: int) -> tuple[cf.ProcessPoolExecutor, bool]:
    """(pool, shared): the open block's pool of ``jobs`` workers, else a new one for these units."""
    if not _SHARED:
        return _new_pool(pool_size(jobs, n_units)), False
    started = _SHARED.get("pool")
    if started is None or started[0] != jobs:
        if started is not None:
            started[1].shutdown(wait=True)
        _SHARED["pool"] = started = (jobs, _new_pool(jobs))  # workers start as units arrive, at most jobs
    return started[1], True


def run_units(fn: Callable, units: Sequence[tuple], jobs: int, *, desc: str) -> None:
    """Call ``fn(*unit)`` for every unit in up to ``jobs`` spawned worker processes and return
    when all are done (their return values are dropped: units write their own outputs).

    Parameters
    ----------
    fn : a module-level function (pickled by name).
    units : argument tuples, each picklable; started in this order.
    jobs : the most workers at a time (``pool_size(jobs, len(units))`` are started).
    desc : what the units are, for the progress bar and the message about a dead worker.

    Raises
    ------
    The first failing unit's exception (``UserError``, ``OSError``, ...); ``UserError`` when a
    worker died without one. The other workers are terminated first.
    """
    from tqdm.auto import tqdm

    if not units:
        return
    pool, shared = _pool_for(jobs, len(units))
    try:
        futures = [pool.submit(fn, *unit) for unit in units]
        for future in tqdm(cf.as_completed(futures), total=len(futures),
                           desc=f"{desc} ({pool_size(jobs, len(units))} workers)", leave=False):
            try:
                future.result()
            except cf.process.BrokenProcessPool as exc:
                raise UserError(f"a worker process died while running {desc} (killed, or out of memory?); rerun "
                                "the same command to resume (finished units are kept), with a smaller 'jobs' if "
                                "memory is short") from exc
    except BaseException:
        if shared:
            _SHARED["pool"] = None
        _terminate(pool)
        raise
    if not shared:
        pool.shutdown(wait=True)
