"""A causal LM whose next-token logits are a hand-written table indexed by the previous token.

It is a real HF Llama (so ``interp.load_model`` and every scorer treat it like any checkpoint):
the embedding is the identity, every block's output projections are zero (the residual stream
stays the embedding), the final RMSNorm scales one-hot rows by sqrt(d), and the untied LM head
holds ``table / sqrt(d)``. So ``log p(w | ... prev) = table[prev][w] - logsumexp(table[prev])``
exactly, and which answer must win is known by construction.
"""
from __future__ import annotations

import math

import torch
from transformers import LlamaConfig, LlamaForCausalLM

import interp
from experiments.materials.conditions import template_words
from experiments.config import load_config
from experiments.materials.corpus import all_words
from experiments.training.toymodel import build_tokenizer
from experiments.materials.world import build_world


def tiny_world():
    return build_world(load_config("tiny").world)


def bigram_lm(words: set[str], table: dict[str, dict[str, float]], max_len: int = 1024):
    tok = build_tokenizer(words)
    vocab = len(tok)
    d = vocab + vocab % 2  # RoPE wants an even head dimension
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=d, intermediate_size=4, num_hidden_layers=1,
                      num_attention_heads=1, num_key_value_heads=1, max_position_embeddings=max_len,
                      tie_word_embeddings=False, rms_norm_eps=1e-12, bos_token_id=2, eos_token_id=3, pad_token_id=0)
    model = LlamaForCausalLM(cfg)
    ids = tok.get_vocab()
    head = torch.zeros(vocab, d)
    for prev, row in table.items():
        for word, logit in row.items():
            head[ids[word], ids[prev]] = logit / math.sqrt(d)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.model.embed_tokens.weight.copy_(torch.eye(vocab, d))
        model.model.norm.weight.fill_(1.0)
        model.lm_head.weight.copy_(head)
    return interp.load_model(model, tokenizer=tok)


def world_lm(world, table, max_len: int = 1024):
    return bigram_lm(all_words(world) | template_words(), table, max_len)


def logsoftmax(table_row: dict[str, float], word: str, vocab: int) -> float:
    """log p(word) for a row of the table over a vocabulary of ``vocab`` tokens (unlisted: 0)."""
    values = list(table_row.values()) + [0.0] * (vocab - len(table_row))
    m = max(values)
    return table_row.get(word, 0.0) - (m + math.log(sum(math.exp(v - m) for v in values)))
