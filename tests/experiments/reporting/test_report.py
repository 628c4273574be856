"""The report and `neglect plot` on a real tiny run: one offline HTML page with every figure,
rebuilt from tables and the activation cache without touching a model."""
from __future__ import annotations

import html
import re
import shutil

import numpy as np
import pytest

from experiments.reporting import report
from experiments.cli import main


def test_report_is_self_contained_with_every_figure(tiny_run):
    out, _ = tiny_run
    page = report.write_report(out).read_text()
    from plotly.offline import get_plotlyjs

    bundle_head = get_plotlyjs()[:200]
    assert page.count(bundle_head) == 1  # plotly.js inlined exactly once
    assert not re.search(r"<script[^>]+src=", page)  # nothing to fetch: works offline
    for name in report.FIGURES:
        # `neglect stability` / judge-on runs / runs that pretrained with tracking / `neglect patch` / `neglect steer` only
        if name.startswith(("stability_", "belief_patching")) or name in ("judged_belief", "pretraining_tracking",
                                                                         "truth_steering"):
            assert f'id="fig-{name}"' not in page, name
            continue
        assert f'id="fig-{name}"' in page, name
        assert (out / "figures" / f"{name}.html").is_file()
    assert "belief vs step" in page and "probe reading vs step" in page
    assert "Chance for a model whose answer ignores the question" in page
    assert "Not shown" not in page


def test_rebuilding_reads_the_cache_and_never_loads_a_model(tiny_run, monkeypatch):
    out, _ = tiny_run
    report.write_report(out)  # fills figures_cache/ if an earlier test did not
    assert (out / report.CACHE_DIR / "base.safetensors").is_file()

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded while rebuilding the report")

    import interp

    monkeypatch.setattr(interp, "load_model", refuse)
    monkeypatch.setattr(report, "checkpoint_activations", refuse)
    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0
    assert 'id="fig-activation_projection"' in (out / "report.html").read_text()


def test_cached_probes_are_the_pipelines_probes(tiny_run):
    """The refit probe stored with the activations reproduces metrics.csv's claim readings."""
    out, table = tiny_run
    acts = report.cache_activations(out, compute=False)
    assert acts is not None and acts.steps == sorted(table.step.unique())
    is_claim = (acts.claims.kind == "claim").to_numpy()
    names = acts.claims.claim.to_numpy()
    for condition in acts.conditions:
        key = (condition, acts.seeds[0])
        for t, step in enumerate(acts.steps):
            for layer in range(acts.n_layers):
                logits = acts.claim_acts[key][t, :, layer] @ acts.coef[key][t, layer] + acts.intercept[key][t, layer]
                p = 1 / (1 + np.exp(-logits))
                rows = table[(table.condition == condition) & (table.seed == acts.seeds[0]) & (table.step == step)
                             & (table.layer == layer) & (table.metric == "probe_p_true_refit")]
                for claim, value in zip(rows.claim, rows.value):
                    assert p[is_claim & (names == claim)].mean() == pytest.approx(value, abs=1e-4)


def test_a_damaged_cache_entry_is_recomputed(tiny_run, tmp_path):
    out, _ = tiny_run
    report.cache_activations(out)
    run = tmp_path / "run"
    shutil.copytree(out, run)
    entry = next((run / report.CACHE_DIR).rglob("step_*.safetensors"))
    entry.write_bytes(entry.read_bytes()[:100])  # truncated, as after a kill
    assert report.cache_activations(run, compute=False) is None
    acts = report.cache_activations(run, progress=False)
    assert acts is not None and entry.stat().st_size > 100


def test_report_without_checkpoints_keeps_the_table_figures(tiny_run, tmp_path):
    out, _ = tiny_run
    run = tmp_path / "tables_only"
    shutil.copytree(out / "results", run / "results")
    shutil.copy(out / "config.json", run / "config.json")
    page = report.write_report(run).read_text()
    for name in ("belief_vs_step", "probe_accuracy_heatmap", "loss_curves"):
        assert f'id="fig-{name}"' in page
    assert 'id="fig-activation_projection"' not in page
    assert "Not shown" in page and "activation_projection" in page


def test_summary_table_has_a_row_per_condition_and_the_base(tiny_run):
    out, table = tiny_run
    summary = report.summary_table(table)
    assert list(summary.index) == sorted(set(table.condition)) + ["(base model)"]
    assert {"belief_forced_choice", "probe_p_true_fixed", "probe_p_true_refit"} <= set(summary.columns)
    from experiments.evaluation.chance import HEADLINE

    columns = list(summary.columns)
    assert columns[:3 + len(HEADLINE)] == ["belief_forced_choice", "belief_verdict", "belief_yesno", *HEADLINE]
    assert "endorse_claim 0.5" in report.chance_note(columns) and "belief_verdict" not in report.chance_note(columns)


def test_plot_command_writes_html_and_png(tiny_run, tmp_path, capsys):
    out, _ = tiny_run
    assert main(["plot", str(out), "belief_vs_step", "--out", str(tmp_path / "belief")]) == 0
    assert (tmp_path / "belief.html").is_file()
    printed = capsys.readouterr()
    if (tmp_path / "belief.png").is_file():
        assert (tmp_path / "belief.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert "PNG skipped" in printed.err  # no exporter here: said so, HTML still written
    assert main(["plot", str(out), "direction_similarity", "--layer", "1", "--no-png",
                 "--out", str(tmp_path / "cos.html")]) == 0
    assert "layer 1" in (tmp_path / "cos.html").read_text()


def test_png_is_skipped_with_a_message_without_an_exporter(tiny_run, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_kaleido(name, *args, **kwargs):
        if name == "kaleido":
            raise ImportError("no kaleido here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_kaleido)
    out, _ = tiny_run
    html_path, png_path, note = report.save_figure(report.build_figure(out, "loss_curves"), tmp_path / "loss")
    assert html_path.is_file() and png_path is None and "PNG skipped" in note


def test_plot_command_errors_are_one_line(tiny_run, capsys):
    out, _ = tiny_run
    assert main(["plot", str(out), "nonsense"]) == 2
    err = capsys.readouterr().err
    assert "unknown figure 'nonsense'" in err and "belief_vs_step" in err and len(err.strip().splitlines()) == 1
    assert main(["plot", str(out), "probe_reading_vs_step", "--layer", "99"]) == 2
    assert "layer 99" in capsys.readouterr().err
    assert main(["plot", str(out / "missing"), "belief_vs_step"]) == 2


def test_a_failing_activation_pass_does_not_lose_the_report(tiny_run, tmp_path, monkeypatch, capsys):
    out, _ = tiny_run
    run = tmp_path / "run"
    shutil.copytree(out, run, ignore=shutil.ignore_patterns(report.CACHE_DIR))

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(report, "checkpoint_activations", broken)
    page = report.write_report(run).read_text()
    assert 'id="fig-belief_vs_step"' in page and 'id="fig-activation_projection"' not in page
    assert "CUDA out of memory (simulated)" in page
    assert "activation figures skipped" in capsys.readouterr().err


def test_the_report_marks_failed_base_model_preconditions(tiny_run):
    from experiments.pipeline import check_base_model
    from experiments.reporting.report import preconditions_section

    out, _ = tiny_run
    figures = check_base_model(out)  # the tiny model is barely trained: it fails
    section = preconditions_section(figures)
    assert "Base model preconditions" in section and "FAIL" in section
    assert "statement_probe_best_acc" in section and "held-out subjects)" in section
    good = {k: 1.0 for k in ("heldout_entity_qa", "unjudged_verdict_acc", "unjudged_yesno_acc",
                             "statement_probe_best_acc", "in_context_true_answer", "in_context_plain_answer")}
    assert "FAIL" not in preconditions_section(good | {"claim_belief_max": 0.0})
    assert figures["unjudged_verdict_worst_frame"] in html.unescape(section)  # the frame judged worst is named
    frame = "in {o} you can meet {s} every day ."
    lopsided = {"unjudged_verdict_worst_frame": frame, "unjudged_verdict_by_frame": {frame: {
        "true_acc": 0.17, "false_acc": 0.92, "balanced_acc": 0.545}}}
    assert "true statements 0.17, false ones 0.92, balanced 0.55" in html.unescape(preconditions_section(good | lopsided))
    probe = {"statement_probe_worst_frame": frame, "statement_probe_by_frame": {frame: {"acc": 0.53, "n": 248}}}
    assert f'reads worst at its layer: "{frame}" (0.53 on 248 held-out statements' in html.unescape(
        preconditions_section(good | probe))


def test_the_report_names_the_frames_a_screened_run_leaves_out_of_its_belief_items():
    from experiments.reporting.report import preconditions_section

    frame = "in {o} you can meet {s} every day ."
    assert "leave out" not in preconditions_section({"claim_belief_max": 0.0})  # eval.belief_frames "all"
    screened = html.unescape(preconditions_section({"claim_belief_max": 0.001, "belief_frames_skipped": [frame],
                                                    "claim_belief_max_all_frames": 0.083}))
    assert 'leave out 1 statement frame the base model does not judge' in screened and f'"{frame}"' in screened
    assert "claim_belief_max would read 0.083" in screened
    assert "use every statement frame" in preconditions_section({"belief_frames_skipped": []})
