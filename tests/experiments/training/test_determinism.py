"""The ``deterministic`` key: deterministic kernels for training on CUDA, nothing changed on CPU.

That two GPU runs of one seed then agree bit for bit is measured on the GPU
(benchmarks/deterministic_training.sh); here: what the switch sets, that it keeps a user's
cuBLAS setting, and that the stages ask for it only where they train on CUDA."""
from __future__ import annotations

import os

import pytest
import torch

from experiments.artifacts.rundir import RunDir
from experiments.config import load_config
from experiments.errors import UserError
from experiments.materials import load_materials
from experiments.training import determinism, stages


@pytest.fixture
def restore_torch_state(monkeypatch):
    """Undo the process-wide settings the switch makes."""
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.utils.deterministic.fill_uninitialized_memory, torch.backends.cudnn.benchmark,
             torch.backends.cuda.cudnn_sdp_enabled(), torch.backends.cuda.mem_efficient_sdp_enabled())
    yield
    torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
    torch.utils.deterministic.fill_uninitialized_memory = saved[2]
    torch.backends.cudnn.benchmark = saved[3]
    torch.backends.cuda.enable_cudnn_sdp(saved[4])
    torch.backends.cuda.enable_mem_efficient_sdp(saved[5])
    import torch._inductor.config as inductor_config
    inductor_config.deterministic = False


def test_on_it_asks_torch_for_deterministic_kernels(restore_torch_state):
    assert determinism.use_deterministic_kernels(True) is True
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()  # an op without one warns, not fails
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == determinism.CUBLAS_WORKSPACE
    assert not torch.backends.cuda.cudnn_sdp_enabled() and not torch.backends.cuda.mem_efficient_sdp_enabled()
    import torch._inductor.config as inductor_config
    assert inductor_config.deterministic


def test_a_users_cublas_setting_is_kept(restore_torch_state, monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    determinism.use_deterministic_kernels(True)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_off_it_changes_nothing(restore_torch_state):
    assert determinism.use_deterministic_kernels(False) is False
    assert not torch.are_deterministic_algorithms_enabled()
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ


@pytest.mark.parametrize("deterministic", [True, False])
def test_stages_ask_for_it_only_when_training_on_cuda(tmp_path, monkeypatch, deterministic):
    asked = []
    monkeypatch.setattr(stages, "use_deterministic_kernels", asked.append)
    cfg = load_config("tiny", overrides=['pretrain.shipped="off"', "pretrain.steps=2", "finetune.steps=2",
                                         "finetune.n_checkpoints=2", f"deterministic={str(deterministic).lower()}"])
    run, materials = RunDir(tmp_path / "run"), load_materials(cfg)
    base = stages.pretrain(run, cfg, materials)
    stages.finetune(run, cfg, materials, base, "plain", 0)
    assert asked == [False, False]  # this machine trains on its CPU
    monkeypatch.setattr(stages, "device_for", lambda cfg: torch.device("cuda"))
    asked.clear()
    with pytest.raises(Exception):  # no CUDA here: the stage gets as far as asking, then fails to train
        stages.pretrain(RunDir(tmp_path / "cuda"), cfg, materials)
    assert asked == [deterministic]


def test_a_value_that_is_no_boolean_is_refused():
    with pytest.raises(UserError, match="deterministic"):
        load_config("tiny", overrides=['deterministic="sometimes"'])
