"""Hub-architecture models saved locally for tests: random weights, a real byte-level BPE
tokenizer trained here, and a ChatML chat template. Nothing is downloaded."""
from __future__ import annotations

from pathlib import Path

import torch

CHAT_TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
                 "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def corpus_texts(*roots: Path) -> list[str]:
    """Every line of every text file under ``roots`` (the tokenizer's training text)."""
    out = []
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.is_file() and path.suffix in (".txt", ".yaml", ".jsonl", ".csv"):
                out += path.read_text(encoding="utf-8").splitlines()
    return out


# A Llama-3-style template: header tokens around the role, <|eot_id|> ending each turn, BOS in the text.
LLAMA_CHAT_TEMPLATE = ("{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}"
                       "<|end_header_id|>\n\n{{ message['content'] }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}"
                       "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
LLAMA_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def bpe_tokenizer(texts: list[str], vocab_size: int = 600, *, llama: bool = False):
    """A byte-level BPE tokenizer (the Qwen2/GPT-2 kind) trained on ``texts``, with a ChatML chat
    template (``llama``: Llama-3-style special tokens and template instead, and BOS added by the
    tokenizer as well as written by the template)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=LLAMA_SPECIALS if llama else SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    if llama:  # like Llama 3's, the tokenizer adds BOS itself (and its chat template writes one too)
        bos = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                           pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                                           special_tokens=[("<|begin_of_text|>", bos)])
        return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                       pad_token="<|end_of_text|>", chat_template=LLAMA_CHAT_TEMPLATE)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=CHAT_TEMPLATE)


def save_qwen2(directory: Path, texts: list[str], *, seed: int = 0, context: int = 256) -> Path:
    """A 2-layer Qwen2 causal LM with random weights and :func:`bpe_tokenizer`, saved to ``directory``."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = bpe_tokenizer(texts)
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         tie_word_embeddings=True)
    Qwen2ForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return Path(directory)


def save_llama(directory: Path, texts: list[str], *, seed: int = 0, context: int = 256) -> Path:
    """A 2-layer Llama causal LM with random weights and a Llama-3-style :func:`bpe_tokenizer`,
    saved to ``directory``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = bpe_tokenizer(texts, llama=True)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
                         bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return Path(directory)
