"""Deterministic kernels, so that a seed names one set of weights on the GPU too.

On CPU the toy models train the same run after run. On CUDA they did not: the embedding's
backward adds with atomics (tied embeddings: every step), and a compiled graph's scatter-adds
do too, so two pretraining runs of one config and seed drifted apart, and in the testbed's
sharp transitions one of them came to judge never-judged facts 0.98 and the other 0.64
(benchmarks/base_model_checks.md, seventh session). ``use_deterministic_kernels(True)`` asks
torch for deterministic implementations (``torch.use_deterministic_algorithms``, which the
compiler also follows), fixes cuBLAS's workspace (``CUBLAS_WORKSPACE_CONFIG``, which cuBLAS
reads when a process first uses it), leaves out attention kernels whose backward pass adds with
atomics (cuDNN's and the memory-efficient one) and turns off the compiler's on-device
benchmarking of choices that change the numbers. Ops without a deterministic implementation warn instead of
failing (``warn_only``), so a real model's training still runs. What it costs in speed:
``benchmarks/deterministic_training.sh``.
"""
from __future__ import annotations

import os

import torch

CUBLAS_WORKSPACE = ":4096:8"


def use_deterministic_kernels(enabled: bool) -> bool:
    """Make the training that follows in this process deterministic; with ``enabled`` False,
    leave torch as it is (its fastest kernels, unless the caller chose otherwise).

    Parameters
    ----------
    enabled:
        The run's ``deterministic`` setting, where it trains on CUDA (CPU training is
        deterministic already, and needs none of this).

    Returns
    -------
    bool
        Whether deterministic kernels are on now.
    """
    if not enabled:
        return torch.are_deterministic_algorithms_enabled()
    # read by cuBLAS at its first use in the process; a value the user set is kept
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True, warn_only=True)
    # the filling of every new tensor that deterministic mode adds guards against reading
    # uninitialised memory, which training here does not do: not worth its time
    torch.utils.deterministic.fill_uninitialized_memory = False
    torch.backends.cudnn.benchmark = False
    # attention's cuDNN and memory-efficient backward passes add with atomics; flash attention
    # (half precision) and the plain math path do not
    torch.backends.cuda.enable_cudnn_sdp(False)
    torch.backends.cuda.enable_mem_efficient_sdp(False)
    try:
        import torch._inductor.config as inductor_config
    except ImportError:  # pragma: no cover - a torch without the compiler
        return True
    if hasattr(inductor_config, "deterministic"):
        inductor_config.deterministic = True
    return True
