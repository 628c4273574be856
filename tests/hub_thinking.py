"""A Qwen3-architecture model saved locally for tests: random weights, the byte-level BPE
tokenizer of ``tests.hub_models`` with ``<think>``/``</think>`` tokens, and a chat template
in the style of Qwen3's (written here) with its thinking switch: ``enable_thinking=False``
opens the assistant turn with an empty thinking block. Nothing is downloaded."""
from __future__ import annotations

from pathlib import Path

import torch

from tests.hub_models import bpe_tokenizer

THINKING_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}")


def save_qwen3(directory: Path, texts: list[str], *, seed: int = 0, context: int = 256) -> Path:
    """A 2-layer Qwen3 causal LM with random weights and a thinking-switch chat template."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = bpe_tokenizer(texts)
    tokenizer.add_tokens(["<think>", "</think>"])
    tokenizer.chat_template = THINKING_TEMPLATE
    torch.manual_seed(seed)
    config = Qwen3Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=context,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=True)
    Qwen3ForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return Path(directory)
