"""Learning-rate schedules and checkpoint schedules: pure functions of the step number.

Both are pure on purpose: resuming a run needs nothing but the step to restore them.
"""
from __future__ import annotations

import math
from typing import Iterable

from experiments.config import LR_SCHEDULES


def lr_at(step: int, cfg) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of ``cfg`` (an ``OptimConfig``).

    Linear warmup over ``cfg.warmup`` steps, then ``cfg.schedule``: "linear" decays to 0 at
    ``cfg.steps``, "cosine" follows half a cosine from ``lr`` to ``cfg.min_lr_ratio * lr``,
    "constant" stays at ``lr``.
    """
    schedule = getattr(cfg, "schedule", "linear")
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr schedule {schedule!r}; expected one of {LR_SCHEDULES}")
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if schedule == "constant":
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    if schedule == "linear":
        return cfg.lr * (1.0 - progress)
    floor = getattr(cfg, "min_lr_ratio", 0.0) * cfg.lr
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def log_spaced_steps(total: int, n: int) -> list[int]:
    """``n`` checkpoint steps from 0 to ``total``, log-spaced (0 and ``total`` always included)."""
    if total <= 0:
        return [0]
    steps = {0, total}
    for i in range(1, max(n - 1, 1)):
        steps.add(int(round(math.exp(math.log(total) * i / (n - 1)))))
    return sorted(s for s in steps if 0 <= s <= total)


def log_spaced_from(total: int, n: int, first: int) -> list[int]:
    """Step 0 plus ``n`` steps log-spaced from ``first`` to ``total`` (both included; the
    paper's schedule: 15 checkpoints from step 10). Fewer when steps coincide after rounding,
    and just ``[0, total]`` when ``total <= first``."""
    if total <= 0:
        return [0]
    if total <= first or n <= 1:
        return [0, total] if n >= 1 else [0]
    ratio = math.log(total / first)
    return sorted({0, total} | {int(round(first * math.exp(ratio * i / (n - 1)))) for i in range(n - 1)})


def linear_steps(total: int, n: int) -> list[int]:
    """``n`` evenly spaced checkpoint steps from 0 to ``total`` (both included)."""
    if total <= 0 or n <= 1:
        return [0] if total <= 0 else [0, total]
    return sorted({round(total * i / (n - 1)) for i in range(n)})


def explicit_steps(total: int, steps: Iterable[int]) -> list[int]:
    """The given steps, sorted and deduplicated, with 0 added; steps outside [0, total] are an error."""
    steps = {int(s) for s in steps}
    bad = sorted(s for s in steps if not 0 <= s <= total)
    if bad:
        raise ValueError(f"checkpoint steps {bad} are outside 0..{total}")
    return sorted(steps | {0})


def checkpoint_schedule(kind: str, total: int, n: int | None = None, steps: Iterable[int] | None = None) -> list[int]:
    """Checkpoint steps by name: "log" or "linear" (with ``n``), or "explicit" (with ``steps``).
    Step 0 (the model before training) is always included."""
    if kind == "explicit":
        if steps is None:
            raise ValueError("an explicit checkpoint schedule needs steps=[...]")
        return explicit_steps(total, steps)
    if kind not in ("log", "linear"):
        raise ValueError(f"unknown checkpoint schedule {kind!r}; expected 'log', 'linear' or 'explicit'")
    if n is None or n < 1:
        raise ValueError(f"a {kind} checkpoint schedule needs n >= 1 checkpoints; got {n!r}")
    return (log_spaced_steps if kind == "log" else linear_steps)(total, n)
