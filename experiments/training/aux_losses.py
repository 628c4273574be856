"""Auxiliary loss terms added to the language-modelling loss inside ``train``.

An auxiliary loss is any callable ``aux(model, batch, outputs, index) -> scalar tensor`` with a
``name`` (for the log) and ``needs_hidden_states`` (ask the forward pass for every layer's
residual stream). ``batch`` is the training micro-batch on the model's device, ``outputs`` the
model's output on it, ``index`` counts micro-batches from the start of training (so anything
chosen by it is the same after a resume). The loop divides each term by the number of
micro-batches per step, like the main loss.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F


class KLToReference:
    """``weight * KL(reference || model)`` of next-token distributions on a fixed prompt set.

    This is the anchor of the stability protocol: keep the finetuned model's answers on the
    prompts close to a frozen model's (e.g. self-distillation from the original model).
    ``reference=None`` uses the model itself with its peft adapters switched off, which is the
    frozen base model for LoRA finetuning at no extra memory. ``prompt_batches`` are batches
    (dicts with ``input_ids`` and optionally ``attention_mask``), used in turn; the KL is averaged
    over the positions the attention mask keeps.
    """

    needs_hidden_states = False

    def __init__(self, prompt_batches: Sequence[dict], *, reference=None, weight: float = 1.0,
                 temperature: float = 1.0, name: str = "kl_ref"):
        if not prompt_batches:
            raise ValueError("KLToReference needs at least one prompt batch")
        self.prompt_batches, self.reference = list(prompt_batches), reference
        self.weight, self.temperature, self.name = weight, temperature, name
        if reference is not None:
            reference.eval().requires_grad_(False)

    def _reference_logits(self, model, batch: dict) -> torch.Tensor:
        with torch.no_grad():
            if self.reference is not None:
                return self.reference(**batch, use_cache=False).logits
            if not hasattr(model, "disable_adapter"):
                raise ValueError("KLToReference(reference=None) needs a peft model (its adapters off are the reference)")
            was_training = model.training
            model.eval()  # no dropout in the reference pass
            try:
                with model.disable_adapter():
                    return model(**batch, use_cache=False).logits
            finally:
                model.train(was_training)

    def __call__(self, model, batch, outputs, index: int) -> torch.Tensor:
        device = next(model.parameters()).device
        prompts = self.prompt_batches[index % len(self.prompt_batches)]
        prompts = {k: prompts[k].to(device) for k in ("input_ids", "attention_mask") if k in prompts}
        ref = self._reference_logits(model, prompts).float() / self.temperature
        cur = model(**prompts, use_cache=False).logits.float() / self.temperature
        kl = F.kl_div(F.log_softmax(cur, -1), F.log_softmax(ref, -1), log_target=True, reduction="none").sum(-1)
        mask = prompts.get("attention_mask", torch.ones_like(prompts["input_ids"])).to(kl.dtype)
        return self.weight * (kl * mask).sum() / mask.sum().clamp_min(1)


class ActivationLoss:
    """``weight * fn(hidden_states, batch)``: any differentiable function of the residual stream.

    ``hidden_states`` is the HF tuple (index 0 = embeddings, i+1 = output of block i), e.g. a
    penalty on the projection onto a probe direction at one layer.
    """

    needs_hidden_states = True

    def __init__(self, fn: Callable[[tuple, dict], torch.Tensor], *, weight: float = 1.0, name: str = "activation"):
        self.fn, self.weight, self.name = fn, weight, name

    def __call__(self, model, batch, outputs, index: int) -> torch.Tensor:
        return self.weight * self.fn(outputs.hidden_states, batch)

