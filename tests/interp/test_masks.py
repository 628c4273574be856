"""Ready-made 4D attention masks (``interp.masks``) give the numbers HF gives with its own masks,
and models whose masks are of another kind keep the 2D mask."""
import pytest
import torch

import interp
from interp import masks
from interp.batching import batches
from interp.positions import Last
from tests.interp.fixtures import CONTEXT, KINDS, TEXTS, VOCAB, hf_hidden_states, make_tokenizer


def first_mask(lm) -> torch.Tensor:
    return next(iter(batches(lm, TEXTS, Last(), 2))).inputs["attention_mask"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_ready_masks_give_the_numbers_of_the_models_own(tiny_dirs, monkeypatch, kind, attention, side):
    lm = interp.load_model(tiny_dirs[kind])
    lm.model.set_attn_implementation(attention)
    lm.tokenizer.padding_side = side
    assert first_mask(lm).dim() == 4  # the ready-made mask is in use
    fast = interp.residuals(lm, TEXTS, position="mean", batch_size=3)

    monkeypatch.setattr(masks, "ENABLED", False)
    assert first_mask(lm).dim() == 2  # the model builds its own from the padding mask
    own = interp.residuals(lm, TEXTS, position="mean", batch_size=3)
    assert (fast - own).abs().max().item() < 1e-6
    alone = torch.stack([hf_hidden_states(lm, t).mean(1) for t in TEXTS])
    assert (fast - alone).abs().max().item() < 1e-5


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_ready_masks_equal_transformers_own(tiny_dirs, kind, attention):
    """The three-op masks are what transformers' mask function gives, on random paddings."""
    lm = interp.load_model(tiny_dirs[kind])
    lm.model.set_attn_implementation(attention)
    made = masks.mask_maker(lm)
    reference = masks._with_transformers(lm, masks._transformers_mask_function(lm))
    assert made is not reference  # the fast path is the one in use
    g = torch.Generator().manual_seed(0)
    for width in (1, 2, 7):
        lengths = torch.randint(1, width + 1, (6,), generator=g)
        lengths[0] = width  # one row without padding
        columns = torch.arange(width)
        for real in (columns < lengths[:, None], columns >= width - lengths[:, None]):  # right, left padding
            want, got = reference(real), made(real)
            assert got.shape == want.shape and got.dtype == want.dtype and torch.equal(got, want)
    assert made(real.to("meta")).device.type == "meta"  # made where the padding mask is (the GPU), no CPU op


def test_a_sliding_window_model_keeps_the_2d_mask():
    """A window shorter than the texts: a full causal mask would be wrong, so none is built."""
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    model = MistralForCausalLM(MistralConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                             max_position_embeddings=CONTEXT, sliding_window=3, pad_token_id=0))
    lm = interp.load_model(model.eval(), tokenizer=make_tokenizer("llama"))
    assert masks.mask_maker(lm) is None and first_mask(lm).dim() == 2
    got = interp.residuals(lm, TEXTS, position="mean", batch_size=3)
    want = torch.stack([hf_hidden_states(lm, t).mean(1) for t in TEXTS])
    assert (got - want).abs().max().item() < 1e-5


@pytest.mark.parametrize("sliding, expected", [(False, True), (True, False)])
def test_layer_types_decide_for_hybrid_configs(sliding, expected):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=CONTEXT,
                         use_sliding_window=sliding, sliding_window=3, max_window_layers=1, pad_token_id=0)
    lm = interp.load_model(Qwen2ForCausalLM(config).eval(), tokenizer=make_tokenizer("llama"))
    assert (masks.mask_maker(lm) is not None) == expected
    got = interp.residuals(lm, TEXTS, position="mean", batch_size=3)
    want = torch.stack([hf_hidden_states(lm, t).mean(1) for t in TEXTS])
    assert (got - want).abs().max().item() < 1e-5
