"""``interp.load_model(device_map=...)`` for models split over several GPUs. On CPU every map
puts everything on "cpu", so these check the plumbing: maps go through ``from_pretrained``,
accelerate's dispatch hooks (which move tensors between GPUs) run inside the readers with the
numbers of a plain load, and each layer's result is moved to the embedding's device before
the layers are stacked."""
import pytest
import torch

import interp
from interp.backends import get_backend
from interp.batching import batches
from interp.loading import LoadedModel
from interp.positions import Last
from tests.interp.fixtures import TEXTS

PER_MODULE = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu",
              "model.layers.1": "cpu", "model.norm": "cpu", "lm_head": "cpu"}
MAPS = {"cpu": "cpu", "auto": "auto", "root": {"": "cpu"}, "per-module": PER_MODULE}


@pytest.fixture(scope="module")
def llama(tiny_dirs):
    return tiny_dirs["llama"], interp.load_model(tiny_dirs["llama"])


@pytest.mark.parametrize("name", MAPS)
def test_a_device_mapped_model_reads_the_same_residuals(llama, name):
    path, plain = llama
    lm = interp.load_model(path, device_map=MAPS[name])
    assert lm.device == torch.device("cpu") and lm.devices == {torch.device("cpu")}
    for backend in ("hooks", "nnsight"):
        assert torch.equal(interp.residuals(lm, TEXTS, backend=backend), interp.residuals(plain, TEXTS))


def test_readers_run_through_accelerate_dispatch_hooks(llama):
    from accelerate import dispatch_model

    path, plain = llama
    lm = interp.load_model(path, device_map=PER_MODULE)
    dispatch_model(lm.model, device_map=PER_MODULE, force_hooks=True)  # what a multi-GPU map installs
    assert type(lm.blocks[1]._hf_hook).__name__ == "AlignDevicesHook"
    for backend in ("hooks", "nnsight"):
        assert torch.equal(interp.residuals(lm, TEXTS, backend=backend, layers=[0, 1, 2]),
                           interp.residuals(plain, TEXTS, layers=[0, 1, 2]))
    assert torch.equal(interp.logits_under(lm, TEXTS, []), interp.logits_under(plain, TEXTS, []))


@pytest.mark.parametrize("backend", ["hooks", "nnsight"])
def test_layers_are_gathered_on_the_embedding_device_before_stacking(llama, backend, monkeypatch):
    _, lm = llama
    batch = next(iter(batches(lm, TEXTS[:2], Last(), None)))
    # Stand-in for an embedding on another device than the blocks: results must end up there.
    monkeypatch.setattr(LoadedModel, "device", property(lambda self: torch.device("meta")))
    out = get_backend(backend)(lm, batch, [0, 1, 2])
    assert out.device.type == "meta" and out.shape == (2, 3, lm.d_model)


def test_device_map_errors_are_one_line(llama, monkeypatch):
    path, plain = llama
    with pytest.raises(interp.InterpInputError, match="either device"):
        interp.load_model(path, device="cpu", device_map="cpu")
    with pytest.raises(interp.InterpInputError, match="in-memory model"):
        interp.load_model(plain.model, tokenizer=plain.tokenizer, device_map="cpu")
    with pytest.raises(interp.InterpInputError, match="cannot place model .* device_map 'nowhere'") as err:
        interp.load_model(path, device_map="nowhere")
    assert "\n" not in str(err.value)
    monkeypatch.setattr(LoadedModel, "devices", property(lambda self: {torch.device("cpu"), torch.device("meta")}))
    split = interp.load_model(path)
    with pytest.raises(interp.InterpInputError, match="transformer_lens backend needs the model on one device"):
        interp.residuals(split, TEXTS, backend="transformer_lens")
