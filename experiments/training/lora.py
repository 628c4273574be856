"""LoRA finetuning through peft, and merging adapters into plain HF weights for analysis."""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LoraSettings:
    """peft LoRA settings. ``target_modules``: module-name suffixes (e.g. ``("q_proj", "v_proj")``)
    or ``"all-linear"`` (every linear layer but the output head). The paper used rank 32."""

    rank: int = 32
    alpha: float = 64.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] | str = "all-linear"


def add_lora(model, settings: LoraSettings):
    """Wrap ``model`` with fresh LoRA adapters; only the adapters are trainable afterwards.
    Seed torch before calling for reproducible adapter initialisation."""
    from peft import LoraConfig, get_peft_model

    targets = settings.target_modules if isinstance(settings.target_modules, str) else list(settings.target_modules)
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=targets, task_type="CAUSAL_LM")
    with quiet_peft():
        return get_peft_model(model, config)


@contextlib.contextmanager
def quiet_peft():
    """A context in which peft's use of a transformers property deprecated in v5
    (``is_gradient_checkpointing``) does not print a FutureWarning on every wrap."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def is_peft_model(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def merged_state_dict(model) -> dict[str, torch.Tensor]:
    """The state dict of the plain model with the active adapters merged into its weights,
    computed without touching ``model`` (merging and unmerging in place is not exact, and
    training must continue from the unmerged weights bit for bit)."""
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    merged = {}
    for key, value in base.state_dict().items():
        if ".lora_" in key:
            continue
        merged[key.replace(".base_layer.", ".")] = value
    for name, module in base.named_modules():
        if not isinstance(module, LoraLayer) or module.merged:
            continue
        if any(module.use_dora.get(a, False) for a in module.active_adapters):
            raise ValueError(f"merging DoRA adapters is not supported (module {name!r})")
        weight = module.get_base_layer().weight
        delta = sum(module.get_delta_weight(a) for a in module.active_adapters if a in module.lora_A)
        merged[f"{name}.weight"] = (weight.detach().float() + delta.detach().float()).to(weight.dtype)
    return merged
