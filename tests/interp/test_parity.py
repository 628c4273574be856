"""All backends equal HF hidden_states (each text run alone, unpadded) within 1e-5 in fp32,
on padded batches of uneven lengths, left and right padding, for every position type."""
import pytest
import torch

import interp
from interp.positions import CharRange, Indices, Last, Mean, Span
from tests.interp.fixtures import KINDS, TEXTS, hf_hidden_states

BACKENDS = ("hooks", "nnsight", "transformer_lens")


def word_spans(text):
    spans, at = [], 0
    for word in text.split(" "):
        spans.append((at, at + len(word)))
        at += len(word) + 1
    return spans


def chars_to_tokens(text, start, end):
    """Token indices (word i is token i + 1) of the words overlapping characters [start, end)."""
    return [i + 1 for i, (s, e) in enumerate(word_spans(text)) if s < end and e > start]


def reduce(states, tokens, how="mean"):
    tokens = {"last": tokens[-1:], "first": tokens[:1]}.get(how, tokens)
    return states[:, tokens].mean(1)


# (position, reference: (text, index, hf states [L+1, seq, d]) -> [L+1, d]); texts are TEXTS[:4] + TEXTS[4]
POSITIONS = {
    "last": ("last", lambda t, i, h: h[:, -1]),
    "mean": ("mean", lambda t, i, h: h.mean(1)),
    "Last()": (Last(), lambda t, i, h: h[:, -1]),
    "Mean()": (Mean(), lambda t, i, h: h.mean(1)),
    "span-mean": (Span("the", reduce="mean", occurrence=-1),
                  lambda t, i, h: reduce(h, chars_to_tokens(t, t.rfind("the"), t.rfind("the") + 3))),
    "span-dict-last": ({"substring": "the", "reduce": "last"},
                       lambda t, i, h: reduce(h, chars_to_tokens(t, t.find("the"), t.find("the") + 3), "last")),
    "chars": (CharRange(0, 7), lambda t, i, h: reduce(h, chars_to_tokens(t, 0, 7))),
    "chars-first": (CharRange(2, 12, reduce="first"), lambda t, i, h: reduce(h, chars_to_tokens(t, 2, 12), "first")),
    "indices": (Indices((0, 2, -1)), lambda t, i, h: h[:, [0, 2, h.shape[1] - 1]].mean(1)),
    "index-int": (1, lambda t, i, h: h[:, 1]),
    "indices-per-text": (Indices(tuple((i % 3, -1 - i % 2) for i in range(5)), reduce="last"),
                         lambda t, i, h: h[:, -1 - i % 2]),
}
SPAN_TEXTS = [t if "the" in t else t + " the" for t in TEXTS]  # every text has "the" for the span case


@pytest.fixture(scope="module")
def models(tiny_dirs):
    loaded = {kind: interp.load_model(path) for kind, path in tiny_dirs.items()}
    refs = {kind: [hf_hidden_states(lm, t) for t in SPAN_TEXTS] for kind, lm in loaded.items()}
    return loaded, refs


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("side", ["left", "right"])
def test_backends_match_hf_hidden_states(models, kind, backend, side):
    loaded, refs = models
    lm = loaded[kind]
    lm.tokenizer.padding_side = side
    for name, (position, reference) in POSITIONS.items():
        got = interp.residuals(lm, SPAN_TEXTS, position=position, backend=backend, batch_size=2)
        want = torch.stack([reference(t, i, refs[kind][i]) for i, t in enumerate(SPAN_TEXTS)])
        assert got.shape == (len(SPAN_TEXTS), lm.n_layers + 1, lm.d_model) and got.dtype == torch.float32
        assert got.device.type == "cpu"
        err = (got - want).abs().max().item()
        assert err < 1e-5, f"{kind} {backend} {side} padding, position {name}: max error {err:.2e}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_layer_subset_and_default_batching(models, backend):
    loaded, refs = models
    lm = loaded["llama"]
    lm.tokenizer.padding_side = "left"
    got = interp.residuals(lm, SPAN_TEXTS, layers=[2, 0, -2], backend=backend)
    want = torch.stack([h[[2, 0, 1], -1] for h in refs["llama"]])
    assert (got - want).abs().max().item() < 1e-5


def test_padding_side_and_batch_size_do_not_change_numbers(models):
    """Sorting by length and batching must return rows in the caller's order."""
    lm = models[0]["gpt2"]
    runs = []
    for side, batch_size in [("left", 1), ("right", 2), ("left", 3), ("right", None)]:
        lm.tokenizer.padding_side = side
        runs.append(interp.residuals(lm, SPAN_TEXTS, position="mean", batch_size=batch_size))
    for run in runs[1:]:
        assert (run - runs[0]).abs().max().item() < 1e-5


def test_transformer_lens_leaves_the_hf_model_untouched(models):
    lm = models[0]["llama"]
    attention = lm.model.config._attn_implementation
    interp.residuals(lm, SPAN_TEXTS[:2], backend="transformer_lens")
    assert lm.model.config._attn_implementation == attention
    assert not any("bridge" in type(m).__name__.lower() for m in lm.model.modules())


def test_transformer_lens_sees_in_place_weight_updates(models, tiny_dirs):
    lm = interp.load_model(tiny_dirs["gpt2"])
    before = interp.residuals(lm, SPAN_TEXTS[:2], backend="transformer_lens")
    with torch.no_grad():
        lm.blocks[0].mlp.c_proj.weight.mul_(2.0)
    hooks = interp.residuals(lm, SPAN_TEXTS[:2], backend="hooks")
    tl = interp.residuals(lm, SPAN_TEXTS[:2], backend="transformer_lens")
    assert (tl - hooks).abs().max().item() < 1e-5
    assert (tl - before).abs().max().item() > 1e-3


def test_streamed_rows_keep_the_callers_order(models, monkeypatch):
    """The CUDA path (a worker thread copies each batch to the host and scatters it into the
    caller's order), run here on CPU tensors, gives the same rows as the plain one."""
    import importlib

    residuals_module = importlib.import_module("interp.residuals")  # the module, not the function
    lm = models[0]["llama"]
    want = interp.residuals(lm, SPAN_TEXTS, batch_size=2)
    monkeypatch.setattr(residuals_module, "result_rows", residuals_module.StreamedRows)
    monkeypatch.setattr(residuals_module, "QUEUE_DEPTH", 1)  # the worker lags: add() has to wait
    got = interp.residuals(lm, SPAN_TEXTS, batch_size=2)
    assert got.dtype == torch.float32 and got.device.type == "cpu" and not got.is_inference()
    assert torch.equal(got, want)


def test_streamed_rows_stop_with_the_callers_loop(models, monkeypatch):
    """An error in a forward pass reaches the caller, and the copy worker ends with it."""
    import importlib

    residuals_module = importlib.import_module("interp.residuals")
    made = []
    monkeypatch.setattr(residuals_module, "result_rows",
                        lambda shape, device: made.append(residuals_module.StreamedRows(shape, device)) or made[-1])
    calls = []

    def failing(lm, batch, layers):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom in the forward")
        return torch.zeros(len(batch.rows), len(layers), lm.d_model)

    monkeypatch.setattr(residuals_module, "get_backend", lambda name: failing)
    with pytest.raises(RuntimeError, match="boom"):
        interp.residuals(models[0]["llama"], SPAN_TEXTS, batch_size=2)
    made[0].done.result(timeout=5)  # the worker finished rather than waiting forever


def test_streamed_rows_report_a_worker_error(monkeypatch):
    """A failure in the copy worker is raised in the caller, not swallowed or hung on."""
    import importlib

    residuals_module = importlib.import_module("interp.residuals")
    monkeypatch.setattr(residuals_module, "QUEUE_DEPTH", 1)
    rows = residuals_module.StreamedRows((4, 2, 3), torch.device("cpu"))

    class Batch:
        rows = [0, 1]

    rows.add(Batch(), torch.zeros(2, 5, 3))  # wrong shape: the worker's copy fails
    with pytest.raises(Exception, match="shape"):  # the worker's own error, not a hang or a stand-in
        for _ in range(3):
            rows.add(Batch(), torch.zeros(2, 2, 3))
        rows.finish()


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_fast_token_ids_match_the_tokenizers_own_call(models, kind):
    """``encode`` takes ids from the Rust backend directly; they must be the tokenizer's own."""
    from interp.batching import encode, ids_only

    lm = models[0][kind]
    texts = SPAN_TEXTS + ["  leading spaces", "unicode café ünïcödé", lm.tokenizer.eos_token + " after a special"]
    want = lm.tokenizer(texts)["input_ids"]
    fast = ids_only(lm.tokenizer, texts)
    assert fast is not None and [fast.ids_of(i) for i in range(len(texts))] == want
    assert fast.lengths.tolist() == [len(ids) for ids in want]
    encoded = encode(lm, texts)
    assert [encoded.ids_of(i) for i in range(len(texts))] == want


def test_fast_token_ids_step_aside_when_the_backend_truncates(models):
    from interp.batching import ids_only

    tok = models[0]["llama"].tokenizer
    tok._tokenizer.enable_truncation(max_length=3)
    try:
        fast = ids_only(tok, SPAN_TEXTS)
        assert fast is None or [fast.ids_of(i) for i in range(len(SPAN_TEXTS))] == tok(SPAN_TEXTS)["input_ids"]
    finally:
        tok._tokenizer.no_truncation()
