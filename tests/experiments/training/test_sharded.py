"""Sharded finetuning (FSDP2, experiments.training.sharded) on CPU with gloo: two processes launched
by torchrun give the loss curve, weights and checkpoints of one process with the same global
batches (full and LoRA), a killed run resumes from the state rank 0 saved (in two processes or in
one), the exported checkpoints load with interp.load_model, and `neglect finetune` trains with
finetune.parallel="fsdp".

Tolerances. Everything is fp32; the two runs differ only in the order of float sums (each rank's
half of the batch, FSDP's reduce-scatter, the gradient norm summed over shards): about 1e-7 in
the loss and the gradients. Adam divides each moment by its root mean square, which turns those
into at most a few 1e-6 in a weight after 12 steps at lr 1e-2 (measured: 3.3e-6 full, 2e-7
LoRA; DDP's test passes at 1e-5 too). A real error (a rank training on the wrong rows, an
unsynchronised or mis-scaled gradient, a shard put back in the wrong place) moves weights by
about the learning rate per step, 1e-3 or more: WEIGHT_ATOL = 2e-5 tells them apart.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import interp
from experiments.errors import UserError
from experiments.training import distributed, sharded
from tests.experiments.training.dist_worker import STEPS, run
from tests.experiments.training.support import flat_weights, ok, torchrun

WORKER = "tests/experiments/training/dist_worker.py"
LOSS_ATOL, WEIGHT_ATOL = 1e-5, 2e-5
IDS = torch.tensor([[2, 5, 6, 7, 8, 9, 10, 4]])


def saved(out: Path) -> tuple[list[dict], torch.Tensor]:
    record = json.loads((out / "log.json").read_text())
    assert record["world_size"] == 2
    return record["log"], load_file(str(out / "weights.safetensors"))["flat"]


@pytest.fixture(scope="module")
def fsdp_full(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fsdp_full")
    ok(torchrun(WORKER, str(out), "fsdp", "full"))
    return out


@pytest.fixture(scope="module")
def fsdp_lora(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fsdp_lora")
    ok(torchrun(WORKER, str(out), "fsdp", "lora"))
    return out


def logits(path) -> torch.Tensor:
    with torch.no_grad():
        return interp.load_model(str(path), device="cpu").model(IDS).logits


def assert_same_as_one_process(out: Path, tmp_path: Path, lora: bool) -> None:
    model, single = run(tmp_path, lora=lora)
    log, weights = saved(out)
    assert [e["step"] for e in log] == [e["step"] for e in single] == list(range(1, STEPS + 1))
    assert [(e["tokens"], e["lr"]) for e in log] == [(e["tokens"], e["lr"]) for e in single]
    assert torch.allclose(torch.tensor([e["loss"] for e in log]), torch.tensor([e["loss"] for e in single]),
                          rtol=0, atol=LOSS_ATOL)
    assert log[-1]["loss"] < log[0]["loss"] - 0.05  # it trained
    assert torch.allclose(weights, flat_weights(model), rtol=0, atol=WEIGHT_ATOL)
    for step in (0, 3, 12):  # HF checkpoints (LoRA merged), written once, by rank 0, at the same steps
        a, b = (load_file(str(d / f"step_{step}" / "model.safetensors")) for d in (out, tmp_path))
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=0, atol=WEIGHT_ATOL) for k in a)
    with torch.no_grad():
        trained = model(IDS).logits
    assert torch.allclose(logits(out / "step_12"), trained, rtol=0, atol=1e-4)


def test_one_process_is_refused_in_one_line():
    with pytest.raises(UserError, match="finetune.parallel.*at least 2 processes") as err:
        sharded.sharded(distributed.Single())
    assert "\n" not in str(err.value)


def test_neglect_finetune_with_fsdp_in_one_process_fails_before_pretraining(monkeypatch, tmp_path, capsys):
    from experiments.cli import main

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["finetune", "--preset", "tiny", "--set", 'finetune.parallel="fsdp"', "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("neglect: error:") and "at least 2 processes" in err and "\n" not in err
    assert not (tmp_path / "r" / "base_model").exists()


def test_every_block_is_a_unit():
    from tests.experiments.training.support import llama

    assert sharded.block_classes(llama(30)) == {"LlamaDecoderLayer"}


def test_full_finetuning_in_two_processes_matches_one(fsdp_full, tmp_path):
    assert_same_as_one_process(fsdp_full, tmp_path, lora=False)


def test_lora_in_two_processes_matches_one_and_exports_adapters(fsdp_lora, tmp_path):
    assert_same_as_one_process(fsdp_lora, tmp_path, lora=True)
    state = load_file(str(next((fsdp_lora / "state").glob("step-*")) / "tensors.safetensors"))
    params = [k for k in state if k.startswith("param.")]  # the state holds the adapters only
    assert len(params) == 2 * 7 * 2 and all(".lora_" in k for k in params)  # A, B x 7 linears x 2 layers
    adapter = fsdp_lora / "adapter_12"
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(fsdp_lora / "base")
    assert torch.allclose(logits(adapter), logits(fsdp_lora / "step_12"), rtol=0, atol=1e-5)


def test_a_killed_fsdp_run_resumes_from_its_state(fsdp_full, tmp_path):
    # Rank 0 SIGKILLs itself during its third state save (step 4); torchrun then stops rank 1.
    killed = torchrun(WORKER, str(tmp_path), "fsdp", "full", kill_at=f"{tmp_path / 'state'}/step-@3")
    assert killed.returncode != 0 and not (tmp_path / "weights.safetensors").exists()
    assert json.loads((tmp_path / "state" / "latest.json").read_text())["step"] == 3
    before = json.loads(next((tmp_path / "state").glob("step-*/state.json")).read_text())["log"]
    shutil.copytree(tmp_path / "state", tmp_path / "one" / "state")  # the same state, for one process below
    checkpoint = tmp_path / "step_3" / "model.safetensors"
    written = checkpoint.stat().st_mtime_ns
    ok(torchrun(WORKER, str(tmp_path), "fsdp", "full"))
    log, weights = saved(tmp_path)
    reference_log, reference = saved(fsdp_full)
    assert log[:3] == before  # steps 1-3 come from the saved state
    assert checkpoint.stat().st_mtime_ns == written  # and were not trained again
    assert [e["loss"] for e in log] == [e["loss"] for e in reference_log]
    assert torch.equal(weights, reference)
    # The state has the one-process layout: one process resumes it too, to the same weights.
    model, one = run(tmp_path / "one")
    assert one[:3] == before
    assert torch.allclose(flat_weights(model), reference, rtol=0, atol=WEIGHT_ATOL)


def test_neglect_finetune_with_fsdp_trains_the_run_directory(tmp_path):
    from experiments.config import load_config
    from experiments.pipeline import train_stages

    flags = ["--preset", "tiny", "--set", 'conditions=["negated"]', "--set", "pretrain.steps=10",
             "--set", 'device="cpu"', "--set", "finetune.lora_rank=4", "--set", 'finetune.parallel="fsdp"']
    out = ok(torchrun("-m", "experiments", "finetune", *flags, "--out", str(tmp_path / "fsdp"))).stdout
    assert "2 process(es)" in out
    one = load_config("tiny", None, [*flags[3:-2:2], 'finetune.parallel="ddp"'])
    train_stages(one, tmp_path / "one")
    a, b = (pd.read_csv(tmp_path / d / "results" / "train_logs" / "negated_seed0.csv") for d in ("fsdp", "one"))
    assert a.tokens.tolist() == b.tokens.tolist() and (a.loss - b.loss).abs().max() < LOSS_ATOL
    steps = sorted(p.name for p in (tmp_path / "fsdp" / "checkpoints" / "negated" / "seed0").iterdir())
    assert steps == ["step_000002", "step_000006"] and not any((tmp_path / "fsdp" / "train_state").iterdir())
    last = Path("checkpoints") / "negated" / "seed0" / "step_000006"
    assert torch.allclose(logits(tmp_path / "fsdp" / last), logits(tmp_path / "one" / last), rtol=0, atol=1e-4)
