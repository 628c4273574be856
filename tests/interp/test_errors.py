"""Bad input gives one clear line (InterpInputError) before any forward pass."""
import pytest
import torch

import interp
from interp import InterpInputError
from interp.positions import CharRange, Indices, Span
from tests.interp.fixtures import CONTEXT, make_model, make_tokenizer


def raises_one_line(match, fn, *args, **kwargs):
    with pytest.raises(InterpInputError, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)
    return info.value


@pytest.fixture(scope="module")
def llama(tiny_dirs):
    return interp.load_model(tiny_dirs["llama"])


def test_missing_path(tmp_path):
    raises_one_line("does not exist", interp.load_model, str(tmp_path / "nope"))


def test_directory_without_model(tmp_path):
    raises_one_line("cannot load model", interp.load_model, str(tmp_path))


def test_unknown_hub_id_offline(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    raises_one_line("cannot load model 'no-such-org/no-such-model'", interp.load_model, "no-such-org/no-such-model")


def test_malformed_hub_id():
    raises_one_line("valid hub id", interp.load_model, "not a model id!")


def test_mismatched_tokenizer(tiny_dirs):
    too_big = make_tokenizer("llama", extra_words=[f"w{i}" for i in range(50)])
    raises_one_line("do not match", interp.load_model, tiny_dirs["llama"], tokenizer=too_big)


def test_in_memory_model_needs_tokenizer_and_works_with_one():
    model = make_model("gpt2")
    raises_one_line("needs tokenizer", interp.load_model, model)
    lm = interp.load_model(model, tokenizer=make_tokenizer("gpt2"))
    assert interp.residuals(lm, ["the cat"]).shape == (1, 3, 32)


def test_bad_dtype_and_device(tiny_dirs):
    raises_one_line("unknown dtype", interp.load_model, tiny_dirs["gpt2"], dtype="float7")
    if not torch.cuda.is_available():
        raises_one_line("CUDA is not available", interp.load_model, tiny_dirs["gpt2"], device="cuda")


def test_dtype_selection(tiny_dirs):
    lm = interp.load_model(tiny_dirs["llama"], dtype="bfloat16")
    assert next(lm.model.parameters()).dtype == torch.bfloat16
    assert interp.residuals(lm, ["the cat sat"]).dtype == torch.float32


@pytest.mark.parametrize("position, match", [
    ("first", "bad position"),
    (Span("zebra"), "not found in text 0"),
    (Span("the", occurrence=3), "occurs 1 times"),
    (Span("the", reduce="max"), "bad reduce"),
    (CharRange(5, 2), "expected 0 <= start < end"),
    (CharRange(0, 200), "runs past text 0"),
    (Indices((9,)), "token index 9 is out of range for text 0"),
    (Indices(((0,), (1,), (2,))), "one row per text"),
    (Indices(((0,), 1)), "expected ints or one list of ints per text"),
    ({"chars": (0, 3), "reduce": "median"}, "bad reduce"),
    (2.5, "bad position"),
])
def test_bad_positions(llama, position, match):
    raises_one_line(match, interp.residuals, llama, ["the cat sat", "a dog ran on the mat"], position=position)


@pytest.mark.parametrize("layers", [3, -4, [0, 7], ["1"], []])
def test_layers_out_of_range(llama, layers):
    raises_one_line("layer|layers", interp.residuals, llama, ["the cat"], layers=layers)


def test_text_longer_than_context(llama):
    long_text = " ".join(["cat"] * CONTEXT)
    raises_one_line(f"text 1 has {CONTEXT + 1} tokens, longer than the model's context of {CONTEXT}",
                    interp.residuals, llama, ["the cat", long_text])


def test_bad_texts_backend_and_batch_size(llama):
    raises_one_line("non-empty list", interp.residuals, llama, "the cat")
    raises_one_line("non-empty list", interp.residuals, llama, [])
    raises_one_line("text 1 is a int", interp.residuals, llama, ["the cat", 3])
    raises_one_line("unknown backend", interp.residuals, llama, ["the cat"], backend="jax")
    raises_one_line("bad batch_size", interp.residuals, llama, ["the cat"], batch_size=0)
    raises_one_line("LoadedModel", interp.residuals, llama.model, ["the cat"])
