"""How many CPU threads torch uses: chosen on purpose, not torch's default of one per core.

The toy models' matrices are small: a second intra-op thread gains little, and when another
process holds the cores OpenMP threads that wait for each other make a run several times slower
(a tiny run: about 11 s with one thread, 60 s with the default of two, on 2 busy cores). So a
process takes half the cores it may run on (at least one) unless ``OMP_NUM_THREADS`` says otherwise.
"""
from __future__ import annotations

import os

import torch


def available_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_threads() -> int:
    """The intra-op thread count ``configure_threads`` sets: ``OMP_NUM_THREADS`` if given, else
    half the available cores, at least one."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) >= 1:
        return int(value)
    return max(1, available_cores() // 2)


def configure_threads() -> int:
    """Set torch's intra-op thread count to ``cpu_threads()`` and return it."""
    threads = cpu_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
