"""Interventions through nnsight change the log-probs exactly as planted directions predict."""
import pytest
import torch

import interp
from interp import AddDirection, Patch, ProjectOut, Span, Steer
from tests.interp.fixtures import KINDS, TEXTS, make_tokenizer


@pytest.fixture(scope="module")
def models(tiny_dirs):
    return {kind: interp.load_model(path) for kind, path in tiny_dirs.items()}


def hf_last_logits(lm, texts):
    rows = []
    for text in texts:
        enc = lm.tokenizer(text, return_tensors="pt")
        if not lm.is_encoder_only:
            enc.pop("token_type_ids", None)
        with torch.no_grad():
            rows.append(lm.model(**enc).logits[0, -1])
    return torch.stack(rows)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("side", ["left", "right"])
def test_no_intervention_equals_plain_logits(models, kind, side):
    lm = models[kind]
    lm.tokenizer.padding_side = side
    got = interp.logits_under(lm, TEXTS, [], batch_size=2)
    assert (got - hf_last_logits(lm, TEXTS)).abs().max() < 1e-5


@pytest.mark.parametrize("side", ["left", "right"])
def test_planted_unembedding_direction_raises_log_prob_by_predicted_amount(models, side):
    """Adding alpha * W_U[T] after the final norm shifts the logits by alpha * W_U @ W_U[T]."""
    lm = models["llama"]
    lm.tokenizer.padding_side = side
    target = lm.tokenizer.convert_tokens_to_ids("gold")
    unembed = lm.model.get_output_embeddings().weight.detach()
    alpha = 4.0 / unembed[target].norm().item() ** 2  # logit of T rises by 4; others by their overlap
    plain = hf_last_logits(lm, TEXTS)
    edited = interp.logprobs_under(lm, TEXTS, [AddDirection(unembed[target], layers=lm.n_layers, scale=alpha)],
                                   batch_size=2)
    predicted = torch.log_softmax(plain + alpha * unembed @ unembed[target], dim=-1)
    assert (edited - predicted).abs().max() < 1e-4
    gain = edited[:, target] - torch.log_softmax(plain, -1)[:, target]
    assert (gain > 2.0).all(), f"log p(gold) should rise clearly, rose by {gain.tolist()}"


def test_project_out_removes_the_component_and_steer_sets_it(models):
    lm = models["llama"]
    target = lm.tokenizer.convert_tokens_to_ids("paris")
    u = lm.model.get_output_embeddings().weight.detach()[target]
    plain = hf_last_logits(lm, TEXTS)
    assert plain[:, target].abs().min() > 1e-3
    removed = interp.logits_under(lm, TEXTS, ProjectOut(u, layers=-1))
    assert removed[:, target].abs().max() < 1e-5  # logit_T = h . u, and h is now orthogonal to u
    others = torch.ones(plain.shape[1], dtype=torch.bool)
    others[target] = False
    assert (removed[:, others] - plain[:, others]).abs().max() > 1e-3  # other logits move by their overlap only
    steered = interp.logits_under(lm, TEXTS, Steer(u, layers=-1, value=2.0))
    assert (steered[:, target] - 2.0 * u.norm()).abs().max() < 1e-4


def manual_hook_logits(lm, texts, layer, direction, scale):
    """Reference: the same edit with a plain torch hook, one unpadded text at a time."""
    rows = []
    for text in texts:
        enc = lm.tokenizer(text, return_tensors="pt")
        enc.pop("token_type_ids", None)

        def add_last(module, args, kwargs=None):
            h = args[0].clone()
            h[:, -1] += scale * direction
            return (h, *args[1:]), kwargs

        def add_last_out(module, args, output):
            h = (output[0] if isinstance(output, tuple) else output).clone()
            h[:, -1] += scale * direction
            return (h, *output[1:]) if isinstance(output, tuple) else h

        handle = (lm.blocks[0].register_forward_pre_hook(add_last, with_kwargs=True) if layer == 0
                  else lm.blocks[layer - 1].register_forward_hook(add_last_out))
        try:
            with torch.no_grad():
                rows.append(lm.model(**enc).logits[0, -1])
        finally:
            handle.remove()
    return torch.stack(rows)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize("layer", [0, 1])
def test_mid_layer_edits_match_a_torch_hook(models, kind, layer):
    lm = models[kind]
    lm.tokenizer.padding_side = "left"
    direction = torch.randn(lm.d_model, generator=torch.Generator().manual_seed(layer))
    got = interp.logits_under(lm, TEXTS, AddDirection(direction, layers=layer, scale=2.0), batch_size=3)
    want = manual_hook_logits(lm, TEXTS, layer, direction, 2.0)
    assert (got - want).abs().max() < 1e-5
    assert (got - hf_last_logits(lm, TEXTS)).abs().max() > 1e-3


def test_edit_position_is_respected(models):
    """Edits touch only their position's tokens: after the final norm an edit at an earlier span
    leaves the last token's logits alone; one layer earlier attention carries it forward."""
    lm = models["llama"]
    texts = ["the cat sat on the mat", "ed sheeran won gold in the race"]
    direction = torch.randn(lm.d_model, generator=torch.Generator().manual_seed(7))
    plain = interp.logits_under(lm, texts, [])
    at_last_layer_early_token = interp.logits_under(
        lm, texts, AddDirection(direction, layers=lm.n_layers, position=Span("the"), scale=5.0))
    assert (at_last_layer_early_token - plain).abs().max() < 1e-6  # after the final norm nothing mixes tokens
    earlier_layer = interp.logits_under(lm, texts, AddDirection(direction, layers=1, position=Span("the"), scale=5.0))
    assert (earlier_layer - plain).abs().max() > 1e-3  # attention carries it to the last token
    read_span = interp.logits_under(lm, texts, AddDirection(direction, layers=lm.n_layers, position=Span("the"),
                                                            scale=5.0), read=Span("the", reduce="last"))
    assert (read_span - interp.logits_under(lm, texts, [], read=Span("the", reduce="last"))).abs().max() > 1e-3


def test_bert_masked_lm_logits_under_intervention(models):
    lm = models["bert"]
    u = lm.model.get_output_embeddings().weight.detach()[10]
    plain = interp.logits_under(lm, TEXTS, [])
    assert (plain - hf_last_logits(lm, TEXTS)).abs().max() < 1e-5
    edited = interp.logits_under(lm, TEXTS, AddDirection(u, layers=1, scale=4.0))
    assert (edited - plain).abs().max() > 1e-3


def test_bad_interventions(models):
    lm = models["llama"]
    with pytest.raises(interp.InterpInputError, match=r"expected \(32,\)"):
        interp.logits_under(lm, TEXTS, AddDirection(torch.ones(5), layers=1))
    with pytest.raises(interp.InterpInputError, match="non-zero"):
        interp.logits_under(lm, TEXTS, ProjectOut(torch.zeros(32), layers=1))
    with pytest.raises(interp.InterpInputError, match="out of range"):
        interp.logits_under(lm, TEXTS, Steer(torch.ones(32), layers=9))
    with pytest.raises(interp.InterpInputError, match="bad intervention"):
        interp.logits_under(lm, TEXTS, ["add"])


def perturbed_copy(path, pattern: str, seed: int = 0):
    """The model at ``path`` loaded again, with every parameter whose name contains ``pattern``
    shifted by noise: a stand-in for a finetuned checkpoint that changed only those weights."""
    donor = interp.load_model(path)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in donor.model.named_parameters():
            if pattern in name:
                param.add_(0.5 * torch.randn(param.shape, generator=g))
    return donor


@pytest.mark.parametrize("side", ["left", "right"])
def test_patching_every_token_after_the_only_changed_block_gives_the_donors_logits(models, tiny_dirs, side):
    """A donor that differs from the run model in block 0 only: its residual stream after block 0
    (every token) patched in makes the run model compute the donor's logits; patched at the
    embeddings (which both share) it changes nothing."""
    lm = models["llama"]
    donor = perturbed_copy(tiny_dirs["llama"], "layers.0.")
    lm.tokenizer.padding_side = donor.tokenizer.padding_side = side
    plain = interp.logits_under(lm, TEXTS, [], batch_size=2)
    want = interp.logits_under(donor, TEXTS, [], batch_size=2)
    assert (want - plain).abs().max() > 1e-2
    after_block0 = interp.logits_under(lm, TEXTS, Patch(donor, layers=1), batch_size=2)
    assert (after_block0 - want).abs().max() < 1e-4
    at_embeddings = interp.logits_under(lm, TEXTS, Patch(donor, layers=0), batch_size=2)
    assert (at_embeddings - plain).abs().max() < 1e-5


def test_patching_respects_its_tokens_and_layers(models, tiny_dirs):
    """After the final norm only the patched token's own logits move: the last token patched
    gives the donor's logits, an earlier span gives the run model's; the same span one layer
    earlier reaches the last token through attention."""
    lm = models["llama"]
    lm.tokenizer.padding_side = "left"
    donor = perturbed_copy(tiny_dirs["llama"], "mlp", seed=1)
    texts = ["the cat sat on the mat", "ed sheeran won gold in the race"]
    plain, want = interp.logits_under(lm, texts, []), interp.logits_under(donor, texts, [])
    n = lm.n_layers
    last = interp.logits_under(lm, texts, Patch(donor, layers=n, position="last"))
    assert (last - want).abs().max() < 1e-4
    early_span = interp.logits_under(lm, texts, Patch(donor, layers=n, position=Span("the")))
    assert (early_span - plain).abs().max() < 1e-6
    earlier_layer = interp.logits_under(lm, texts, Patch(donor, layers=1, position=Span("the")))
    assert (earlier_layer - plain).abs().max() > 1e-3


def test_bad_patches(models, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    lm = models["llama"]
    with pytest.raises(interp.InterpInputError, match="donor must be a LoadedModel"):
        interp.logits_under(lm, TEXTS, Patch(lm.model, layers=1))
    wider = LlamaForCausalLM(LlamaConfig(**{**lm.config.to_dict(), "hidden_size": 64, "head_dim": 16}))
    wider.save_pretrained(tmp_path / "wider")
    lm.tokenizer.save_pretrained(tmp_path / "wider")
    with pytest.raises(interp.InterpInputError, match="d_model 64"):
        interp.logits_under(lm, TEXTS, Patch(interp.load_model(str(tmp_path / "wider")), layers=1))
    other_words = interp.load_model(lm.name, tokenizer=make_tokenizer("bert"))  # same words, another template
    with pytest.raises(interp.InterpInputError, match="another tokenizer"):
        interp.logits_under(lm, TEXTS, Patch(other_words, layers=1))
    with pytest.raises(interp.InterpInputError, match="out of range"):
        interp.logits_under(lm, TEXTS, Patch(lm, layers=9))


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_residuals_under_no_intervention_are_the_residuals(models, kind, side):
    lm = models[kind]
    lm.tokenizer.padding_side = side
    got = interp.residuals_under(lm, TEXTS, [], layers=list(range(lm.n_layers + 1)), batch_size=2)
    want = interp.residuals(lm, TEXTS, layers=None, batch_size=2)
    assert got.shape == want.shape and (got - want).abs().max() < 1e-5


def test_residuals_under_an_edit_or_a_patch(models, tiny_dirs):
    """An added direction shows at its own layer's reading and not before; a donor differing in
    block 0 only, patched after block 0, gives the donor's residual stream at every later layer."""
    lm = models["llama"]
    lm.tokenizer.padding_side = "left"
    n = lm.n_layers
    direction = torch.randn(lm.d_model, generator=torch.Generator().manual_seed(3))
    plain = interp.residuals_under(lm, TEXTS, [], layers=[0, 1, n])
    edited = interp.residuals_under(lm, TEXTS, AddDirection(direction, layers=1, scale=2.0), layers=[0, 1, n])
    assert (edited[:, 0] - plain[:, 0]).abs().max() < 1e-6
    assert (edited[:, 1] - plain[:, 1] - 2.0 * direction).abs().max() < 1e-5
    assert (edited[:, 2] - plain[:, 2]).abs().max() > 1e-3
    donor = perturbed_copy(tiny_dirs["llama"], "layers.0.")
    layers = list(range(1, n + 1))
    patched = interp.residuals_under(lm, TEXTS, Patch(donor, layers=1), layers=layers)
    assert (patched - interp.residuals(donor, TEXTS, layers=layers)).abs().max() < 1e-4


@pytest.mark.parametrize("side", ["left", "right"])
def test_token_ids_read_as_their_text_does(models, tiny_dirs, side):
    """Token-id lists are used as given: the text's own ids give the text's logits and residuals,
    with and without a patch; ids with a token left out give other logits (nothing is added)."""
    lm = models["llama"]
    lm.tokenizer.padding_side = side
    ids = [lm.tokenizer(t)["input_ids"] for t in TEXTS]
    donor = perturbed_copy(tiny_dirs["llama"], "mlp", seed=2)
    for edits in ([], [Patch(donor, layers=1, position="last")]):
        from_text = interp.logits_under(lm, TEXTS, edits, batch_size=2)
        assert (interp.logits_under(lm, ids, edits, batch_size=2) - from_text).abs().max() < 1e-5
        acts = interp.residuals_under(lm, ids, edits, layers=[1, 2], batch_size=2)
        assert (acts - interp.residuals_under(lm, TEXTS, edits, layers=[1, 2], batch_size=2)).abs().max() < 1e-5
    no_bos = interp.logits_under(lm, [x[1:] for x in ids], [], batch_size=2)
    plain = interp.logits_under(lm, TEXTS, [], batch_size=2)
    assert ids[0][0] == lm.tokenizer.bos_token_id and (no_bos - plain).abs().max() > 1e-3


def test_bad_token_ids(models):
    lm = models["llama"]
    ids = lm.tokenizer(TEXTS[0])["input_ids"]
    with pytest.raises(interp.InterpInputError, match="need texts, not token ids"):
        interp.logits_under(lm, [ids], [], read=Span("the"))
    with pytest.raises(interp.InterpInputError, match="outside the model's vocabulary"):
        interp.logits_under(lm, [ids, [10 ** 6]], [])
    with pytest.raises(interp.InterpInputError, match="input 1 is neither a string nor"):
        interp.logits_under(lm, [ids, TEXTS[0]], [])
    with pytest.raises(interp.InterpInputError, match="input 0 is neither"):
        interp.logits_under(lm, [[]], [])
