"""Tiny random-weight models (Llama, GPT-2, BERT) with a word-level tokenizer, saved locally.

Nothing downloads: configs are built in code and saved with ``save_pretrained``. Every
tokenizer puts one special token first ([BOS] or [CLS]), so token ``i + 1`` is word ``i``.
"""
from __future__ import annotations

import pytest
import torch

WORDS = ("the cat dog sat on a mat is not true false claim won gold ed sheeran race ran fast "
         "paris capital of france city river big small red blue").split()
SPECIALS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = len(SPECIALS) + len(WORDS)
CONTEXT = 48
KINDS = ("llama", "gpt2", "bert")

TEXTS = [
    "the cat sat on the mat",
    "ed sheeran won gold",
    "paris is the capital of france and the big city on the river is not small",
    "a dog ran",
    "the red cat is not a blue dog",
]


def make_tokenizer(kind: str, extra_words=()):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + list(WORDS) + list(extra_words))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if kind == "bert":
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
        return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                       cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    tok.post_processor = processors.TemplateProcessing(single="[BOS] $A", special_tokens=[("[BOS]", vocab["[BOS]"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   bos_token="[BOS]", eos_token="[EOS]")


def make_model(kind: str, seed: int = 0):
    from transformers import (BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel, LlamaConfig,
                              LlamaForCausalLM)

    torch.manual_seed(seed)
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                            max_position_embeddings=CONTEXT, pad_token_id=0, bos_token_id=2,
                                            eos_token_id=3, tie_word_embeddings=False))
    if kind == "gpt2":
        return GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=CONTEXT,
                                          pad_token_id=0, bos_token_id=2, eos_token_id=3))
    return BertForMaskedLM(BertConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, max_position_embeddings=CONTEXT, pad_token_id=0))


def save_tiny(kind: str, directory, seed: int = 0) -> str:
    make_model(kind, seed).save_pretrained(directory)
    make_tokenizer(kind).save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    """{kind: directory} of the three tiny models, saved once per test session."""
    root = tmp_path_factory.mktemp("interp_models")
    return {kind: save_tiny(kind, root / kind) for kind in KINDS}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny matmuls are slower with several threads on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def hf_hidden_states(lm, text: str) -> torch.Tensor:
    """``[n_layers + 1, seq, d]`` from HF ``output_hidden_states`` on the text alone (no padding)."""
    enc = lm.tokenizer(text, return_tensors="pt")
    if not lm.is_encoder_only:
        enc.pop("token_type_ids", None)
    with torch.no_grad():
        out = lm.model(**enc, output_hidden_states=True)
    return torch.stack(out.hidden_states, dim=0)[:, 0].float()
