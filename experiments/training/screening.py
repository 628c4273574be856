"""Screening a pretraining run: stop it at a tracked step when a tracked measure says the run
will not do (``pretrain.screen_step``, ``screen_measure``, ``screen_min``).

Issue 22 found that which way a testbed pretraining run goes (a judgement that generalises to
facts it never saw judged, or a memorised table of verdicts) shows early in the tracking: the
held-out people's city read at the name (``name_city_transfer_acc``) at 80M tokens. A screened-out
run keeps its tracking and its training state at that step, and ``results/pretrain_screened.json``
records why; the same config stops again at once, and a bar the recorded value clears (a lower
``screen_min``, or ``screen_step = 0``) resumes the run from where it stopped.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable

from experiments.artifacts.atomic import atomic_write_json
from experiments.errors import StopTraining, UserError


class ScreenedOut(StopTraining):
    """Pretraining stopped by its screen; the message is one line naming the measure and the bar."""

    def __init__(self, record: dict):
        self.record = record
        super().__init__(f"pretraining screened out at step {record['step']}: {record['measure']} "
                         f"{record['value']:.3f} < pretrain.screen_min {record['min']} (state and tracking kept; "
                         "lower the bar or set pretrain.screen_step=0 to resume)")


def _fails(value: float, screen_min: float) -> bool:
    return math.isnan(value) or value < screen_min


def screened(track: Callable[[int, object], dict], pretrain, record_path: Path) -> Callable[[int, object], dict]:
    """Wrap a tracking callback (``experiments.evaluation.tracking.judgement_tracker``) so that at
    ``pretrain.screen_step`` it raises ``ScreenedOut`` when the row's ``screen_measure`` is below
    ``screen_min`` (after writing the row and ``record_path``). Off when ``screen_step`` is 0.

    Parameters
    ----------
    track : callable
        ``track(step, model) -> row`` (a dict of tracked measures).
    pretrain : TrainConfig
        The run's pretraining settings.
    record_path : Path
        Where the verdict of a screened-out run is written (``results/pretrain_screened.json``).

    Returns
    -------
    callable
        The wrapped callback.
    """
    if not pretrain.screen_step:
        return track

    def on_track(step: int, model) -> dict:
        row = track(step, model)
        if step == pretrain.screen_step:
            if pretrain.screen_measure not in row:
                raise UserError(f"pretrain.screen_measure {pretrain.screen_measure!r} is not tracked in this world; "
                                 f"tracked: {sorted(k for k in row if k not in ('step', 'tokens'))}")
            value = float(row[pretrain.screen_measure])
            if _fails(value, pretrain.screen_min):
                record = {"step": step, "tokens": row.get("tokens"), "measure": pretrain.screen_measure,
                          "value": value, "min": pretrain.screen_min}
                atomic_write_json(record_path, record)
                raise ScreenedOut(record)
        return row

    return on_track


def check_not_screened_out(pretrain, record_path: Path) -> None:
    """Before pretraining resumes: raise ``ScreenedOut`` again if this run was screened out and
    its recorded value still fails this config's screen (the same measure and step); otherwise
    forget the record, so the run goes on from its saved state."""
    if not record_path.is_file():
        return
    record = json.loads(record_path.read_text(encoding="utf-8"))
    same_screen = pretrain.screen_step == record["step"] and pretrain.screen_measure == record["measure"]
    if same_screen and _fails(float(record["value"]), pretrain.screen_min):
        raise ScreenedOut({**record, "min": pretrain.screen_min})
    record_path.unlink()
