"""`neglect patch RUN_DIR` on the tiny run: every condition, seed, site, layer and direction
in results/patching.csv, the figure written, each checkpoint's rows kept and read back by a
rerun, and bad arguments refused in one line."""
from __future__ import annotations


import pandas as pd
import pytest

from experiments.causal import SITES
from experiments.cli import main
from experiments.reporting.report import build_figure, write_report
from tests.experiments.test_bad_inputs import cli_error


def test_patch_writes_every_checkpoint_and_reads_it_back(run, capsys):
    assert main(["patch", str(run), "--min-shift", "0"]) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(run / "results" / "patching.csv")
    n_layers = table.layer.max()
    assert set(table.condition) == {"plain", "negated", "local"} and set(table.seed) == {0}
    per = table.groupby(["condition", "seed"]).size()
    n_questions = table.groupby(["claim", "about"]).ngroups  # claims x what their questions ask about
    assert n_questions == 4 and (per == n_questions * len(SITES) * (n_layers + 1) * 2).all()
    assert (run / "figures" / "belief_patching.html").is_file()
    assert "plain, step 6, yes/no endorsing the claim: " in printed and "claims" in printed
    kept = sorted((run / "evals" / "patching").glob("[!.]*.csv"))
    assert len(kept) == 3
    stamps = [p.stat().st_mtime_ns for p in kept]
    assert main(["patch", str(run), "--min-shift", "0", "--condition", "plain"]) == 0
    assert [p.stat().st_mtime_ns for p in kept] == stamps  # read back, not recomputed
    assert set(pd.read_csv(run / "results" / "patching.csv").condition) == {"plain"}
    assert "activation patching" in build_figure(run, "belief_patching").layout.title.text
    report = write_report(run, compute_activations=False).read_text()
    assert "id='belief_patching'" in report and "belief_patching_forced_choice" not in report


def test_patch_the_probe_reading(run, capsys):
    assert main(["patch", str(run), "--kind", "probe", "--min-shift", "0", "--condition", "plain"]) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(run / "results" / "patching_probe.csv")
    assert set(table.kind) == {"probe"} and set(table.about) == {"claim", "true_fact"}
    assert table.layer.max() <= table.read_layer.max()
    assert "probe reading of the claim statements" in printed
    assert (run / "figures" / "belief_patching_probe.html").is_file()


@pytest.mark.parametrize("argv, expected", [
    (["--step", "3"], "step 3 is not a finetuning checkpoint"),
    (["--condition", "fiction"], "not in this run"),
    ([], "moved enough"),  # the tiny model's answers barely move: nothing to localise at 1 logit
])
def test_bad_patch_arguments(run, capsys, argv, expected):
    assert expected in cli_error(["patch", str(run), *argv], capsys)


def test_patch_on_a_directory_that_is_no_run(tmp_path, capsys):
    assert "not a run directory" in cli_error(["patch", str(tmp_path)], capsys)
