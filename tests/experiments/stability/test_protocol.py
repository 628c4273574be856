"""The stability protocol end to end on the tiny preset: tables, report, interpolation
endpoints, resume, and bad input."""
import numpy as np
import pandas as pd
import pytest

from experiments.cli import main
from experiments.config import load_config
from experiments.stability.protocol import COLUMNS, INTERP_COLUMNS, phase_checkpoints, tag

SETTINGS = ["stability.anchor=\"probe\"", "stability.weights=[0.5,2]", "stability.n_checkpoints=2",
            "stability.phase2_steps=3", "stability.n_interpolation=2", "stability.heldout_docs_per_claim=4",
            "seeds=[0,1]"]


@pytest.fixture(scope="module")
def stab_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("stability")
    assert main(["stability", "--preset", "tiny", *sum((["--set", s] for s in SETTINGS), []), "--out", str(out)]) == 0
    return out, pd.read_csv(out / "results" / "stability.csv")


def test_tables_cover_every_run_phase_and_step(stab_run):
    out, table = stab_run
    cfg = load_config("tiny", overrides=SETTINGS)
    assert list(table.columns) == COLUMNS
    assert set(zip(table.anchor, table.weight)) == {("none", 0.0), ("probe", 0.5), ("probe", 2.0)}
    for weight in (0.5, 2.0):
        for seed in (0, 1):
            for phase in (1, 2):
                rows = table[(table.anchor == "probe") & (table.weight == weight) & (table.seed == seed)
                             & (table.phase == phase)]
                assert sorted(rows.step.unique()) == phase_checkpoints(cfg, phase)
    metrics = set(table.metric)
    for metric in ("belief_forced_choice", "belief_yesno", "belief_verdict", "probe_p_true_fixed",
                   "probe_p_true_refit", "probe_acc_fixed", "probe_acc_refit", "heldout_loss",
                   "heldout_loss_claim", "heldout_loss_warning"):
        assert metric in metrics, metric
    # Phase 2 starts where Phase 1 ended, on one time axis
    kl = table[(table.anchor == "probe") & (table.weight == 0.5) & (table.seed == 0)]
    end1 = kl[(kl.phase == 1) & (kl.step == cfg.finetune.steps)].drop(columns=["phase", "step"])
    start2 = kl[(kl.phase == 2) & (kl.step == 0)].drop(columns=["phase", "step"])
    pd.testing.assert_frame_equal(end1.reset_index(drop=True), start2.reset_index(drop=True))
    assert kl[kl.phase == 2].global_step.max() == cfg.finetune.steps + 3
    # the anchored and unanchored runs start from the same base-model rows
    step0 = table[(table.step == 0) & (table.phase == 1) & (table.metric == "heldout_loss")]
    assert step0.value.nunique() == 1
    for name in ("stability_stats.csv", "stability_seed_stats.csv", "interpolation.csv", "metrics.csv"):
        assert (out / "results" / name).is_file(), name
    stats = pd.read_csv(out / "results" / "stability_stats.csv")
    assert {"rebound", "collapsed", "cross_time", "rebound_half_time", "phase1_end"} <= set(stats.stat)
    assert (stats.n_seeds == 2).all()
    report = (out / "report.html").read_text()
    assert "stability timeline" in report and "stability interpolation" in report and "stability losses" in report


def test_interpolation_endpoints_are_the_two_models(stab_run):
    out, table = stab_run
    interp = pd.read_csv(out / "results" / "interpolation.csv")
    assert list(interp.columns) == INTERP_COLUMNS
    assert sorted(interp.alpha.unique()) == [0.0, 1.0]
    steps = load_config("tiny").finetune.steps
    for weight in (0.5, 2.0):
        for seed in (0, 1):
            path = interp[(interp.weight == weight) & (interp.seed == seed)]
            ends = {0.0: table[(table.anchor == "probe") & (table.weight == weight) & (table.phase == 1)],
                    1.0: table[table.anchor == "none"]}
            for alpha, runs in ends.items():
                at = runs[(runs.seed == seed) & (runs.step == steps)]
                for metric in ("heldout_loss", "heldout_loss_claim", "probe_p_true_fixed", "belief_forced_choice"):
                    a = path[(path.alpha == alpha) & (path.metric == metric)].sort_values(["layer", "claim"])
                    b = at[at.metric == metric].sort_values(["layer", "claim"])
                    b = b[b.claim.fillna("") != "all"]
                    assert len(a) and len(a) == len(b), (metric, alpha)
                    np.testing.assert_allclose(a.value.to_numpy(), b.value.to_numpy(), atol=1e-5)


def test_rerun_resumes_without_recomputing(stab_run):
    out, table = stab_run
    evals = sorted((out / "evals" / "stability").rglob("*.csv"))
    checkpoints = sorted((out / "checkpoints" / "stability").rglob("config.json"))
    before = {p: p.stat().st_mtime_ns for p in evals + checkpoints}
    # one lost evaluation table is recomputed, and nothing else
    lost = out / "evals" / "stability" / tag("probe", 2.0) / "seed1" / "phase2" / "step_000003.csv"
    lost.unlink()
    assert main(["stability", "--preset", "tiny", *sum((["--set", s] for s in SETTINGS), []), "--out", str(out)]) == 0
    assert lost.is_file()
    assert all(p.stat().st_mtime_ns == t for p, t in before.items() if p != lost)
    again = pd.read_csv(out / "results" / "stability.csv")
    pd.testing.assert_frame_equal(again, table, check_exact=False, atol=1e-9)
    assert not (out / "train_state" / "stability").exists() or not any(
        (out / "train_state" / "stability").rglob("latest.json"))


@pytest.mark.parametrize("setting, message", [
    ('stability.anchor="nope"', "stability.anchor 'nope' is unknown"),
    ('stability.phase2_optimizer="warm"', "stability.phase2_optimizer 'warm' is unknown"),
    ("stability.weights=[-1]", "stability.weights must be"),
    ("stability.n_checkpoints=1", "stability.n_checkpoints must be >= 2"),
])
def test_bad_stability_settings_are_one_line_errors(tmp_path, capsys, setting, message):
    assert main(["stability", "--preset", "tiny", "--set", setting, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "x" / "config.json").exists()  # refused before anything was written


def test_every_arm_trains_only_what_finetune_trainable_names(tmp_path):
    """The anchored phases train the same parameters as the unanchored run: with
    ``finetune.trainable`` set (the testbed presets train layers 0-1's MLPs), a phase that
    trained every parameter would differ from the unanchored run in more than its anchor."""
    from safetensors.torch import load_file

    settings = ["stability.n_checkpoints=2", "stability.phase2_steps=2", "stability.n_interpolation=2",
                "stability.heldout_docs_per_claim=4", "seeds=[0]", r"finetune.trainable=layers\.0\..*mlp"]
    out = tmp_path / "stab"
    assert main(["stability", "--preset", "tiny", *sum((["--set", s] for s in settings), []), "--out", str(out)]) == 0
    base = load_file(out / "base" / "model.safetensors")
    runs = {"unanchored": out / "checkpoints" / "negated" / "seed0",
            "phase 1": out / "checkpoints" / "stability" / tag("self_distill", 1.0) / "seed0" / "phase1",
            "phase 2": out / "checkpoints" / "stability" / tag("self_distill", 1.0) / "seed0" / "phase2"}
    for arm, root in runs.items():
        last = sorted(root.glob("step_*"))[-1]
        tuned = load_file(last / "model.safetensors")
        moved = {name for name, w in tuned.items() if not np.array_equal(w.numpy(), base[name].numpy())}
        assert moved and all("layers.0." in name and "mlp" in name for name in moved), (arm, sorted(moved))


def test_a_rerun_may_add_anchor_weights_and_keeps_the_arms_already_run(stab_run, tmp_path):
    import shutil

    out, table = stab_run
    run = tmp_path / "more"
    shutil.copytree(out, run)
    kept = {p: p.stat().st_mtime_ns for p in (run / "checkpoints").rglob("model.safetensors")}
    more = [s if not s.startswith("stability.weights") else "stability.weights=[0.5,1,2]" for s in SETTINGS]
    assert main(["stability", "--preset", "tiny", *sum((["--set", s] for s in more), []), "--out", str(run)]) == 0
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # the earlier arms and the unanchored run
    again = pd.read_csv(run / "results" / "stability.csv")
    assert set(zip(again.anchor, again.weight)) == {("none", 0.0), ("probe", 0.5), ("probe", 1.0), ("probe", 2.0)}
    earlier = again[again.weight != 1.0].reset_index(drop=True)
    pd.testing.assert_frame_equal(earlier, table, check_exact=False, atol=1e-9)
    assert load_config("tiny", overrides=more).stability.weights == (0.5, 1.0, 2.0)
    # dropping a weight would hide an arm that was run: refused
    fewer = [s if not s.startswith("stability.weights") else "stability.weights=[0.5]" for s in SETTINGS]
    assert main(["stability", "--preset", "tiny", *sum((["--set", s] for s in fewer), []), "--out", str(run)]) == 2
