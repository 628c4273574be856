"""A battery of bad inputs through the CLI and the Python API.

Each gives one line naming the problem and the expected form, exit code 2 (the CLI), no
traceback unless --debug, and loses nothing computed earlier.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments.cli import main
from experiments.errors import UserError
from tests.paths import REPO

REPO = REPO


def cli_error(argv: list[str], capsys, code: int = 2) -> str:
    """Run the CLI in-process; return its single error line (after checking there is one)."""
    result = main(argv)
    err = capsys.readouterr().err
    assert result == code, err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if not line.startswith("neglect: warning:")]
    assert len(lines) == 1, err
    assert lines[0].startswith("neglect: error: ")
    return lines[0]


def run_args(out, *extra) -> list[str]:
    return ["run", "--preset", "tiny", *extra, "--out", str(out)]


# ---------------------------------------------------------------- config and command line

CONFIG_CASES = {
    "unknown preset": (["--preset", "huge"], ["unknown preset 'huge'", "expected one of", "tiny"]),
    "--set without '='": (["--set", "finetune.steps"], ["'finetune.steps'", "section.key=value"]),
    "--set with empty key": (["--set", "=3"], ["section.key=value"]),
    "unknown key": (["--set", "finetune.stepz=3"], ["unknown config key 'finetune.stepz'", "'steps'"]),
    "unknown section": (["--set", "training.steps=3"], ["unknown config key 'training'", "'finetune'"]),
    "string for int": (["--set", "finetune.steps=ten"], ["'finetune.steps' must be int", "'ten'"]),
    "bool for int": (["--set", "finetune.steps=true"], ["'finetune.steps' must be int", "True"]),
    "negative steps": (["--set", "finetune.steps=-5"], ["'finetune.steps' must be >= 1", "-5"]),
    "zero learning rate": (["--set", "pretrain.lr=0"], ["'pretrain.lr' must be > 0"]),
    "NaN learning rate": (["--set", "pretrain.lr=NaN"], ["'pretrain.lr' must be a finite number", "nan"]),
    "infinite learning rate": (["--set", "finetune.lr=Infinity"], ["'finetune.lr' must be a finite number", "inf"]),
    "-inf as a word": (["--set", "corpus.bio=-inf"], ["'corpus.bio' must be a finite number", "'-inf'"]),
    "NaN in a list of floats": (["--set", "stability.weights=[1.0, NaN]"],
                                ["'stability.weights' must be a finite number", "nan"]),
    "heads not dividing d_model": (["--set", "model.n_heads=3"], ["'model.n_heads' must divide"]),
    "scalar for a section": (["--set", "finetune=3"], ["config section 'finetune' must be a table/object", "int"]),
    "list holding a string": (["--set", "seeds=[0,\"a\"]"], ["'seeds' must be int", "'a'"]),
    "empty seeds": (["--set", "seeds=[]"], ["'seeds' is empty", "non-empty list"]),
    "unknown condition": (["--set", 'conditions=["plain","nope"]'], ["unknown condition 'nope'", "expected one of"]),
    "condition that is a path": (["--set", 'conditions=["../../etc"]'], ["unknown condition '../../etc'"]),
    "unknown position": (["--set", 'eval.position="middle"'], ["'middle'"]),
    "unknown device": (["--set", 'device="tpu"'], ["unknown device 'tpu'", "'cpu'"]),
    "unknown model id": (["--model", "no-such-org/no-such-model-xyz"], ["'no-such-org/no-such-model-xyz'"]),
    "missing local model path": (["--model", "./no/such/dir"], ["'./no/such/dir' does not exist", "save_pretrained"]),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_run_arguments(case, tmp_path, capsys):
    extra, expected = CONFIG_CASES[case]
    out = tmp_path / "run"
    line = cli_error(run_args(out, *extra), capsys)
    for text in expected:
        assert text in line, (case, line)
    assert not out.exists(), "a bad argument must fail before any work"


def test_cuda_requested_without_cuda(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    line = cli_error(run_args(tmp_path / "r", "--set", 'device="cuda"'), capsys)
    assert "'cuda' requested but CUDA is not available" in line


@pytest.mark.parametrize("name,content,expected", [
    ("missing.json", None, "does not exist"),
    ("bad.json", b'{"finetune": {"steps": 3,}}', "is not valid JSON"),
    ("latin1.json", '{"finetune": {"steps": 3}} # caf\xe9'.encode("latin-1"), "is not UTF-8 text (byte 0xe9"),
    ("bad.toml", b"[finetune\nsteps = 3\n", "is not valid TOML"),
    ("list.json", b"[1, 2]", "holds a list; expected an object"),
    ("typo.toml", b"[finetune]\nstpes = 3\n", "unknown config key 'finetune.stpes'"),
])
def test_bad_config_files(name, content, expected, tmp_path, capsys):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    line = cli_error(run_args(tmp_path / "run", "--config", str(path)), capsys)
    assert expected in line
    assert name in line or name == "typo.toml"


def test_output_path_is_a_file(tmp_path, capsys):
    out = tmp_path / "results.txt"
    out.write_text("precious")
    line = cli_error(run_args(out), capsys)
    assert "is a file; expected a directory" in line
    assert out.read_text() == "precious"
    line = cli_error(run_args(out / "sub"), capsys)
    assert "lies under the file" in line


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_output_directory(tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        line = cli_error(run_args(out), capsys)
    finally:
        out.chmod(0o755)
    assert "is not writable" in line


def test_read_only_output_directory_simulated(tmp_path, capsys, monkeypatch):
    """The same check where the tests run as root: the write probe fails with EACCES."""
    out = tmp_path / "ro"
    real = Path.write_text

    def refuse(self, *a, **k):
        if str(self).startswith(str(out)):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "write_text", refuse)
    line = cli_error(run_args(out), capsys)
    assert f"output directory {str(out)!r} is not writable (Permission denied)" in line


def test_other_commands(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "not a run directory" in cli_error(["check-base", str(empty)], capsys)
    assert "missing or unreadable" in cli_error(["report", str(empty)], capsys)
    assert "unknown condition 'nope'" in cli_error(["docs", "--preset", "tiny", "--condition", "nope"], capsys)
    bad = tmp_path / "corrupt"
    bad.mkdir()
    (bad / "config.json").write_text('{"world": {"seed": 0')
    assert "config.json" in cli_error(["check-base", str(bad)], capsys)
    assert "is corrupt or truncated" in cli_error(["check-base", str(bad)], capsys)
    (bad / "config.json").write_text('{"finetune": {"steps": "many"}}')
    assert "'finetune.steps' must be int" in cli_error(["check-base", str(bad)], capsys)


@pytest.mark.parametrize("argv", [["docs", "-n", "abc"], ["frobnicate"], ["run", "--nope"]])
def test_bad_flags_are_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neglect: error: ") and "--help" in err[0]


def test_help_and_bad_flags_do_not_wait_for_torch():
    """`neglect --help` and a mistyped flag answer before torch (or interp and probes, which
    import it) is imported."""
    code = ("import sys\nfrom experiments.cli import main\n"
            "for argv in (['--help'], ['run', '--nope']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('torch', 'interp', 'probes', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr


def test_model_without_a_preset_says_which_recipe_it_gets(tmp_path, capsys):
    """--model with the default preset finetunes with the toy model's recipe: one warning line
    names it and the paper's preset; an explicit --preset (or --config) is taken as chosen."""
    from experiments.cli import _run_config, build_parser

    def warnings(*argv):
        _run_config(build_parser().parse_args(["run", *argv, "--out", str(tmp_path)]))
        return [line for line in capsys.readouterr().err.splitlines() if line.startswith("neglect: warning:")]

    said = warnings("--model", "./some/model")
    assert len(said) == 1 and "--preset paper" in said[0] and "lr 0.0003" in said[0]
    assert warnings("--preset", "demo", "--model", "./some/model") == []
    assert warnings() == []


def test_debug_shows_the_traceback():
    with pytest.raises(UserError, match="unknown preset"):
        main(["--debug", "run", "--preset", "huge"])
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "experiments"]
    quiet = subprocess.run(cmd + ["run", "--preset", "demo", "--model", "./no/such/dir"], capture_output=True,
                           text=True, env=env)
    loud = subprocess.run(cmd + ["--debug", "run", "--preset", "demo", "--model", "./no/such/dir"],
                          capture_output=True, text=True, env=env)
    assert quiet.returncode == 2 and quiet.stderr.count("\n") == 1 and "Traceback" not in quiet.stderr
    assert "does not exist" in quiet.stderr
    assert loud.returncode != 0 and "Traceback" in loud.stderr and "InterpInputError" in loud.stderr


# ---------------------------------------------------------------- disk full / I/O errors mid-run

def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def stale_run(tiny_run, tmp_path):
    """A private copy of the tiny run."""
    out = tmp_path / "run"
    shutil.copytree(tiny_run[0], out)
    return out


@pytest.mark.parametrize("err,code", [(errno.ENOSPC, 2), (errno.EIO, 1)])
def test_write_failure_mid_run_is_one_line_and_loses_nothing(stale_run, capsys, monkeypatch, err, code):
    """One evaluation table is missing; writing it fails (disk full, or an I/O error)."""
    missing = stale_run / "evals" / "local" / "seed0" / "step_000006.csv"
    good = missing.read_bytes()
    missing.unlink()
    before = _digests(stale_run)
    real = os.replace

    def failing(src, dst, *a, **k):
        if str(dst) == str(missing):
            raise OSError(err, os.strerror(err), str(dst))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", failing)
    line = cli_error(run_args(stale_run), capsys, code=code)
    assert os.strerror(err) in line and "step_000006.csv" in line and "rerun" in line
    assert _digests(stale_run) == before, "a failed write changed or removed earlier results"
    assert not list(stale_run.rglob(".tmp-*")), "temp files were left behind"
    if err == errno.ENOSPC:
        monkeypatch.setattr(os, "replace", real)
        assert main(run_args(stale_run)) == 0  # the same command, once the disk has room, finishes
        assert missing.read_bytes() == good


# ---------------------------------------------------------------- damaged artefacts in a run directory

def test_corrupt_tables_are_recomputed_not_used(stale_run, capsys):
    from experiments.config import load_config
    from experiments.pipeline import run_pipeline

    good = (stale_run / "evals" / "plain" / "seed0" / "step_000006.csv").read_text()
    lines = good.splitlines(keepends=True)
    # cut at a row boundary: still a valid CSV, only the checksum can tell
    (stale_run / "evals" / "plain" / "seed0" / "step_000006.csv").write_text("".join(lines[: len(lines) // 2]))
    (stale_run / "results" / "train_logs" / "local_seed0.csv").write_bytes(b"\xff\xfe garbage")
    table = run_pipeline(load_config("tiny"), stale_run)
    err = capsys.readouterr().err
    assert "step_000006.csv': does not match its checksum" in err
    assert (stale_run / "evals" / "plain" / "seed0" / "step_000006.csv").read_text() == good
    assert table.equals(__import__("pandas").read_csv(stale_run / "results" / "metrics.csv"))


def test_truncated_metrics_is_reported_by_report(stale_run, capsys):
    path = stale_run / "results" / "metrics.csv"
    path.write_bytes(path.read_bytes()[:500])
    line = cli_error(["report", str(stale_run)], capsys)
    assert "metrics.csv" in line and "missing or unreadable" in line


def test_damaged_checkpoint_and_base_model(stale_run, capsys):
    from experiments.config import load_config
    from experiments.pipeline import run_pipeline

    ckpt = stale_run / "checkpoints" / "negated" / "seed0" / "step_000006"
    weights = ckpt / "model.safetensors"
    good = weights.read_bytes()
    flipped = bytearray(good)
    flipped[-10] ^= 0xFF  # a flipped bit: the file still parses, only the checksum can tell
    weights.write_bytes(bytes(flipped))
    base_weights = stale_run / "base" / "model.safetensors"
    base_good = base_weights.read_bytes()
    base_weights.write_bytes(base_good[: len(base_good) // 2])
    line = cli_error(["check-base", str(stale_run)], capsys)
    assert "base model" in line and "truncated" in line and "rerun `neglect run" in line
    run_pipeline(load_config("tiny"), stale_run)
    err = capsys.readouterr().err
    assert "base model" in err and "pretraining it again" in err
    assert "step_000006' is damaged (model.safetensors does not match its checksum)" in err
    assert weights.read_bytes() == good and base_weights.read_bytes() == base_good  # recomputed identically


def test_damaged_training_state_restarts_training(tmp_path, capsys):
    import torch

    from experiments.training import state as training_state

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    where = training_state.save_state(tmp_path, 4, params=dict(model.named_parameters()), optimizer=opt, extra={})
    assert training_state.load_latest(tmp_path)[1]["step"] == 4
    data = bytearray((where / "tensors.safetensors").read_bytes())
    data[-3] ^= 0x01
    (where / "tensors.safetensors").write_bytes(bytes(data))
    assert training_state.load_latest(tmp_path) is None
    assert "training state" in capsys.readouterr().err
    (where / "state.json").write_text('{"step": 4, "optim')
    assert training_state.load_latest(tmp_path) is None


def test_damaged_activation_cache_is_recomputed(tiny_run, tmp_path):
    import interp

    lm = interp.load_model(tiny_run[0] / "base")
    texts = ["the stemos prize was won by fetren ."]
    cache = interp.ActivationCache(tmp_path / "cache")
    first = interp.residuals(lm, texts, cache=cache)
    (path,) = list((tmp_path / "cache").glob("*.safetensors"))
    path.write_bytes(path.read_bytes()[:-7])
    again = interp.residuals(lm, texts, cache=cache)
    assert cache.rejected == 1 and cache.misses == 2
    assert torch_equal(first, again)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


# ---------------------------------------------------------------- Python API

def test_api_model_loading_errors(tiny_run, tmp_path):
    import interp

    with pytest.raises(interp.InterpInputError, match="'no-such-org/no-such-model-xyz'"):
        interp.load_model("no-such-org/no-such-model-xyz")
    with pytest.raises(interp.InterpInputError, match="does not exist; expected a directory"):
        interp.load_model(tmp_path / "missing")
    bad = tmp_path / "bad"
    shutil.copytree(tiny_run[0] / "base", bad)
    (bad / "model.safetensors").write_bytes((bad / "model.safetensors").read_bytes()[:1000])
    with pytest.raises(interp.InterpInputError, match="truncated or corrupt"):
        interp.load_model(bad)
    with pytest.raises(interp.InterpInputError, match="unknown device 'tpu'"):
        interp.load_model(tiny_run[0] / "base", device="tpu")


def test_api_residual_errors(tiny_run):
    import interp

    lm = interp.load_model(tiny_run[0] / "base")
    with pytest.raises(interp.InterpInputError, match=r"layer 99 is out of range; expected an int in \[0, 2\]"):
        interp.residuals(lm, ["the stemos prize"], layers=[99])
    with pytest.raises(interp.InterpInputError, match="longer than the model's context of 96"):
        interp.residuals(lm, [" ".join(["the"] * 500)])
    with pytest.raises(interp.InterpInputError, match="non-empty list of strings"):
        interp.residuals(lm, [])
    with pytest.raises(interp.InterpInputError, match="text 1 is a int, expected a string"):
        interp.residuals(lm, ["the", 3])


def test_api_probe_errors():
    from probes import LogisticProbe, MassMeanProbe, ProbeInputError

    X = np.random.default_rng(0).normal(size=(10, 4))
    with pytest.raises(ProbeInputError, match="exactly two classes"):
        LogisticProbe().fit(X, np.ones(10))
    nan = X.copy()
    nan[3, 2] = np.nan
    with pytest.raises(ProbeInputError, match="NaN or infinite values; expected finite activations"):
        LogisticProbe().fit(nan, np.arange(10) % 2)
    with pytest.raises(ProbeInputError, match=r"must be 2-D \[n_samples, n_features\]"):
        MassMeanProbe().fit(X[:, :, None], np.arange(10) % 2)
    fitted = LogisticProbe().fit(X, np.arange(10) % 2)
    with pytest.raises(ProbeInputError, match="has 3 features but the probe was fit on 4"):
        fitted.predict(X[:, :3])


@pytest.mark.parametrize("content,expected", [
    (b"", "empty file"),
    (b'{"text": "caf\xe9"}\n', "invalid UTF-8 byte 0xe9"),
    (b'{"text": "ok"}\n{"txt": "no text"}\n', ":2: missing field 'text'"),
    (b'{"text": "ok"}\n{"text": "unterminated\n', ":2: malformed JSON"),
    (b'["a list"]\n', "expected a JSON object"),
    (b'{"text": 7}\n', "field 'text' is"),
])
def test_api_bad_jsonl(content, expected, tmp_path):
    from experiments.materials.paper_layout import load_user_jsonl

    path = tmp_path / "docs.jsonl"
    path.write_bytes(content)
    with pytest.raises(UserError) as exc:
        load_user_jsonl(path)
    message = str(exc.value)
    assert expected in message and "docs.jsonl" in message and "\n" not in message


def test_api_config_dict_errors():
    from experiments.config import build_config

    with pytest.raises(UserError, match="unknown config key 'eval.positon'"):
        build_config({"eval": {"positon": "last"}})
    with pytest.raises(UserError, match="'finetune.n_checkpoints' must be >= 2"):
        build_config({"finetune": {"n_checkpoints": 1}})
    with pytest.raises(UserError, match="'seeds' has duplicates"):
        build_config({"seeds": [1, 1]})
