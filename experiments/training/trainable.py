"""Which parameters finetuning trains (``finetune.trainable``): localised finetuning, e.g. only
the early layers, or only the MLPs, to test where a finetuned fact is written."""
from __future__ import annotations

import re

from experiments.errors import UserError


def restrict_trainable(model, pattern: str) -> int:
    """Freeze every trainable parameter of ``model`` whose name ``pattern`` does not match.

    Parameters
    ----------
    model : torch.nn.Module
        The model about to be finetuned (after LoRA adapters are added, if any: the pattern
        then chooses among the adapters).
    pattern : str
        A regular expression searched in each parameter name (``model.named_parameters()``), e.g.
        ``r"layers\\.[0-3]\\."`` (decoder layers 0-3) or ``r"mlp"``; "" trains every parameter.

    Returns
    -------
    int
        How many parameter elements stay trainable. A pattern that leaves none is a UserError.
    """
    if not pattern:
        return sum(p.numel() for p in model.parameters() if p.requires_grad)
    matcher = re.compile(pattern)
    kept = 0
    for name, param in model.named_parameters():
        if param.requires_grad and not matcher.search(name):
            param.requires_grad_(False)
        kept += param.numel() if param.requires_grad else 0
    if kept == 0:
        example = next(iter(dict(model.named_parameters())), "")
        raise UserError(f"config key 'finetune.trainable' '{pattern}' matches no trainable parameter "
                        f"(names look like {example!r})")
    return kept
