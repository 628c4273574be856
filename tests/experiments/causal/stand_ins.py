"""Stand-ins for finetuned checkpoints whose change is known."""
from __future__ import annotations

import torch

import interp


def block0_stand_in(path, scale: float):
    """A stand-in for a finetuned checkpoint of the model at ``path``: only block 0's MLP moved
    (seeded Gaussian noise times ``scale``), so every change starts after block 0."""
    changed = interp.load_model(path, device="cpu")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in changed.model.named_parameters():
            if "layers.0.mlp" in name:
                param.add_(scale * torch.randn(param.shape, generator=g))
    return changed
