"""interp's log-probabilities and greedy generation against one unpadded forward per text:
padding (either side), position ids and masks change nothing; bad input is one clear line."""
import pytest
import torch

import interp
from interp import InterpInputError
from tests.interp.fixtures import CONTEXT

CAUSAL = ("llama", "gpt2")
PROMPTS = ["the cat sat on the mat", "ed sheeran", "paris is the capital of france and the big city on the river is",
           "a dog", "the red cat is not a blue dog and the"]
CONTINUATIONS = ["and the dog ran fast", "won gold", "not small", "ran", "cat"]


def load(tiny_dirs, kind: str, side: str = "right"):
    lm = interp.load_model(tiny_dirs[kind])
    lm.tokenizer.padding_side = side
    return lm


def by_hand(lm, ids: list[int], first: int) -> torch.Tensor:
    """log p(ids[t] | ids[:t]) for t >= first, from one forward of ``ids`` alone."""
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    return torch.stack([logp[t - 1, ids[t]] for t in range(first, len(ids))])


def hand_continuation(lm, prompt: str, continuation: str, sep: str = " ", specials: bool = True) -> float:
    head = lm.tokenizer(prompt, add_special_tokens=specials)["input_ids"]
    tail = lm.tokenizer(sep + continuation, add_special_tokens=False)["input_ids"]
    return float(by_hand(lm, head + tail, len(head)).sum())


@pytest.mark.parametrize("kind", CAUSAL)
@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("batch_size", [None, 2])
def test_continuation_logprobs_equal_one_unpadded_forward_per_pair(tiny_dirs, kind, side, batch_size):
    lm = load(tiny_dirs, kind, side)
    got = interp.continuation_logprobs(lm, PROMPTS, CONTINUATIONS, batch_size=batch_size)
    want = torch.tensor([hand_continuation(lm, p, c) for p, c in zip(PROMPTS, CONTINUATIONS)])
    assert got.shape == (len(PROMPTS),) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", CAUSAL)
@pytest.mark.parametrize("side", ["right", "left"])
def test_options_of_one_prompt_share_its_forward_and_give_the_same_numbers(tiny_dirs, kind, side):
    """k one-token answer options of a question cost one forward of the question (batch_size=1
    counts forwards); the numbers are those of one unpadded forward per pair, also for a
    multi-token option scored beside them."""
    lm = load(tiny_dirs, kind, side)
    one_token = [w for w in ("cat", "dog", "ran", "mat", "the")
                 if len(lm.tokenizer(" " + w, add_special_tokens=False)["input_ids"]) == 1]
    assert len(one_token) >= 3
    prompts = [PROMPTS[0]] * 3 + [PROMPTS[1]] * 3 + [PROMPTS[0]]
    options = one_token[:3] * 2 + ["and the dog ran fast"]
    calls = []
    handle = lm.model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        got = interp.continuation_logprobs(lm, prompts, options, batch_size=1)
    finally:
        handle.remove()
    assert len(calls) == 3  # two distinct prompts for the six one-token options, one multi-token pair
    want = torch.tensor([hand_continuation(lm, p, c) for p, c in zip(prompts, options)])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", CAUSAL)
def test_left_and_right_padding_give_the_same_numbers(tiny_dirs, kind):
    right, left = load(tiny_dirs, kind, "right"), load(tiny_dirs, kind, "left")
    torch.testing.assert_close(interp.continuation_logprobs(left, PROMPTS, CONTINUATIONS),
                               interp.continuation_logprobs(right, PROMPTS, CONTINUATIONS), atol=1e-5, rtol=0)
    for a, b in zip(interp.token_logprobs(left, PROMPTS), interp.token_logprobs(right, PROMPTS)):
        assert a.token_ids == b.token_ids
        torch.testing.assert_close(a.logprobs, b.logprobs, atol=1e-5, rtol=0)


def test_position_ids_matter_so_the_comparison_can_fail(tiny_dirs):
    """GPT-2's positions are absolute: a left-padded row read without position ids is off."""
    lm = load(tiny_dirs, "gpt2", "left")
    ids = lm.tokenizer("a dog ran")["input_ids"]
    padded = torch.tensor([[lm.tokenizer.pad_token_id] * 3 + ids])
    with torch.no_grad():
        logits = lm.model(input_ids=padded, attention_mask=(padded != lm.tokenizer.pad_token_id).long()).logits[0, 3:]
    naive = torch.log_softmax(logits.float(), -1)[:-1].gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]
    assert not torch.allclose(naive, by_hand(lm, ids, 1), atol=1e-3)


@pytest.mark.parametrize("kind", CAUSAL)
@pytest.mark.parametrize("side", ["right", "left"])
def test_token_logprobs_with_offsets(tiny_dirs, kind, side):
    lm = load(tiny_dirs, kind, side)
    texts = PROMPTS + ["cat"]  # one text of two tokens ([BOS] cat)
    got = interp.token_logprobs(lm, texts, offsets=True, batch_size=3)
    for text, scored in zip(texts, got):
        enc = lm.tokenizer(text, return_offsets_mapping=True)
        assert scored.token_ids == enc["input_ids"] and scored.offsets == enc["offset_mapping"]
        assert scored.logprobs.shape == (len(enc["input_ids"]) - 1,)
        torch.testing.assert_close(scored.logprobs, by_hand(lm, enc["input_ids"], 1), atol=1e-5, rtol=0)
        torch.testing.assert_close(scored.losses, -scored.logprobs)
    assert interp.token_logprobs(lm, ["the cat"])[0].offsets is None


def chat_lm(tiny_dirs):
    """The tiny Llama with a chat template that writes [BOS] itself, as real chat templates do."""
    lm = load(tiny_dirs, "llama")
    lm.tokenizer.chat_template = "{{ bos_token }}{% for m in messages %}{{ m['content'] }} {% endfor %}is"
    return lm


def test_chat_template_prompts_get_no_second_bos(tiny_dirs):
    lm = chat_lm(tiny_dirs)
    tok = lm.tokenizer
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
               for q in ("the cat", "paris of france and the big city")]
    assert all(p.startswith("[BOS]") for p in prompts)
    got = interp.continuation_logprobs(lm, prompts, ["not", "big"])
    # the continuation follows the template directly (no space), the template's [BOS] is the only one
    want = [hand_continuation(lm, p, c, sep="", specials=False) for p, c in zip(prompts, ["not", "big"])]
    torch.testing.assert_close(got, torch.tensor(want), atol=1e-5, rtol=0)
    twice = hand_continuation(lm, prompts[0], "not", sep="", specials=True)
    assert tok(prompts[0])["input_ids"][:2] == [tok.bos_token_id] * 2  # what adding special tokens would do
    assert abs(twice - want[0]) > 1e-4  # ... and it would change the number


@pytest.mark.parametrize("kind", CAUSAL)
@pytest.mark.parametrize("side", ["right", "left"])
def test_generate_is_the_argmax_of_one_unpadded_forward_per_step(tiny_dirs, kind, side):
    lm = load(tiny_dirs, kind, side)
    got = interp.generate(lm, PROMPTS, max_new_tokens=5, batch_size=2)
    for prompt, answer in zip(PROMPTS, got):
        ids = lm.tokenizer(prompt)["input_ids"]
        new = []
        for _ in range(5):
            with torch.no_grad():
                token = int(lm.model(input_ids=torch.tensor([ids + new])).logits[0, -1].argmax())
            if token == lm.tokenizer.eos_token_id:
                break
            new.append(token)
        assert answer == lm.tokenizer.decode(new, skip_special_tokens=True).strip()


def test_generate_stops_after_the_stop_token(tiny_dirs):
    lm = load(tiny_dirs, "llama")
    full = interp.generate(lm, PROMPTS, max_new_tokens=6)
    first_words = [a.split()[0] for a in full if a]
    assert first_words
    stop = first_words[0]
    stopped = interp.generate(lm, PROMPTS, max_new_tokens=6, stop=stop)
    for whole, cut in zip(full, stopped):
        words = whole.split()
        want = words[: words.index(stop) + 1] if stop in words else words
        assert cut.split() == want


def raises_one_line(match, fn, *args, **kwargs):
    with pytest.raises(InterpInputError, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_too_long_texts_are_one_line_naming_the_text(tiny_dirs):
    lm = load(tiny_dirs, "llama")
    prompt = " ".join(["cat"] * (CONTEXT - 3))
    message = raises_one_line(f"text 1 has {CONTEXT + 1} tokens, longer than the model's context of {CONTEXT}",
                              interp.continuation_logprobs, lm, ["the cat", prompt], ["sat", "dog ran fast"])
    assert "'dog ran fast'" in message
    long_text = " ".join(["dog"] * CONTEXT)
    message = raises_one_line(f"text 0 has {CONTEXT + 1} tokens, longer than the model's context of {CONTEXT}",
                              interp.token_logprobs, lm, [long_text])
    assert "'dog dog" in message
    raises_one_line(f"prompt 0 has {CONTEXT - 2} tokens; with max_new_tokens=4 .* context of {CONTEXT}",
                    interp.generate, lm, [prompt], max_new_tokens=4)


def test_bad_input_is_one_line(tiny_dirs):
    lm = load(tiny_dirs, "llama")
    raises_one_line("encoder-only", interp.continuation_logprobs, interp.load_model(tiny_dirs["bert"]), ["the"], ["cat"])
    raises_one_line("encoder-only", interp.token_logprobs, interp.load_model(tiny_dirs["bert"]), ["the cat"])
    raises_one_line("encoder-only", interp.generate, interp.load_model(tiny_dirs["bert"]), ["the cat"])
    raises_one_line("2 prompts but 1 continuations", interp.continuation_logprobs, lm, ["the", "a"], ["cat"])
    raises_one_line("continuation 0 .* tokenizes to no tokens", interp.continuation_logprobs, lm, ["the"], [""])
    raises_one_line("non-empty list", interp.continuation_logprobs, lm, "the", "cat")
    raises_one_line("LoadedModel", interp.token_logprobs, lm.model, ["the cat"])
    raises_one_line("bad max_new_tokens", interp.generate, lm, ["the cat"], max_new_tokens=0)
