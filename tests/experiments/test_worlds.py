"""Several synthetic worlds in one run (config key ``worlds``): each world its own seed and base
model, rows with a ``world`` column, intervals over worlds > claims > seeds, per-world
preconditions, resume after a kill, and worlds = 1 exactly as before."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from experiments.artifacts.rundir import RunDir
from experiments.cli import main
from experiments.config import load_config
from experiments.errors import UserError
from experiments.evaluation.stats import summarise, units_line
from experiments.evaluation.items import drop_interval
from experiments.evaluation.tables import ID_COLUMNS, item_reader
from experiments.evaluation.worlds import world_config
from experiments.pipeline import check_base_model, pretrain_stage, run_pipeline
from tests.paths import REPO


def two_worlds_config():
    return load_config("tiny", overrides=["worlds=2"])


@pytest.fixture(scope="module")
def two_worlds(tmp_path_factory):
    out = tmp_path_factory.mktemp("two_worlds") / "run"
    return out, run_pipeline(two_worlds_config(), out)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_rows_of_both_worlds_with_their_own_world_and_base_model(two_worlds):
    out, table = two_worlds
    assert list(table.columns) == ["world", *ID_COLUMNS]
    assert sorted(table.world.unique()) == [0, 1]
    for world in (0, 1):  # every world has every condition, step and claim
        rows = table[table.world == world]
        assert set(rows.condition) == {"plain", "negated", "local"}
        assert rows.step.nunique() == 3
    run = RunDir(out)
    worlds = [json.loads((run.world_dir(k) / "world.json").read_text()) for k in (0, 1)]
    seeds = [json.loads((run.world_dir(k) / "config.json").read_text())["world"]["seed"] for k in (0, 1)]
    assert seeds == [0, 1]
    assert worlds[0]["people"] != worlds[1]["people"] and worlds[0]["facts"] != worlds[1]["facts"]
    weights = [_digest(run.world_dir(k) / "base" / "model.safetensors") for k in (0, 1)]
    assert weights[0] != weights[1]
    assert json.loads(run.worlds_index.read_text()) == [{"world": 0, "seed": 0, "dir": "worlds/w0"},
                                                       {"world": 1, "seed": 1, "dir": "worlds/w1"}]
    assert not (out / "base").exists() and not (out / "checkpoints").exists()


def test_world_zero_is_the_one_world_run(two_worlds, tiny_run):
    """worlds = 1 is today's run, and world 0 of a several-world run is that same run."""
    _, table = two_worlds
    _, one = tiny_run
    assert list(one.columns) == ID_COLUMNS  # no world column, no worlds/ directory with worlds = 1
    assert not (tiny_run[0] / "worlds").exists() and not (tiny_run[0] / "worlds.json").exists()
    world0 = table[table.world == 0].drop(columns="world").reset_index(drop=True)
    pd.testing.assert_frame_equal(world0, one)
    assert world_config(two_worlds_config(), 0) == load_config("tiny")


def test_intervals_are_over_worlds_claims_seeds(two_worlds):
    out, table = two_worlds
    rows = table[(table.metric == "belief_forced_choice") & (table.claim != "all")]
    stats = summarise(rows, ["condition", "step"])
    assert (stats.n_worlds == 2).all() and (stats.n_claims == 2).all() and (stats.n_seeds == 1).all()
    assert set(stats.units) == {"world>claim>seed"}
    assert (stats.n == 2).all()  # the interval is over the two worlds
    line = units_line(table)
    assert line.startswith("n: 2 worlds, 2 claims per world, 1 seed per claim")
    assert line in (out / "report.html").read_text().replace("&gt;", ">")
    controls = json.loads((out / "results" / "controls.json").read_text())
    assert controls["negative_control"]["measures"][0]["n_worlds"] == 2


def test_the_validity_drops_of_several_worlds_carry_an_interval_over_every_worlds_items(two_worlds):
    out, table = two_worlds
    validity = json.loads((out / "results" / "controls.json").read_text())["probe_validity"]
    one_world = pd.read_csv(RunDir(out).world_dir(0) / "results" / "metrics.csv")
    for condition, unit in validity["conditions"].items():
        for m in unit["measures"]:
            lo, hi = m["ci"]
            assert lo <= hi, m
            # the units of both worlds: more than either world has alone
            alone = drop_interval(*_world_items(out, 0, condition, table, unit["step"]), m["measure"], m.get("layer"))
            assert m["ci_units"] > alone["n_units"], m
    assert set(one_world.condition) == set(validity["conditions"])
    assert "CI" in (out / "report.html").read_text()


def _world_items(out, k, condition, table, step):
    items = item_reader(RunDir(RunDir(out).world_dir(k)))
    return items(None, 0, 0), [items(condition, int(s), step) for s in sorted(table.seed.unique())]


def test_each_world_has_its_own_base_model_checks(two_worlds):
    out, _ = two_worlds
    run = RunDir(out)
    figures = check_base_model(out)
    assert set(figures) == {"w0", "w1"}
    for k in (0, 1):
        path = run.world_dir(k) / "results" / "check_base.json"
        assert json.loads(path.read_text()) == figures[f"w{k}"]
    assert not (out / "results" / "check_base.json").exists()
    report = (out / "report.html").read_text()
    assert "Base model preconditions (world 0)" in report and "Base model preconditions (world 1)" in report
    assert not any((run.world_dir(k) / "report.html").exists() for k in (0, 1))  # one report, at the top


def test_rerun_resumes_and_recomputes_nothing(two_worlds):
    out, table = two_worlds
    files = [p for p in out.rglob("*") if p.is_file() and "train_state" not in p.parts]
    before = {p: p.stat().st_mtime_ns for p in files}
    again = run_pipeline(two_worlds_config(), out)
    pd.testing.assert_frame_equal(again, table)
    assert [p for p in files if p.stat().st_mtime_ns != before[p]] == []


# -- resume after a kill ----------------------------------------------------------------------

KILL_POINTS = [  # in pipeline order; world 0 is finished before the first
    "worlds/w1/train_state/negated_seed0/step-@1",   # world 1: finetuning 'negated'
    "worlds/w1/evals/local@1",                       # world 1: evaluations
    "run/results/metrics.csv@1",                     # the run's own stacked table
]


def neglect_run(out: Path, kill: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    env.pop("NEGLECT_TEST_KILL_AT", None)
    if kill:
        env["NEGLECT_TEST_KILL_AT"] = kill
    return subprocess.run([sys.executable, "-m", "experiments", "run", "--preset", "tiny", "--set", "worlds=2",
                           "--out", str(out)], env=env, capture_output=True, text=True, timeout=600)


def test_a_killed_run_of_two_worlds_resumes_to_the_same_tables(two_worlds, tmp_path):
    out = tmp_path / "run"
    world0 = None
    for spec in KILL_POINTS + [None]:
        proc = neglect_run(out, spec)
        if spec is None:
            assert proc.returncode == 0, proc.stderr[-3000:]
        else:
            assert proc.returncode == -signal.SIGKILL, f"kill point {spec} never reached: {proc.stderr[-2000:]}"
        finished = {p: p.stat().st_mtime_ns for p in (out / "worlds" / "w0").rglob("*")
                    if p.is_file() and "train_state" not in p.parts}
        if world0 is not None:  # world 0 finished before the first kill and is never redone
            assert finished == world0
        world0 = finished
    reference = two_worlds[0]
    pd.testing.assert_frame_equal(pd.read_csv(out / "results" / "metrics.csv"),
                                  pd.read_csv(reference / "results" / "metrics.csv"))
    for k in (0, 1):
        assert _digest(out / "worlds" / f"w{k}" / "base" / "model.safetensors") == \
            _digest(reference / "worlds" / f"w{k}" / "base" / "model.safetensors")


# -- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("override, expected", [
    ("worlds=0", "config key 'worlds' must be >= 1; got 0"),
    ("worlds=-2", "config key 'worlds' must be >= 1; got -2"),
])
def test_worlds_below_one_is_refused(override, expected):
    with pytest.raises(UserError, match=expected):
        load_config("tiny", overrides=[override])


def test_worlds_with_a_named_model_or_imported_materials_is_one_line(tmp_path, capsys):
    code = main(["run", "--preset", "tiny", "--set", "worlds=3", "--model", str(tmp_path / "m"),
                 "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("neglect: error: config key 'worlds' is 3 but the run uses --model (base_model)")
    with pytest.raises(UserError, match="materials.claims"):
        load_config("tiny", overrides=["worlds=2", 'materials.claims="c"', 'materials.docs="d"'])
    assert not (tmp_path / "r").exists()


def test_one_world_commands_refuse_several_worlds(tmp_path):
    with pytest.raises(UserError, match="`neglect pretrain` works on one world"):
        pretrain_stage(two_worlds_config(), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_patching_a_run_of_several_worlds_names_one_world(two_worlds):
    from experiments.causal import patch_run

    out, _ = two_worlds
    with pytest.raises(UserError, match="holds 2 worlds; patch one of them"):
        patch_run(out)
    rows = patch_run(out / "worlds" / "w1", conditions=["plain"], layers=[1], sites=("last",), min_shift=0.0)
    assert set(rows.condition) == {"plain"} and len(rows) > 0
