"""Throughput and peak GPU memory of ``interp.residuals`` against a bare HF forward pass and
TransformerLens ``run_with_cache`` with its default full cache.

A ~0.5B-parameter Qwen2 architecture (Qwen2.5-0.5B shapes, random weights, built from its
config: nothing downloads) reads the residual stream at all 25 layer indices, last token,
for 4096 synthetic statements. Every method gets the same length-sorted, padded batches
(tokenization is excluded from the baselines' time but included in ``interp.residuals``').

    python benchmarks/bench_residuals.py                 # on a GPU, prints a markdown table
    python benchmarks/bench_residuals.py --tiny --device cpu --n 64   # smoke test
    python benchmarks/bench_residuals.py --toy --device cpu --dtype float32 --skip-full-cache --pairs 4

Besides the table it prints the first ("cold") call of ``interp.residuals`` (hooks), made
before anything else runs on the model, and a breakdown of where its time goes.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import interp  # noqa: E402
from interp import masks  # noqa: E402
from interp.backends import get_backend, via_transformer_lens  # noqa: E402
from interp.batching import batches, encode  # noqa: E402
from interp.positions import Last  # noqa: E402

SPECIALS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]


def make_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + [f"w{i}" for i in range(vocab_size - len(SPECIALS))])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="[BOS] $A", special_tokens=[("[BOS]", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", bos_token="[BOS]",
                                   eos_token="[EOS]")


def make_model(size: str, device: str, dtype: torch.dtype):
    """size: "tiny" (2 layers, a smoke test), "toy" (24 layers at hidden size 64: host-side costs
    weigh, so it shows them on a CPU), "mid" (8 layers at hidden size 512, 8k vocabulary: minutes
    of CPU work where "full" takes much longer), or "full" (0.5B)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    if size == "tiny":
        cfg = Qwen2Config(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                          tie_word_embeddings=True)
    elif size == "toy":
        cfg = Qwen2Config(vocab_size=1000, hidden_size=64, intermediate_size=32, num_hidden_layers=24,
                          num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    elif size == "mid":
        cfg = Qwen2Config(vocab_size=8192, hidden_size=512, intermediate_size=2048, num_hidden_layers=8,
                          num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=4096,
                          tie_word_embeddings=True)
    else:  # Qwen2.5-0.5B shapes: 494M parameters
        cfg = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                          num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                          tie_word_embeddings=True, rope_theta=1_000_000.0)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(cfg)
    return model.to(dtype).eval(), make_tokenizer(cfg.vocab_size)


def statements(n: int, vocab_size: int, seed: int = 0) -> list[str]:
    """Synthetic statements of 6-30 words (real statements in this toolkit are that short)."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(6, 31, (n,), generator=g)
    words = torch.randint(0, vocab_size - len(SPECIALS), (int(lengths.sum()),), generator=g).tolist()
    out, at = [], 0
    for length in lengths.tolist():
        out.append(" ".join(f"w{w}" for w in words[at:at + length]))
        at += length
    return out


def sync(device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def hf_inputs(batch) -> dict:
    """The batch as one hands it to HF: the 2D padding mask, from which the model builds its own
    attention mask (interp hands the models it can the finished 4D mask: ``interp.masks``)."""
    return {**batch.inputs, "attention_mask": batch.padding_mask}


def hf_forward(lm, texts, batch_size, *, mode: str, ready_masks: bool = False):
    """Bare HF forward over pre-built batches. ``mode``: "floor" runs the base transformer alone,
    output discarded (the compute floor); "logits" is ``model(**batch)``, the CausalLM with its
    logits discarded; "hidden" adds ``output_hidden_states=True`` and gathers the last token of
    every hidden state to the CPU (what one writes by hand). ``ready_masks``: give the model
    interp's ready-made 4D masks instead of the 2D padding mask."""
    prepared = [(batch.inputs if ready_masks else hf_inputs(batch), batch)
                for batch in batches(lm, texts, Last(), batch_size)]
    n = lm.n_layers + 1

    def run():
        out = torch.empty(len(texts), n, lm.d_model) if mode == "hidden" else None
        with torch.inference_mode():
            for inputs, batch in prepared:
                if mode == "hidden":
                    hs = lm.model(**inputs, output_hidden_states=True).hidden_states
                    rows = torch.arange(len(batch.rows), device=lm.device)
                    last = batch.selection.index[:, 0]
                    out[batch.rows] = torch.stack([h[rows, last] for h in hs], 1).float().cpu()
                elif mode == "logits":
                    lm.model(**inputs)
                else:
                    lm.base_model(**inputs)
        return out
    return run


def hf_loop_tokenizing(lm, texts, batch_size):
    """What one writes by hand: tokenizer(padding=True) per batch (same length-sorted order),
    CausalLM forward with ``output_hidden_states=True``, last token gathered, moved to CPU."""
    tok = lm.tokenizer
    order = [i for b in batches(lm, texts, Last(), batch_size) for i in b.rows]
    n = lm.n_layers + 1

    def run():
        out = torch.empty(len(texts), n, lm.d_model)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                enc = tok([texts[i] for i in rows], padding=True, return_tensors="pt").to(lm.device)
                enc.pop("token_type_ids", None)
                hs = lm.model(**enc, output_hidden_states=True).hidden_states
                last = enc["attention_mask"].sum(1) - 1  # right padding
                index = torch.arange(len(rows), device=lm.device)
                out[rows] = torch.stack([h[index, last] for h in hs], 1).float().cpu()
        return out
    return run


def tl_full_cache(lm, texts, batch_size):
    """TransformerLens ``run_with_cache`` with the default full cache, then the last token of
    every residual hook gathered and moved to the CPU."""
    bridge = via_transformer_lens.bridge(lm)
    prepared = list(batches(lm, texts, Last(), batch_size))
    names = [via_transformer_lens.hook_name(lm, layer) for layer in range(lm.n_layers + 1)]

    def run():
        out = torch.empty(len(texts), len(names), lm.d_model)
        with torch.inference_mode():
            for batch in prepared:
                _, cache = bridge.run_with_cache(batch.inputs["input_ids"],
                                                 attention_mask=batch.padding_mask,
                                                 position_ids=batch.inputs["position_ids"])
                out[batch.rows] = torch.stack([batch.selection.reduce(cache[name]) for name in names], 1).cpu()
                del cache
        return out
    return run


def hooks_forward_only(lm, texts, batch_size, ready_masks: bool = True):
    """The hooks backend over pre-built batches, results left on the device: interp's GPU work
    without tokenizing, padding or the copy to the host (``ready_masks=False``: with 2D masks)."""
    prepared = [batch if ready_masks else dataclasses.replace(batch, inputs=hf_inputs(batch))
                for batch in batches(lm, texts, Last(), batch_size)]
    capture, layers = get_backend("hooks"), list(range(lm.n_layers + 1))

    def run():
        with torch.inference_mode():
            for batch in prepared:
                capture(lm, batch, layers)
    return run


def count_syncs(run, device: str) -> int | None:
    """Synchronizing CUDA calls made by ``run`` in this thread (``torch.cuda.set_sync_debug_mode``)."""
    if not device.startswith("cuda"):
        return None
    sync(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def without_ready_masks(run):
    """``run`` with ``interp.masks`` switched off: models get the 2D mask and build their own."""
    def wrapped():
        masks.ENABLED = False
        try:
            return run()
        finally:
            masks.ENABLED = True
    return wrapped


def timed_residuals(lm, texts, batch_size, device: str) -> dict:
    """One ``interp.residuals`` (hooks) call with its end timed apart on CUDA: after the last
    batch is queued, waiting for the GPU, then for the copy worker's last batches (what of the
    copy to the host is not hidden behind the forward passes). Keys: total, gpu_tail, copy_tail."""
    module = importlib.import_module("interp.residuals")  # the module, not the function
    original, times = module.StreamedRows.finish, {}

    def finish(rows):
        start = time.perf_counter()
        sync(device)
        synced = time.perf_counter()
        out = original(rows)
        times.update(gpu_tail=synced - start, copy_tail=time.perf_counter() - synced,
                     bytes=out.numel() * out.element_size())
        return out

    module.StreamedRows.finish = finish
    try:
        start = time.perf_counter()
        interp.residuals(lm, texts, position="last", backend="hooks", batch_size=batch_size)
        sync(device)
        times["total"] = time.perf_counter() - start
    finally:
        module.StreamedRows.finish = original
    return times


def tail_text(times: dict) -> str:
    if "copy_tail" not in times:
        return "no copy worker used (CPU)"
    return (f"after the last batch was queued: GPU tail {times['gpu_tail']:.3f} s, then the copy of the "
            f"{times['bytes'] / 1e6:.0f} MB result still to finish {times['copy_tail']:.3f} s")


def measure(run, device: str, repeats: int):
    """Median wall time over ``repeats`` after one warm-up, and peak memory of one run."""
    run()
    sync(device)
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        result = run()
        sync(device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else 0
    return statistics.median(times), peak, result


def paired_ratios(floor_run, run, device: str, pairs: int) -> list[float]:
    """floor time / method time, each pair measured back to back (alternating which goes first):
    on a shared host the absolute times drift by tens of percent between calls, and pairing
    keeps that drift out of the ratio."""
    ratios = []
    for i in range(pairs):
        times = {}
        for name, fn in ((("floor", floor_run), ("method", run)) if i % 2 == 0 else (("method", run), ("floor", floor_run))):
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            times[name] = time.perf_counter() - start
        ratios.append(times["floor"] / times["method"])
    return ratios


def add_setup_arguments(parser: argparse.ArgumentParser) -> None:
    """The model, texts and device options this benchmark shares with ``residuals_timeline.py``."""
    parser.add_argument("--n", type=int, default=4096, help="number of statements")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model, for a smoke test")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_setup_arguments(parser)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--toy", action="store_true",
                        help="24 layers at hidden size 64: the host-side costs, measurable on a CPU")
    parser.add_argument("--copy-worker", action="store_true",
                        help="use the CUDA path's copy worker on a CPU model too (to measure its host-side cost)")
    parser.add_argument("--skip-full-cache", action="store_true")
    parser.add_argument("--pairs", type=int, default=9, help="back-to-back floor/hooks pairs for the paired ratio")
    args = parser.parse_args(argv)

    dtype = getattr(torch, args.dtype)
    if args.copy_worker:
        module = importlib.import_module("interp.residuals")
        module.result_rows = module.StreamedRows
    model, tok = make_model("tiny" if args.tiny else "toy" if args.toy else "full", args.device, dtype)
    lm = interp.load_model(model, tokenizer=tok)
    texts = statements(args.n, model.config.vocab_size)
    n_params = sum(p.numel() for p in model.parameters())
    weights = torch.cuda.memory_allocated() if args.device.startswith("cuda") else 0
    n_tokens = sum(len(tok(t)["input_ids"]) for t in texts)
    cold = timed_residuals(lm, texts, args.batch_size, args.device)  # before anything else runs on the model
    print(f"# interp.residuals (backend=hooks), cold: {cold['total']:.3f} s", file=sys.stderr, flush=True)

    methods = {
        "HF forward, base model only (floor)": hf_forward(lm, texts, args.batch_size, mode="floor"),
        "HF forward, base model only, given interp's ready-made masks": hf_forward(
            lm, texts, args.batch_size, mode="floor", ready_masks=True),
        "HF forward, CausalLM, model(**batch)": hf_forward(lm, texts, args.batch_size, mode="logits"),
        "HF forward, CausalLM + output_hidden_states": hf_forward(lm, texts, args.batch_size, mode="hidden"),
        "HF loop tokenizing per batch, CausalLM + output_hidden_states": hf_loop_tokenizing(
            lm, texts, args.batch_size),
    }
    for backend in ("hooks", "nnsight", "transformer_lens"):
        methods[f"interp.residuals (backend={backend})"] = (
            lambda b=backend: interp.residuals(lm, texts, position="last", backend=b, batch_size=args.batch_size))
    if not args.skip_full_cache:
        methods["TransformerLens run_with_cache, full cache"] = tl_full_cache(lm, texts, args.batch_size)

    rows, results = [], {}
    for name, run in methods.items():
        seconds, peak, result = measure(run, args.device, args.repeats)
        rows.append((name, seconds, peak))
        results[name] = result
        print(f"# {name}: {seconds:.3f} s, peak {peak / 2**30:.2f} GiB", file=sys.stderr, flush=True)

    start = time.perf_counter()
    encode(lm, texts)
    tokenize_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in batches(lm, texts, Last(), args.batch_size):
        pass
    prepare_s = time.perf_counter() - start
    forward_s = measure(hooks_forward_only(lm, texts, args.batch_size), args.device, args.repeats)[0]
    warm = timed_residuals(lm, texts, args.batch_size, args.device)
    floor_run = methods["HF forward, base model only (floor)"]
    paired = paired_ratios(floor_run, methods["interp.residuals (backend=hooks)"], args.device, args.pairs)
    paired_forward = paired_ratios(floor_run, hooks_forward_only(lm, texts, args.batch_size), args.device, args.pairs)
    paired_bare = paired_ratios(methods["HF forward, CausalLM, model(**batch)"], methods["interp.residuals (backend=hooks)"],
                                args.device, args.pairs)
    hooks_run = methods["interp.residuals (backend=hooks)"]
    paired_masks = paired_ratios(without_ready_masks(hooks_run), hooks_run, args.device, args.pairs)
    syncs = {name: count_syncs(fn, args.device) for name, fn in (
        ("floor", floor_run), ("hooked forward over pre-built batches", hooks_forward_only(lm, texts, args.batch_size)),
        ("the same with 2D masks", hooks_forward_only(lm, texts, args.batch_size, ready_masks=False)))}
    reference = results["HF forward, CausalLM + output_hidden_states"]
    by_name = {name: seconds for name, seconds, _ in rows}
    floor = by_name["HF forward, base model only (floor)"]
    hf = by_name["HF forward, CausalLM + output_hidden_states"]
    bare = by_name["HF forward, CausalLM, model(**batch)"]
    loop = by_name["HF loop tokenizing per batch, CausalLM + output_hidden_states"]
    full = by_name.get("TransformerLens run_with_cache, full cache")
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"\n{device_name}, Qwen2 architecture with {n_params / 1e6:.0f}M parameters (random weights), "
          f"{args.dtype}, {args.n} statements ({n_tokens} tokens), all {lm.n_layers + 1} layer indices, last token, "
          f"batch size {args.batch_size}, median of {args.repeats} runs after a warm-up; "
          f"weights take {weights / 2**30:.2f} GiB.\n")
    hooks = by_name["interp.residuals (backend=hooks)"]
    print(f"interp.residuals (backend=hooks): warm {hooks:.3f} s (median, {floor / hooks:.2f}x the floor); "
          f"cold {cold['total']:.3f} s ({floor / cold['total']:.2f}x; the first call in the process, before any "
          f"other forward, so it also pays lazy initialisation such as CUDA's).\n")
    print(f"Paired (floor and hooks back to back, {args.pairs} pairs): floor/hooks median "
          f"{statistics.median(paired):.2f}x (min {min(paired):.2f}, max {max(paired):.2f}); floor / forward with "
          f"hooks over pre-built batches (no tokenizing, no copy to the host) {statistics.median(paired_forward):.2f}x "
          f"(min {min(paired_forward):.2f}, max {max(paired_forward):.2f}); model(**batch) / hooks "
          f"{statistics.median(paired_bare):.2f}x (min {min(paired_bare):.2f}, max {max(paired_bare):.2f}); "
          f"interp with 2D masks / interp with ready-made masks {statistics.median(paired_masks):.2f}x "
          f"(min {min(paired_masks):.2f}, max {max(paired_masks):.2f}).\n")
    if syncs["floor"] is not None:
        print("Synchronizing CUDA calls in one pass over the batches (main thread): "
              + ", ".join(f"{name} {count}" for name, count in syncs.items()) + ".\n")
    print(f"Breakdown (hooks): host-side work alone: tokenizing {tokenize_s:.3f} s, tokenizing + padding + gather "
          f"plans {prepare_s:.3f} s (padding overlaps the GPU after the first batch; the first two HF rows get "
          f"pre-built batches for free); forward with hooks over pre-built batches, results left on "
          f"the device {forward_s:.3f} s (floor {floor:.3f} s); one warm call {warm['total']:.3f} s, "
          f"{tail_text(warm)}; "
          f"cold call {tail_text(cold)}.\n")
    print("| method | time (s) | statements/s | x floor | x model(**batch) | x HF + hidden states | x HF hand loop "
          "| x TL full cache | peak GPU mem (GiB) | max abs diff vs HF |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, seconds, peak in rows:
        result = results[name]
        diff = "" if result is None else f"{(result - reference).abs().max().item():.1e}"
        vs_full = f"{full / seconds:.2f}" if full else ""
        print(f"| {name} | {seconds:.3f} | {args.n / seconds:,.0f} | {floor / seconds:.2f} | {bare / seconds:.2f} "
              f"| {hf / seconds:.2f} | {loop / seconds:.2f} | {vs_full} | {peak / 2**30:.2f} | {diff} |")


if __name__ == "__main__":
    main()
