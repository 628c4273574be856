"""The toy model: a word-level tokenizer built from the world and a small Llama."""
from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from experiments.config import ModelConfig

SPECIALS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]


def build_tokenizer(words: set[str]) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer that prepends [BOS]; saves/loads like any HF tokenizer."""
    vocab = {tok: i for i, tok in enumerate(SPECIALS + sorted(words))}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(single="[BOS] $A", pair="[BOS] $A $B",
                                                        special_tokens=[("[BOS]", vocab["[BOS]"])])
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]",
                                   bos_token="[BOS]", eos_token="[EOS]", padding_side="right")


def build_model(cfg: ModelConfig, vocab_size: int, seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.d_mlp,
        num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_heads,
        max_position_embeddings=cfg.max_len, tie_word_embeddings=True,
        bos_token_id=2, eos_token_id=3, pad_token_id=0,
    )
    return LlamaForCausalLM(config)
