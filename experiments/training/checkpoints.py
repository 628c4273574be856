"""Writing model checkpoints as ordinary HF directories, atomically.

A peft (LoRA) model is saved merged by default, so every analysis tool loads it like any other
model; ``as_adapter=True`` saves only the adapter (``adapter_config.json`` and weights), to be
loaded with ``peft.PeftModel.from_pretrained(base_model, path)``.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from experiments.training.lora import is_peft_model, merged_state_dict


def save_checkpoint(path: str | Path, model, tokenizer=None, *, as_adapter: bool = False) -> Path:
    """Save ``model`` (and ``tokenizer``) to ``path`` via a temporary directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".tmp-{path.name}"))
    try:
        if is_peft_model(model) and not as_adapter:
            model.get_base_model().save_pretrained(tmp, state_dict=merged_state_dict(model))
        else:
            model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def checkpoint_saver(path_for_step: Callable[[int], str | Path], tokenizer=None, *, as_adapter: bool = False,
                     skip_step_zero: bool = True) -> Callable[[int, object], None]:
    """An ``on_checkpoint`` callback for ``train`` that saves step ``s`` to ``path_for_step(s)``.
    Step 0 (the untouched base model) is skipped unless ``skip_step_zero=False``."""

    def save(step: int, model) -> None:
        if step > 0 or not skip_step_zero:
            save_checkpoint(path_for_step(step), model, tokenizer, as_adapter=as_adapter)

    return save
