"""Writing model checkpoints as ordinary HF directories, atomically and checksummed.

A peft (LoRA) model is saved merged by default, so every analysis tool loads it like any other
model; ``as_adapter=True`` saves only the adapter (``adapter_config.json`` and weights), to be
loaded with ``peft.PeftModel.from_pretrained(base_model, path)``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from experiments.artifacts.atomic import atomic_write_hf_dir
from experiments.training.lora import is_peft_model, merged_state_dict


def save_checkpoint(path: str | Path, model, tokenizer=None, *, as_adapter: bool = False) -> Path:
    """Save ``model`` (and ``tokenizer``) as an HF directory at ``path``, atomically and with a
    checksum of every file (``experiments.artifacts.checksums.hf_dir_problem`` checks it).

    Parameters
    ----------
    path : the checkpoint directory; one already there is replaced once the new one is complete.
    model : an HF model, or a peft model (saved merged unless ``as_adapter``).
    tokenizer : saved into the same directory when given.
    as_adapter : save only a peft model's adapter.

    Returns
    -------
    ``path``.
    """
    if is_peft_model(model) and not as_adapter:
        return atomic_write_hf_dir(path, model.get_base_model(), tokenizer, state_dict=merged_state_dict(model))
    return atomic_write_hf_dir(path, model, tokenizer)


def checkpoint_saver(path_for_step: Callable[[int], str | Path], tokenizer=None, *, as_adapter: bool = False,
                     skip_step_zero: bool = True) -> Callable[[int, object], None]:
    """An ``on_checkpoint`` callback for ``train`` that saves step ``s`` to ``path_for_step(s)``.
    Step 0 (the untouched base model) is skipped unless ``skip_step_zero=False``."""

    def save(step: int, model) -> None:
        if step > 0 or not skip_step_zero:
            save_checkpoint(path_for_step(step), model, tokenizer, as_adapter=as_adapter)

    return save
