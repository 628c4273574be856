"""SIGKILL `neglect run --preset tiny` at points inside every stage; reruns resume, never
recompute what was finished, and end with the tables (and weights) of an uninterrupted run.

The kill points come from the test-only hook ``NEGLECT_TEST_KILL_AT="<substring>@<n>"``
(probes/_atomic.py): the process kills itself with SIGKILL just before the n-th atomic
replace whose target contains <substring>, i.e. with new content written to a temp file but
not yet in place: the worst moment for a non-atomic writer.

One uninterrupted reference run plus one run directory killed five times in a row, so the
whole file costs about two tiny runs.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from tests.paths import REPO

REPO = REPO

# In pipeline order: (kill spec, what the point is).
KILL_POINTS = [
    ("train_state/pretrain/step-@3", "pretraining, writing its 3rd training state"),
    ("train_state/negated_seed0/step-@2", "finetuning 'negated' (plain finished), writing its 2nd training state"),
    ("evals/negated@1", "evaluations: base and plain done, writing the first negated table"),
    ("results/metrics.csv@1", "collect, writing metrics.csv"),
    ("figures/@3", "report, writing its 3rd figure"),
]
# The report is one unit whose completion mark is report.html: a report killed half-way is
# rebuilt from the tables, and plotly gives each figure page a fresh div id. Its costly part,
# the activation cache in figures_cache/, is kept (and checked below like everything else).
REPORT_PAGES = "figures/"


def neglect_run(out: Path, kill: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    env.pop("NEGLECT_TEST_KILL_AT", None)
    if kill:
        env["NEGLECT_TEST_KILL_AT"] = kill
    return subprocess.run([sys.executable, "-m", "experiments", "run", "--preset", "tiny", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)


def finished_artefacts(root: Path) -> dict[str, int]:
    """relative path -> mtime_ns of every finished file (not training state, not temp files)."""
    out = {}
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not rel.startswith("train_state/") and ".tmp-" not in rel:
            out[rel] = p.stat().st_mtime_ns
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    proc = neglect_run(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def killed_chain(tmp_path_factory):
    """One run directory, killed at every point of KILL_POINTS in turn, then finished.
    Returns the directory and, per kill, the (finished before, finished after the next run)
    artefact snapshots."""
    out = tmp_path_factory.mktemp("killed") / "run"
    snapshots = []
    before, prev_where = None, None
    for spec, where in KILL_POINTS + [(None, "final run")]:
        proc = neglect_run(out, spec)
        if before is not None:
            snapshots.append((prev_where, before, finished_artefacts(out)))
        if spec is None:
            assert proc.returncode == 0, proc.stderr[-3000:]
        else:
            assert proc.returncode == -signal.SIGKILL, f"kill point {spec} ({where}) never reached: {proc.stderr[-2000:]}"
        before, prev_where = finished_artefacts(out), where
    return out, snapshots


def test_reruns_recompute_nothing_finished(killed_chain):
    _, snapshots = killed_chain
    for where, before, after in snapshots:
        assert before, where
        changed = sorted(rel for rel, mtime in before.items() if after.get(rel) != mtime
                         and not (where.startswith("report") and rel.startswith(REPORT_PAGES) and rel.endswith(".html")))
        assert not changed, f"after a kill in {where}, the rerun rewrote finished artefacts: {changed}"


def test_each_kill_left_work_undone(killed_chain):
    """The kills really interrupted something: each rerun added artefacts."""
    _, snapshots = killed_chain
    for where, before, after in snapshots:
        assert set(after) - set(before), f"nothing was left to do after the kill in {where}"


def _without_time(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=[c for c in ("time",) if c in frame])


def test_killed_run_ends_with_the_uninterrupted_tables(killed_chain, reference):
    out, _ = killed_chain
    pd.testing.assert_frame_equal(pd.read_csv(out / "results" / "metrics.csv"),
                                  pd.read_csv(reference / "results" / "metrics.csv"))
    tables = sorted(p.relative_to(reference) for p in reference.rglob("*.csv"))
    assert len(tables) >= 10
    for rel in tables:  # every eval table and training log (wall-clock times aside)
        pd.testing.assert_frame_equal(_without_time(pd.read_csv(out / rel)),
                                      _without_time(pd.read_csv(reference / rel)), obj=str(rel))


def test_killed_run_reaches_the_same_weights(killed_chain, reference):
    out, _ = killed_chain
    weights = sorted(p.relative_to(reference) for p in reference.rglob("model.safetensors"))
    assert len(weights) == 7  # base + 3 conditions x 2 checkpoints
    for rel in weights:
        assert (out / rel).read_bytes() == (reference / rel).read_bytes(), rel


def test_no_leftovers_after_the_final_run(killed_chain):
    out, _ = killed_chain
    assert not list(out.rglob(".tmp-*"))
    assert not [p for p in (out / "train_state").rglob("*") if p.is_file()]
    assert (out / "report.html").is_file()


def test_same_seed_same_tables(reference, tiny_run):
    """Two independent runs (a CLI subprocess and an in-process run_pipeline) agree exactly."""
    out, table = tiny_run
    pd.testing.assert_frame_equal(pd.read_csv(out / "results" / "metrics.csv"),
                                  pd.read_csv(reference / "results" / "metrics.csv"))
    pd.testing.assert_frame_equal(table, pd.read_csv(reference / "results" / "metrics.csv"))


def test_seeds_and_versions_are_recorded(reference):
    versions = json.loads((reference / "versions.json").read_text())
    libs = versions["libraries"]
    for name in ("python", "torch", "transformers", "numpy", "scikit-learn", "peft", "safetensors", "pandas"):
        assert libs.get(name), name
    import numpy, sklearn, torch, transformers

    assert libs["torch"] == torch.__version__ and libs["numpy"] == numpy.__version__
    assert libs["scikit-learn"] == sklearn.__version__ and libs["transformers"] == transformers.__version__
    config = json.loads((reference / "config.json").read_text())
    assert versions["seeds"] == {"world": config["world"]["seed"], "pretrain": config["world"]["seed"], "finetune": config["seeds"], "torch_global": 0}
