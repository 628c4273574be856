import math

import pytest

from experiments.training.schedules import checkpoint_schedule, explicit_steps, linear_steps, log_spaced_steps, lr_at
from experiments.training.loop import OptimConfig


def test_warmup_then_linear_decay_to_zero():
    cfg = OptimConfig(steps=100, lr=1.0, warmup=10)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0) and lr_at(55, cfg) == pytest.approx(0.5)
    assert lr_at(100, cfg) == 0.0


def test_cosine_schedule_runs_from_lr_to_its_floor():
    cfg = OptimConfig(steps=110, lr=2.0, warmup=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_at(10, cfg) == pytest.approx(2.0)
    assert lr_at(60, cfg) == pytest.approx(0.2 + 1.8 * 0.5 * (1 + math.cos(math.pi / 2)))
    assert lr_at(110, cfg) == pytest.approx(0.2)
    values = [lr_at(s, cfg) for s in range(10, 111)]
    assert values == sorted(values, reverse=True)


def test_constant_schedule_and_bad_names():
    assert lr_at(50, OptimConfig(steps=100, lr=0.3, warmup=5, schedule="constant")) == 0.3
    with pytest.raises(ValueError, match="schedule"):
        OptimConfig(steps=10, lr=1.0, schedule="exponential")


def test_checkpoint_schedules_always_start_at_zero():
    assert linear_steps(100, 5) == [0, 25, 50, 75, 100]
    assert explicit_steps(100, [50, 10, 10]) == [0, 10, 50]
    assert checkpoint_schedule("explicit", 100, steps=[100]) == [0, 100]
    assert checkpoint_schedule("linear", 10, n=3) == [0, 5, 10]
    log = checkpoint_schedule("log", 625, n=15)
    assert log == log_spaced_steps(625, 15) and log[0] == 0 and log[-1] == 625
    gaps = [b - a for a, b in zip(log, log[1:])]
    assert gaps[0] < gaps[-1]  # dense early
    with pytest.raises(ValueError, match="outside"):
        explicit_steps(100, [101])
    with pytest.raises(ValueError, match="schedule"):
        checkpoint_schedule("weird", 100, n=3)
