"""The notebooks run top to bottom on tiny settings (nbclient), and are stored without outputs."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.paths import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
REPO = REPO


def test_the_four_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == ["01_quickstart.ipynb", "02_probe_dynamics.ipynb",
                                           "03_stability_hypotheses.ipynb", "04_where_belief_lives.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: a cell has stored output"


def _execute(path: Path, env: dict[str, str], tmp_path: Path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(path, as_version=4)
    # the kernel is a child process: it inherits the environment (imports the repo, finds the run)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        # "python3" is jupyter's native kernel: the interpreter running these tests
        nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    (tmp_path / path.name).write_text(nbformat.writes(nb))  # executed copy, for looking at failures
    return nb


def _outputs(nb) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]


def _env(**extra) -> dict[str, str]:
    path = os.pathsep.join(p for p in [str(REPO), os.environ.get("PYTHONPATH", "")] if p)
    return {"PYTHONPATH": path, "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1", **extra}


def test_quickstart_runs_a_tiny_experiment(tmp_path):
    nb = _execute(NOTEBOOKS[0], _env(NEGLECT_NOTEBOOK_OUT=str(tmp_path)), tmp_path)
    assert (tmp_path / "run" / "results" / "metrics.csv").is_file()
    assert (tmp_path / "run" / "report.html").is_file()
    plotly_outputs = [o for o in _outputs(nb) if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(plotly_outputs) >= 5


@pytest.mark.parametrize("index", [1, 2], ids=["02_probe_dynamics", "03_stability_hypotheses"])
def test_analysis_notebooks_run_on_a_tiny_run(index, tiny_run, tmp_path):
    out, _ = tiny_run
    nb = _execute(NOTEBOOKS[index], _env(NEGLECT_RUN_DIR=str(out)), tmp_path)
    assert not any(o.get("output_type") == "error" for o in _outputs(nb))
    assert any("application/vnd.plotly.v1+json" in o.get("data", {}) for o in _outputs(nb))


@pytest.mark.parametrize("base", ["testbed", "testbed_judge"])
def test_where_belief_lives_steers_a_shipped_model(tmp_path, base):
    """On each shipped base model, without a checkpoint (its last section says how to add one)."""
    nb = _execute(NOTEBOOKS[3], _env(NEGLECT_NOTEBOOK_PEOPLE="8", OMP_NUM_THREADS="1", NEGLECT_BASE=base), tmp_path)
    assert not any(o.get("output_type") == "error" for o in _outputs(nb))
    assert sum("application/vnd.plotly.v1+json" in o.get("data", {}) for o in _outputs(nb)) >= 2
    assert any("set NEGLECT_CHECKPOINT" in o.get("text", "") for o in _outputs(nb))
