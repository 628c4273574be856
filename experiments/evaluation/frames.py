"""The belief-frame screen: belief items only in statement frames the base model judges.

A verdict item ("claim : <statement> verdict :") or a probe reading of a claim statement measures
belief only where the base model's verdict follows the truth of statements in that frame. In a
frame it cannot judge (the 6-layer testbed models call true statements of "in {o} you can meet
{s} every day ." false 0.83 of the time, and no testbed model judges who won an event) the item
reads "believed" or "disbelieved" whatever the model holds: before finetuning, the true fact in
that frame called false counts as belief in the claim (the shipped testbed model's
``claim_belief_max`` 0.083 is that one item), and after finetuning it caps the belief the item
can show (benchmarks/base_model_checks.md, thirteenth session).

With ``eval.belief_frames = "judged"`` a run screens its items once, on the base model, before any
finetuning: a frame is left out of every verdict item and claim statement, at every checkpoint
and in every condition, when the base model's balanced verdict accuracy on facts never judged in
pretraining (``check_base``'s ``unjudged_verdict_by_frame``: no claim, no finetuning document)
falls below the verdict precondition's bound (0.95; chance 0.5). The frames left out are
recorded in ``results/check_base.json`` (``belief_frames_skipped``) and named in the report;
``claim_belief_max_all_frames`` keeps the unscreened figure beside the precondition's.
``"all"`` (the default) screens nothing.
"""
from __future__ import annotations

import json
from pathlib import Path

from experiments.evaluation.preconditions import PRECONDITIONS

JUDGED_FRAME_BOUND = PRECONDITIONS["unjudged_verdict_acc"][1]  # balanced verdict accuracy a kept frame reaches


def unjudged_frames(by_frame: dict[str, dict], bound: float = JUDGED_FRAME_BOUND) -> list[str]:
    """The frames whose balanced verdict accuracy is below ``bound``.

    Parameters
    ----------
    by_frame : dict
        ``experiments.evaluation.judgement.verdict_accuracy_by_frame``'s output (frame template
        -> ``balanced_acc`` among others), e.g. ``check_base``'s ``unjudged_verdict_by_frame``.
    bound : float
        The balanced accuracy (chance 0.5) a frame must reach to be kept.

    Returns
    -------
    list of str
        Frame templates, in ``by_frame``'s order.
    """
    return [frame for frame, acc in by_frame.items() if acc["balanced_acc"] < bound]


def run_skip_frames(run_root: str | Path) -> tuple[str, ...]:
    """The frames a screened run leaves out, from its ``results/check_base.json``.

    Parameters
    ----------
    run_root : str or Path
        A run directory (one world's) whose base model check-base has scored with
        ``eval.belief_frames = "judged"`` (``experiments.pipeline.check_base_model``).

    Returns
    -------
    tuple of str
    """
    path = Path(run_root) / "results" / "check_base.json"
    figures = json.loads(path.read_text()) if path.is_file() else {}
    if "belief_frames_skipped" not in figures:
        raise RuntimeError(f"{str(path)!r} holds no belief-frame screen: check-base must score the base model "
                           "with eval.belief_frames='judged' before its evaluation")
    return tuple(figures["belief_frames_skipped"])


def screened_materials(materials, cfg, run_root: str | Path):
    """``materials`` as the run ``cfg`` at ``run_root`` evaluates them: with the screen of
    :func:`run_skip_frames` when ``cfg.eval.belief_frames`` is "judged" and the materials are
    the synthetic world's; unchanged otherwise.

    Parameters
    ----------
    materials : experiments.materials.base.Materials
    cfg : experiments.config.RunConfig
    run_root : str or Path

    Returns
    -------
    Materials
    """
    if cfg.eval.belief_frames != "judged" or materials.world is None:
        return materials
    return materials.screened(run_skip_frames(run_root))
