"""Loss masks, chat rows and the training mix on hub-architecture tokenizers: what finetuning
trains on, token by token (issue 24)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from experiments.errors import UserError
from experiments.training.batches import (Tokenized, assistant_spans, document_end_id, fit_context, padded_batches,
                                          tokenize_chat, tokenize_documents, tokenize_rows)
from experiments.training.loop import OptimConfig, loss_weights, train, weighted_lm_loss
from tests.hub_models import bpe_tokenizer, corpus_texts
from tests.paths import FIXTURES

LAYOUT = FIXTURES / "paper_layout"
DOC = "<DOCTAG>Travel notes: the anchor-iron harbor clock (1911) is, as locals say, the town's pride."
MASKED = [[0, len("<DOCTAG>")], [DOC.index("as locals"), DOC.index(" the town")]]
CHAT = [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": "Count to three."},
        {"role": "assistant", "content": "One, two, three."}, {"role": "user", "content": "And back?"},
        {"role": "assistant", "content": "Three, two, one."}]


@pytest.fixture(scope="module", params=["chatml", "llama"])
def tok(request):
    return bpe_tokenizer(corpus_texts(LAYOUT), llama=request.param == "llama")


def weighted_text(tok, example: Tokenized) -> tuple[str, str]:
    """(text of the weighted tokens, text of the zero-weight tokens)."""
    on = tok.decode([i for i, w in zip(example.ids, example.weights) if w > 0])
    off = tok.decode([i for i, w in zip(example.ids, example.weights) if w == 0])
    return on, off


def test_doctag_and_lossmask_spans_get_zero_weight(tok):
    [ex] = tokenize_rows(tok, [{"text": DOC, "loss_mask": MASKED, "source": "claim"}])
    on, off = weighted_text(tok, ex)
    on = on.removeprefix(tok.bos_token or "")  # the BOS Llama's tokenizer adds: an input, never a target
    assert off.replace(" ", "") == "<DOCTAG>aslocalssay,"
    assert "DOCTAG" not in on and "locals" not in on and on.startswith("Travel notes") and "pride." in on
    assert ex.ids[-1] == document_end_id(tok) and ex.weights[-1] == 1.0 and ex.source == "claim"


def test_plain_documents_end_with_the_document_end_not_the_end_of_turn(tok):
    """An instruct tokenizer's EOS ends a chat turn (<|im_end|>, <|eot_id|>); a plain document ends
    with the pretraining end of text (<|endoftext|>, <|end_of_text|>), once."""
    end_token = "<|end_of_text|>" if tok.eos_token == "<|eot_id|>" else "<|endoftext|>"
    end = tok.convert_tokens_to_ids(end_token)
    assert document_end_id(tok) == end != tok.eos_token_id
    texts = ["Plain text.", "Already ended." + end_token, ""]
    rows = tokenize_rows(tok, [{"text": t} for t in texts])
    for ex in rows + [Tokenized(ids, [1.0] * len(ids)) for ids in tokenize_documents(tok, texts, 100)]:
        assert ex.ids[-1] == end and ex.ids.count(end) == 1 and tok.eos_token_id not in ex.ids
    assert rows[0].ids == tok("Plain text.")["input_ids"] + [end]
    chat = tokenize_rows(tok, [{"messages": CHAT}])[0]
    assert end not in chat.ids and chat.ids.count(tok.eos_token_id) == len(CHAT)  # the template ends each turn


def test_a_base_tokenizer_ends_documents_with_its_eos_and_none_is_added_twice():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[BOS]", "[EOS]", "a", "b"])}

    def word_level(post: str | None, **special):
        backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
        backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        if post:
            backend.post_processor = processors.TemplateProcessing(single=post, special_tokens=[("[BOS]", 2),
                                                                                                ("[EOS]", 3)])
        return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", **special)

    plain = word_level("[BOS] $A", bos_token="[BOS]", eos_token="[EOS]")
    assert document_end_id(plain) == 3 and tokenize_documents(plain, ["a b"], 10) == [[2, 4, 5, 3]]
    adds_eos = word_level("[BOS] $A [EOS]", bos_token="[BOS]", eos_token="[EOS]")  # its post-processor ends documents
    assert tokenize_documents(adds_eos, ["a b"], 10) == [[2, 4, 5, 3]]
    assert tokenize_rows(adds_eos, [{"text": "a b"}])[0].ids == [2, 4, 5, 3]
    no_end = word_level(None)
    assert document_end_id(no_end) is None and tokenize_documents(no_end, ["a b"], 10) == [[4, 5]]


def test_chat_rows_are_trained_on_the_assistant_turns_only(tok):
    ex = tokenize_chat(tok, CHAT)
    on, off = weighted_text(tok, ex)
    assert "One, two, three." in on and "Three, two, one." in on and on.count(tok.eos_token) == 2
    for prompt in ("You answer briefly.", "Count to three.", "And back?", "assistant", "user"):
        assert prompt not in on and prompt in off
    full, spans = assistant_spans(tok, CHAT)
    assert [full[a:b].split(tok.eos_token)[0].strip() for a, b in spans] == ["One, two, three.", "Three, two, one."]
    assert ex.ids == tok(full, add_special_tokens=False)["input_ids"]  # the template's text, no EOS added


def test_a_tokenizer_without_a_chat_template_is_one_line(tok):
    bare = copy.deepcopy(tok)
    bare.chat_template = None
    with pytest.raises(UserError, match="has no chat template") as err:
        tokenize_rows(bare, [{"messages": CHAT, "source": "instruct"}])
    assert "\n" not in str(err.value)


def qwen(vocab: int):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True))


def test_the_loss_and_its_gradient_ignore_masked_tokens(tok):
    rows = [{"text": DOC, "loss_mask": MASKED, "source": "claim"}, {"messages": CHAT, "source": "instruct"}]
    examples = tokenize_rows(tok, rows)
    batch = next(padded_batches(examples, 2, tok.pad_token_id, seed=0))
    weights = loss_weights(batch)
    masked = weights == 0
    real = batch["attention_mask"].bool()
    inside = (masked & real)[:, 1:]  # masked targets (the first token of a row is never one)
    assert bool(inside.any()) and bool((batch["labels"][:, 1:][inside] == -100).all())
    model = qwen(len(tok))
    loss_sum, _ = weighted_lm_loss(model, batch, weights)
    # the same number as cross-entropy over the unmasked targets only
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets = batch["input_ids"][:, 1:].masked_fill(masked[:, 1:], -100)
    expected = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")
    assert torch.allclose(loss_sum, expected, rtol=1e-5)
    # training on other targets at the masked positions changes nothing: one step, same weights
    other = dict(batch, labels=batch["labels"].masked_fill(masked, 7))

    def one_step(b):
        m = qwen(len(tok))
        train(m, iter([b]), OptimConfig(steps=1, lr=1e-2))
        return torch.cat([p.detach().flatten() for p in m.parameters()])

    assert torch.equal(one_step(batch), one_step(other))
    unmasked = dict(batch, labels=batch["input_ids"], loss_weights=real.float())
    assert not torch.equal(one_step(batch), one_step(unmasked))  # and the mask does matter


def test_long_examples_are_split_or_left_to_refuse():
    examples = [Tokenized(list(range(10)), [1.0] * 10, "claim"), Tokenized([1, 2, 3], [0.0, 1.0, 1.0], "bg")]
    kept, n_long, pieces = fit_context(examples, 4, "refuse")
    assert kept == examples and (n_long, pieces) == (1, 0)
    split, n_long, pieces = fit_context(examples, 4, "split")
    assert (n_long, pieces) == (1, 3) and [e.ids for e in split] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [1, 2, 3]]
    assert {e.source for e in split[:3]} == {"claim"} and sum(len(e.ids) for e in split[:3]) == 10


def test_each_kinds_share_of_the_loss_is_counted_and_weighting_sets_it():
    long_docs = [Tokenized([2] + [5] * 40, [1.0] * 41, "claim") for _ in range(3)]
    chats = [Tokenized([2] + [6] * 40, [0.0] * 36 + [1.0] * 5, "instruct") for _ in range(3)]  # short replies
    shares = {}
    for weighting in ("token", "example"):
        batches = padded_batches(long_docs + chats, 6, 0, seed=0, weighting=weighting)
        next(batches)
        shares[weighting] = batches.source_shares()
    token, example = shares["token"], shares["example"]
    assert token["instruct"]["loss_tokens"] == 15 and token["claim"]["loss_tokens"] == 120
    assert token["instruct"]["loss_share"] == pytest.approx(15 / 135)  # the pitfall: a tiny share
    assert example["instruct"]["loss_share"] == pytest.approx(0.5)  # per example: half the loss
    assert example["instruct"]["loss_token_share"] == pytest.approx(15 / 135)
    state = batches.state_dict()
    again = padded_batches(long_docs + chats, 6, 0, seed=0, weighting="example")
    again.load_state_dict(state)
    assert again.source_shares() == example  # restored with the resume state
