"""End to end on the tiny preset: every stage runs, tables and report land, reruns resume."""
import json
import subprocess
import sys

import pandas as pd
import pytest

from experiments.cli import main
from experiments.config import load_config
from experiments.evaluation.tables import ID_COLUMNS
from experiments.pipeline import run_pipeline
from experiments.training.stages import checkpoint_steps
from experiments.artifacts.rundir import RunDir


def test_run_directory_is_complete(tiny_run):
    out, table = tiny_run
    cfg = load_config("tiny")
    assert list(table.columns) == ID_COLUMNS
    assert set(table.condition) == set(cfg.conditions)
    assert sorted(table.step.unique()) == checkpoint_steps(cfg)
    n_layers = cfg.model.n_layers
    assert sorted(table.dropna(subset=["layer"]).layer.unique()) == list(range(n_layers + 1))
    for metric in ("belief_forced_choice", "belief_yesno", "belief_verdict", "probe_p_true_refit",
                   "probe_p_true_fixed", "probe_acc_refit", "heldout_qa"):
        assert metric in set(table.metric), metric
    assert table.value.between(-1e3, 1e3).all()
    for name in ("config.json", "world.json", "report.html", "results/metrics.csv", "figures/belief_vs_step.html",
                 "figures/probe_reading_vs_step.html", "figures/plotly.min.js"):
        assert (out / name).is_file(), name
    assert pd.read_csv(out / "results" / "metrics.csv").shape == table.shape
    report = (out / "report.html").read_text()
    assert report.count("plotly.js v") == 1 or report.count("Plotly") >= 1
    assert "belief vs step" in report and "probe reading vs step" in report


def test_every_checkpoint_is_an_hf_directory(tiny_run):
    out, _ = tiny_run
    cfg = load_config("tiny")
    run = RunDir(out)
    for condition in cfg.conditions:
        for step in checkpoint_steps(cfg)[1:]:
            assert (run.checkpoint(condition, 0, step) / "config.json").is_file()


def test_fixed_and_refit_probes_agree_at_step_zero(tiny_run):
    _, table = tiny_run
    base = table[table.step == 0]
    fixed = base[base.metric == "probe_p_true_fixed"].value.to_numpy()
    refit = base[base.metric == "probe_p_true_refit"].value.to_numpy()
    assert abs(fixed - refit).max() < 1e-9


def test_rerun_resumes_without_recomputing(tiny_run):
    out, table = tiny_run
    run = RunDir(out)
    eval_file = run.eval_file("plain", 0, checkpoint_steps(load_config("tiny"))[-1])
    before = eval_file.stat().st_mtime_ns
    again = run_pipeline(load_config("tiny"), out)
    assert eval_file.stat().st_mtime_ns == before
    pd.testing.assert_frame_equal(again, table)


def test_run_refuses_a_different_config_in_the_same_directory(tiny_run, capsys):
    out, _ = tiny_run
    code = main(["run", "--preset", "tiny", "--set", "finetune.lr=0.5", "--out", str(out)])
    assert code == 2
    assert "different config" in capsys.readouterr().err


def test_cli_bad_key_is_one_line_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "experiments", "run", "--preset", "tiny", "--set",
                           "finetune.stepz=3", "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("neglect: error: unknown config key 'finetune.stepz'; expected one of [")
    assert "'steps'" in lines[0] and "Traceback" not in proc.stderr


def test_report_rebuilds_from_tables_alone(tiny_run, tmp_path):
    out, _ = tiny_run
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").is_file()


def test_check_base_reports_every_precondition_as_a_fraction(tiny_run):
    from experiments.pipeline import check_base_model

    out, _ = tiny_run
    figures = check_base_model(out)
    for key in ("heldout_qa", "claim_belief", "in_context_true_answer", "statement_probe_best_acc", "verdict_logit_acc",
                "unjudged_verdict_acc", "unjudged_yesno_acc"):
        assert 0.0 <= figures[key] <= 1.0, key
    lo, hi = figures["statement_probe_best_ci"]  # over held-out subjects, around the accuracy
    assert lo <= figures["statement_probe_best_acc"] <= hi and figures["statement_probe_ci_subjects"] > 1
    world = json.loads((out / "world.json").read_text())
    assert world["judge_heldout"]  # the never-judged pairs are part of the run's description
    by_frame = figures["unjudged_verdict_by_frame"]  # every statement frame of the relations judged
    assert by_frame and all(0.0 <= f[k] <= 1.0 for f in by_frame.values() for k in ("true_acc", "false_acc"))
    assert all(f["balanced_acc"] == pytest.approx((f["true_acc"] + f["false_acc"]) / 2) for f in by_frame.values())
    worst = figures["unjudged_verdict_worst_frame"]
    assert by_frame[worst]["balanced_acc"] == min(f["balanced_acc"] for f in by_frame.values())
    probe_frames = figures["statement_probe_by_frame"]  # the statement probe at its layer, per frame
    pooled = sum(f["acc"] * f["n"] for f in probe_frames.values()) / sum(f["n"] for f in probe_frames.values())
    assert pooled == pytest.approx(figures["statement_probe_best_acc"])  # every held-out statement has its frame
    assert probe_frames[figures["statement_probe_worst_frame"]]["acc"] == min(f["acc"] for f in probe_frames.values())


def test_the_shipped_models_record_every_figure_check_base_reports(tiny_run):
    """A run from a shipped base model reads its check-base figures from the model's provenance
    instead of recomputing them, so figures that check-base gained after the export would be
    missing from the demo's report: each shipped model records every key a fresh check-base gives
    (the tiny run's; the shipped ones add the keys of held-out entities and of the belief-frame screen)."""
    from experiments.pipeline import check_base_model
    from experiments.training import shipped

    out, _ = tiny_run
    fresh = set(check_base_model(out))
    for name, path in shipped.shipped_models().items():
        recorded = set(shipped.read_provenance(path)["check_base"])
        assert fresh <= recorded, (name, sorted(fresh - recorded))


def test_a_run_checks_its_base_model_and_names_failed_preconditions(tiny_run):
    from experiments.evaluation.preconditions import failure_line

    out, _ = tiny_run
    figures = json.loads((out / "results" / "check_base.json").read_text())  # written by the run itself
    line = failure_line(figures)
    assert line is not None and line.startswith("base model fails its preconditions: ")
    assert "\n" not in line


def test_neighbourhood_controls_are_read_at_every_checkpoint(tiny_run):
    """The tiny world's claims have neighbours (claim1's subject, both fabricated objects):
    their probe rows are there for every checkpoint, layer and probe, per claim."""
    from experiments.materials import load_materials

    _, table = tiny_run
    cfg = load_config("tiny")
    neighbours = load_materials(cfg).neighbour_statements()
    expected = {(n.claim, n.kind) for n in neighbours}
    assert {("claim1_lives_in", "subject"), ("claim0_won_by", "object")} <= expected
    for claim, kind in expected:
        for measure in ("acc", "p_true"):
            for probe in ("fixed", "refit"):
                rows = table[(table.metric == f"probe_{measure}_neighbour_{kind}_{probe}") & (table.claim == claim)]
                assert len(rows) == len(cfg.conditions) * len(checkpoint_steps(cfg)) * (cfg.model.n_layers + 1)
                assert rows.value.between(0, 1).all()
    assert (table[table.metric.str.startswith("probe_z_neighbour_")].claim.isin({c for c, _ in expected})).all()
    base = table[table.step == 0]  # one base model: the fixed and the refit probe are the same probe there
    for kind in ("subject", "object"):
        fixed = base[base.metric == f"probe_p_true_neighbour_{kind}_fixed"].value.to_numpy()
        refit = base[base.metric == f"probe_p_true_neighbour_{kind}_refit"].value.to_numpy()
        assert len(fixed) and abs(fixed - refit).max() < 1e-9
