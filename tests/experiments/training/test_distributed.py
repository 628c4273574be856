"""Data-parallel training (experiments.training.distributed) on CPU with gloo: two processes launched by
torchrun give the loss curve and weights of one process with the same global batches, a killed
run resumes from the state rank 0 saved, and `neglect finetune` trains a run directory."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from experiments.training import distributed
from experiments.errors import UserError
from tests.experiments.training.dist_worker import run
from tests.experiments.training.support import flat_weights, ok, torchrun



def saved(out: Path) -> tuple[list[dict], torch.Tensor]:
    record = json.loads((out / "log.json").read_text())
    assert record["world_size"] == 2
    return record["log"], load_file(str(out / "weights.safetensors"))["flat"]


@pytest.fixture(scope="module")
def ddp_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    ok(torchrun("tests/experiments/training/dist_worker.py", str(out)))
    return out


def test_shard_splits_each_micro_batch_by_rank():
    batch = {"input_ids": torch.arange(10).view(5, 2), "loss_weights": torch.ones(5, 2), "note": "kept"}
    parts = [distributed.DataParallel(rank=r, world_size=2).shard(batch) for r in range(2)]
    assert torch.equal(torch.cat([p["input_ids"] for p in parts]), batch["input_ids"])
    assert [len(p["loss_weights"]) for p in parts] == [3, 2] and parts[1]["note"] == "kept"
    assert distributed.Single().shard(batch) is batch
    with pytest.raises(UserError, match="1 rows cannot be split over 2 processes"):
        distributed.DataParallel(rank=0, world_size=2).shard(torch.ones(1, 3))


def test_without_torchrun_training_is_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    dist = distributed.init("cpu")
    assert type(dist) is distributed.Single and dist.is_writer and dist.world_size == 1


def test_nvlink_multicast_is_off_after_init_whatever_the_environment_said(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    for name in distributed.MULTICAST_OFF:
        monkeypatch.setenv(name, "1" if name == "NCCL_NVLS_ENABLE" else "0")  # multicast asked for
    distributed.init("cpu")
    assert {name: os.environ[name] for name in distributed.MULTICAST_OFF} == {
        "NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


def test_neglect_run_under_torchrun_points_to_finetune(monkeypatch, tmp_path, capsys):
    from experiments.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["run", "--preset", "tiny", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("neglect: error:") and "finetune" in err and "\n" not in err
    assert not (tmp_path / "r").exists()


def test_two_processes_match_one_process_with_the_same_batches(ddp_out, tmp_path):
    model, single = run(tmp_path)
    log, weights = saved(ddp_out)
    assert [e["step"] for e in log] == [e["step"] for e in single] == list(range(1, 13))
    assert [(e["tokens"], e["lr"]) for e in log] == [(e["tokens"], e["lr"]) for e in single]
    assert torch.allclose(torch.tensor([e["loss"] for e in log]), torch.tensor([e["loss"] for e in single]),
                          rtol=0, atol=1e-5)
    assert torch.allclose(weights, flat_weights(model), rtol=0, atol=1e-5)
    for step in (3, 12):  # HF checkpoints written once, by rank 0, at the same steps
        a, b = (load_file(str(d / f"step_{step}" / "model.safetensors")) for d in (ddp_out, tmp_path))
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=0, atol=1e-5) for k in a)


def test_a_killed_ddp_run_resumes_from_its_state(ddp_out, tmp_path):
    # Rank 0 SIGKILLs itself during its third state save (step 4); torchrun then stops rank 1.
    killed = torchrun("tests/experiments/training/dist_worker.py", str(tmp_path), kill_at=f"{tmp_path / 'state'}/step-@3")
    assert killed.returncode != 0 and not (tmp_path / "weights.safetensors").exists()
    assert json.loads((tmp_path / "state" / "latest.json").read_text())["step"] == 3
    before = json.loads(next((tmp_path / "state").glob("step-*/state.json")).read_text())["log"]
    checkpoint = tmp_path / "step_3" / "model.safetensors"
    written = checkpoint.stat().st_mtime_ns
    ok(torchrun("tests/experiments/training/dist_worker.py", str(tmp_path)))
    log, weights = saved(tmp_path)
    reference_log, reference = saved(ddp_out)
    assert log[:3] == before  # steps 1-3 come from the saved state (their wall-clock times included)
    assert checkpoint.stat().st_mtime_ns == written  # and were not trained again
    assert [e["loss"] for e in log] == [e["loss"] for e in reference_log]
    assert torch.equal(weights, reference)


def test_neglect_finetune_under_torchrun_trains_the_run_directory(tmp_path):
    from experiments.config import load_config
    from experiments.pipeline import train_stages

    flags = ["--preset", "tiny", "--set", 'conditions=["negated"]', "--set", "pretrain.steps=10",
             "--set", 'device="cpu"']
    out = ok(torchrun("-m", "experiments", "finetune", *flags, "--out", str(tmp_path / "ddp"))).stdout
    assert "2 process(es)" in out
    cfg = load_config("tiny", None, flags[3::2])
    train_stages(cfg, tmp_path / "one")
    for name in ("pretrain_log.csv", "train_logs/negated_seed0.csv"):
        a, b = (pd.read_csv(tmp_path / d / "results" / name) for d in ("ddp", "one"))
        assert a.tokens.tolist() == b.tokens.tolist() and (a.loss - b.loss).abs().max() < 1e-5
    steps = sorted(p.name for p in (tmp_path / "ddp" / "checkpoints" / "negated" / "seed0").iterdir())
    assert steps == ["step_000002", "step_000006"] and not any((tmp_path / "ddp" / "train_state").iterdir())
