"""Safe loading: no remote code unless asked, tensors only through safetensors, no unpickling,
and no path of a run escaping its directory."""
from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest

from experiments.errors import UserError
from experiments.artifacts.rundir import RunDir
from tests.paths import REPO

REPO = REPO
SOURCE_DIRS = ("experiments", "interp", "probes", "benchmarks", "notebooks", "tests")
UNSAFE = {
    "torch.load without weights_only=True": re.compile(r"torch\.load\((?![^)]*weights_only\s*=\s*True)"),
    "pickle.load(s)": re.compile(r"\b(c?pickle|dill|joblib)\.loads?\("),
    "numpy allow_pickle=True": re.compile(r"allow_pickle\s*=\s*True"),
    "yaml.load (not safe_load)": re.compile(r"\byaml\.(load|unsafe_load|full_load)\("),
    "trust_remote_code=True": re.compile(r"trust_remote_code\s*=\s*True"),
}


def source_files():
    for d in SOURCE_DIRS:
        for path in sorted((REPO / d).rglob("*")):
            if path.suffix in (".py", ".ipynb") and path.resolve() != Path(__file__).resolve():
                yield path


def test_source_scan_finds_planted_violations():
    """The patterns themselves work (so the scan below could fail)."""
    assert UNSAFE["torch.load without weights_only=True"].search("x = torch.load(path, map_location='cpu')")
    assert not UNSAFE["torch.load without weights_only=True"].search("torch.load(p, weights_only=True)")
    assert UNSAFE["pickle.load(s)"].search("obj = pickle.load(f)")
    assert UNSAFE["yaml.load (not safe_load)"].search("yaml.load(text)")
    assert not UNSAFE["yaml.load (not safe_load)"].search("yaml.safe_load(text)")


def test_no_unsafe_loading_in_the_source():
    files = list(source_files())
    assert len(files) > 40
    found = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        for what, pattern in UNSAFE.items():
            for m in pattern.finditer(text):
                found.append(f"{path.relative_to(REPO)}:{text[:m.start()].count(chr(10)) + 1}: {what}")
    assert not found, "\n".join(found)


def test_trust_remote_code_is_off_by_default():
    import interp

    assert inspect.signature(interp.load_model).parameters["trust_remote_code"].default is False


@pytest.fixture
def remote_code_model(tmp_path):
    """A model directory whose config asks for custom code that would leave a marker if run."""
    d = tmp_path / "custom_model"
    d.mkdir()
    marker = tmp_path / "custom_code_ran"
    (d / "config.json").write_text(json.dumps({
        "model_type": "neglect_custom_xyz", "architectures": ["EvilModel"],
        "auto_map": {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}}))
    (d / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                               "from transformers import PretrainedConfig\n"
                               "class EvilConfig(PretrainedConfig):\n    model_type = 'neglect_custom_xyz'\n")
    return d, marker


def test_remote_code_is_refused_through_the_api(remote_code_model):
    import interp

    d, marker = remote_code_model
    with pytest.raises(interp.InterpInputError, match="custom code"):
        interp.load_model(d)
    assert not marker.exists()


def test_remote_code_is_refused_through_the_cli(remote_code_model, tmp_path, capsys):
    from experiments.cli import main

    d, marker = remote_code_model
    assert main(["run", "--preset", "tiny", "--model", str(d), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trust_remote_code" in err[0]
    assert not marker.exists()


def test_run_directory_holds_no_pickles(tiny_run):
    out, _ = tiny_run
    files = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".npy")]
    weights = [p for p in files if p.suffix == ".safetensors"]
    assert any(p.name == "model.safetensors" for p in weights)
    for p in weights:  # every tensor file is a real safetensors file (8-byte length + JSON header)
        raw = p.read_bytes()
        n = int.from_bytes(raw[:8], "little")
        json.loads(raw[8:8 + n])


@pytest.mark.parametrize("parts", [("..", "elsewhere"), ("checkpoints", "..", "..", "x"), ("/etc/passwd",)])
def test_run_paths_cannot_escape(tmp_path, parts):
    run = RunDir(tmp_path / "run")
    with pytest.raises(UserError, match="escapes the run directory"):
        run.path(*parts)


def test_symlink_out_of_the_run_directory_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "run" / "evals").symlink_to(tmp_path / "outside")
    run = RunDir(tmp_path / "run")
    with pytest.raises(UserError, match="escapes the run directory"):
        run.eval_file("plain", 0, 2)
    assert run.path("results", "metrics.csv").parent == (tmp_path / "run" / "results").resolve()
