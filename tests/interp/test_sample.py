"""interp.sample: sampled answers through the model's own generate (left padding, key-value
cache). Greedy sampling equals interp.generate (one unpadded forward per step); seeded sampling
repeats; the global RNG is left alone; bad input is one clear line."""
import pytest
import torch

import interp
from interp import InterpInputError
from tests.interp.fixtures import CONTEXT
from tests.interp.test_logprobs import CAUSAL, PROMPTS, load


@pytest.mark.parametrize("kind", CAUSAL)
@pytest.mark.parametrize("side", ["right", "left"])
def test_greedy_sampling_is_greedy_generation(tiny_dirs, kind, side):
    lm = load(tiny_dirs, kind, side)
    want = interp.generate(lm, PROMPTS, max_new_tokens=5)
    got = interp.sample(lm, PROMPTS, n=2, temperature=0, max_new_tokens=5, batch_size=2)
    assert got == [[w, w] for w in want]
    assert lm.tokenizer.padding_side == side  # padding is done here, the tokenizer is not changed


def test_seeded_samples_repeat_and_the_global_rng_is_untouched(tiny_dirs):
    lm = load(tiny_dirs, "llama")
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = interp.sample(lm, PROMPTS, n=3, temperature=1.5, top_p=0.95, max_new_tokens=6, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    b = interp.sample(lm, PROMPTS, n=3, temperature=1.5, top_p=0.95, max_new_tokens=6, seed=7)
    c = interp.sample(lm, PROMPTS, n=3, temperature=1.5, top_p=0.95, max_new_tokens=6, seed=8)
    assert a == b and a != c
    assert [len(x) for x in a] == [3] * len(PROMPTS)
    assert len({answer for answers in a for answer in answers}) > len(PROMPTS)  # samples differ


def raises_one_line(match, fn, *args, **kwargs):
    with pytest.raises(InterpInputError, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)


def test_bad_input_is_one_line(tiny_dirs):
    lm = load(tiny_dirs, "llama")
    raises_one_line("bad n 0", interp.sample, lm, ["the cat"], n=0)
    raises_one_line("bad temperature -1", interp.sample, lm, ["the cat"], temperature=-1)
    raises_one_line("bad top_p 0", interp.sample, lm, ["the cat"], top_p=0)
    raises_one_line("bad max_new_tokens", interp.sample, lm, ["the cat"], max_new_tokens=0)
    raises_one_line(f"with max_new_tokens=4 .* context of {CONTEXT}", interp.sample, lm,
                    [" ".join(["cat"] * (CONTEXT - 3))], max_new_tokens=4)
    raises_one_line("encoder-only", interp.sample, interp.load_model(tiny_dirs["bert"]), ["the cat"])


def test_the_checkpoints_generation_defaults_do_not_apply(tiny_dirs, capfd):
    plain = load(tiny_dirs, "llama")
    tuned = load(tiny_dirs, "llama")
    for name, value in dict(do_sample=True, temperature=0.3, top_k=2, top_p=0.5, min_p=0.3,
                            repetition_penalty=5.0, no_repeat_ngram_size=1).items():
        setattr(tuned.model.generation_config, name, value)
    for kw in (dict(temperature=1.2, top_p=1.0), dict(temperature=0)):
        assert (interp.sample(tuned, PROMPTS, n=2, max_new_tokens=6, seed=1, **kw)
                == interp.sample(plain, PROMPTS, n=2, max_new_tokens=6, seed=1, **kw))
    assert capfd.readouterr().err == ""  # no notes about unused flags
