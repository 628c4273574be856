"""The belief-frame screen (experiments.evaluation.frames): which frames it leaves out, that the
claims' verdict items and claim statements in them go and nothing else does, and that a
screened run evaluates only screened materials."""
import json

import pytest

from experiments.config import load_config
from experiments.errors import UserError
from experiments.evaluation.evaluator import Evaluator
from experiments.evaluation.frames import JUDGED_FRAME_BOUND, run_skip_frames, screened_materials, unjudged_frames
from experiments.materials import load_materials
from experiments.materials.world import RELATIONS

OBJECT_FIRST = "in {o} you can meet {s} every day ."


def test_a_frame_is_left_out_when_its_balanced_verdict_accuracy_is_below_the_bound():
    by_frame = {"a {s} {o}": {"balanced_acc": 0.99}, "b {s} {o}": {"balanced_acc": JUDGED_FRAME_BOUND - 0.001},
                "c {s} {o}": {"balanced_acc": JUDGED_FRAME_BOUND}, "d {s} {o}": {"balanced_acc": 0.5}}
    assert unjudged_frames(by_frame) == ["b {s} {o}", "d {s} {o}"]
    assert JUDGED_FRAME_BOUND == 0.95  # the verdict precondition's bound
    assert unjudged_frames({}) == []


def test_screened_materials_leave_out_the_verdict_items_and_claim_statements_of_those_frames_only():
    materials = load_materials(load_config("tiny"))
    screened = materials.screened([OBJECT_FIRST])
    assert materials.skip_frames is None and screened.skip_frames == (OBJECT_FIRST,)
    everything, kept = materials.belief_questions(), screened.belief_questions()
    lives_in = [c.name for c in materials.world.claims if c.fact.relation == "lives_in"]
    assert lives_in
    gone = {(q.claim, q.qid) for q in everything} - {(q.claim, q.qid) for q in kept}
    frame = RELATIONS["lives_in"].affirmative.index(OBJECT_FIRST)
    n_affirmative, n_negated = len(RELATIONS["lives_in"].affirmative), len(RELATIONS["lives_in"].negated)
    # verdict items: the claim in each affirmative frame, its negations, the true fact in each affirmative frame
    assert gone == {(c, f"v{i}") for c in lives_in for i in (frame, n_affirmative + n_negated + frame)}
    by_key = {(q.claim, q.qid): q for q in everything}
    assert all(by_key[k] == q for q in kept for k in [(q.claim, q.qid)])  # the others unchanged, qids kept
    texts = {s.text for s in materials.claim_statements()} - {s.text for s in screened.claim_statements()}
    claims = {c.name: c for c in materials.world.claims}
    expected = {claims[c].fact.statement(frame) for c in lives_in}
    expected |= {claims[c].true_fact.statement(frame) for c in lives_in if not claims[c].novel}
    assert texts == expected


def test_a_screened_run_evaluates_only_screened_materials(tmp_path):
    cfg = load_config("tiny", overrides=['eval.belief_frames="judged"'])
    materials = load_materials(cfg)
    with pytest.raises(ValueError, match="not screened"):
        Evaluator(cfg, materials)
    with pytest.raises(RuntimeError, match="no belief-frame screen"):  # check-base has not scored the base model
        screened_materials(materials, cfg, tmp_path)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "check_base.json").write_text(json.dumps({"belief_frames_skipped": [OBJECT_FIRST]}))
    assert run_skip_frames(tmp_path) == (OBJECT_FIRST,)
    ev = Evaluator(cfg, screened_materials(materials, cfg, tmp_path))
    assert len(ev.claim_stmts) < len(materials.claim_statements())
    unscreened = load_config("tiny")
    assert screened_materials(materials, unscreened, tmp_path) is materials  # "all": nothing read, nothing left out


def test_the_screen_is_for_the_synthetic_world_only():
    with pytest.raises(UserError, match="imported materials have none"):
        load_config("tiny", overrides=['eval.belief_frames="judged"', 'materials.claims="x"', 'materials.docs="y"'])


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_screened_run_leaves_the_screened_frames_out_of_every_checkpoint(tmp_path, monkeypatch, capsys, jobs):
    """End to end on the tiny world, whose barely trained model judges no frame: with the screen
    set to leave out only the won_by frames, the won_by claim gets no verdict item and no probe
    reading (a warning line names it), the lives_in claim keeps all of its, at every checkpoint,
    in one process and in worker processes alike."""
    from experiments.evaluation import checks
    from experiments.pipeline import run_pipeline

    won_by = [*RELATIONS["won_by"].affirmative, *RELATIONS["won_by"].negated]
    monkeypatch.setattr(checks, "unjudged_frames", lambda by_frame: [f for f in by_frame if f in won_by])
    cfg = load_config("tiny", overrides=['eval.belief_frames="judged"', 'conditions=["plain"]', f"jobs={jobs}"])
    table = run_pipeline(cfg, tmp_path / "run")
    assert "leaves claim0_won_by no statement frame" in capsys.readouterr().err
    figures = json.loads((tmp_path / "run" / "results" / "check_base.json").read_text())
    assert figures["belief_frames_skipped"] == won_by and "claim_belief_max_all_frames" in figures
    n = table[table.metric == "belief_verdict_n"].groupby("claim").value.agg(["min", "max"])
    lives_in = RELATIONS["lives_in"]
    assert n.loc["claim1_lives_in"].tolist() == [2 * len(lives_in.affirmative) + len(lives_in.negated)] * 2
    assert "claim0_won_by" not in n.index
    probe = table[table.metric == "probe_p_true_fixed"]
    assert set(probe.claim) == {"claim1_lives_in"} and set(probe.step) == {0, *table.step.unique()}


def test_the_stability_protocol_evaluates_the_screened_materials(tmp_path, monkeypatch, capsys):
    """`neglect stability` (and its notebook handle) reads claims through the same screen as a run,
    its weight-space interpolation too; in a run of several worlds the screen's warning line names
    the world."""
    from experiments import pipeline
    from experiments.evaluation import checks

    won_by = [*RELATIONS["won_by"].affirmative, *RELATIONS["won_by"].negated]
    monkeypatch.setattr(checks, "unjudged_frames", lambda by_frame: [f for f in by_frame if f in won_by])
    cfg = load_config("tiny", overrides=['eval.belief_frames="judged"', "stability.phase2_steps=3",
                                         "stability.n_checkpoints=2"])
    proto = pipeline.stability_protocol(cfg, tmp_path / "run")
    assert proto.materials.skip_frames == tuple(won_by)
    assert {s.claim for s in proto.materials.claim_statements()} == {"claim1_lives_in"}
    from experiments.stability.measures import interpolation_rows

    rows = interpolation_rows(proto.base, proto.base, [0.0], proto.evaluator, proto.heldout_docs(), "cpu")
    verdicts = rows[rows.metric == "belief_verdict_n"].set_index("claim").value
    lives_in = RELATIONS["lives_in"]
    assert "claim0_won_by" not in verdicts.index
    assert verdicts["claim1_lives_in"] == 2 * len(lives_in.affirmative) + len(lives_in.negated)
    capsys.readouterr()
    again = pipeline.evaluation_materials(proto.run, cfg, pipeline.load_materials(cfg), label="world 1: ")
    assert again.skip_frames == tuple(won_by)
    assert "world 1: the belief-frame screen (eval.belief_frames='judged') leaves claim0_won_by" in capsys.readouterr().err


def test_a_screen_that_leaves_no_claim_a_frame_is_refused_before_any_finetuning(tmp_path):
    """The tiny model, barely trained, judges no frame: `neglect run` with the screen stops in one
    line (exit 2) after pretraining and check-base, before a finetuning step is spent."""
    from experiments.cli import main
    from experiments.artifacts.rundir import RunDir

    out = tmp_path / "run"
    code = main(["run", "--preset", "tiny", "--set", "eval.belief_frames=judged", "--set", 'conditions=["plain"]',
                 "--out", str(out)])
    assert code == 2
    figures = json.loads((out / "results" / "check_base.json").read_text())
    assert len(figures["belief_frames_skipped"]) == len(figures["unjudged_verdict_by_frame"])
    assert not (out / "checkpoints").exists() and not RunDir(out).checkpoint("plain", 0, 1).exists()
