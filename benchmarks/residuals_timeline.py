"""Per-batch timeline of one ``interp.residuals`` call: when the host launched each batch's
forward and when the GPU ran it. It answers whether the loop is bound by the GPU or by the
host launching kernels, and where the host's time between forwards goes.

    python benchmarks/residuals_timeline.py --batch-size 256      # on a GPU (same model and texts as bench_residuals)
    python benchmarks/residuals_timeline.py --tiny --device cpu --n 64   # smoke test (no GPU times)

The summary splits the call's host time: before the first launch (tokenizing, planning, the first
batch's padding), launching forwards, between launches (of which padding the next batch), and
after the last launch (waiting for the GPU and the copy to the host). Columns: the host's launch of batch k (start..end, seconds from the call's start); the GPU's
run of it (CUDA events recorded just before and after the launch); the GPU's idle time before
it; and the lag, GPU end minus host launch end. A lag near 0 on every batch means the GPU
finished each batch as soon as the host had launched it: the loop is bound by the host.
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import interp  # noqa: E402
from bench_residuals import add_setup_arguments, make_model, statements, sync  # noqa: E402

residuals_module = importlib.import_module("interp.residuals")
batching_module = importlib.import_module("interp.batching")


class Recorder:
    """Wraps the hooks backend so every batch's launch is timed on the host and on the GPU."""

    def __init__(self, cuda: bool):
        self.cuda, self.batches, self.collating = cuda, [], []
        self.capture = residuals_module.get_backend("hooks")
        self.collate = batching_module.collate

    def timed_collate(self, *args, **kwargs):
        start = time.perf_counter()
        batch = self.collate(*args, **kwargs)
        self.collating.append(time.perf_counter() - start)
        return batch

    def event(self):
        if not self.cuda:
            return None
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def __call__(self, model, batch, keep):
        host_start, gpu_start = time.perf_counter(), self.event()
        out = self.capture(model, batch, keep)
        gpu_end, host_end = self.event(), time.perf_counter()
        self.batches.append((host_start, host_end, gpu_start, gpu_end))
        return out

    def call(self, lm, texts, batch_size: int, device: str) -> dict:
        self.batches, self.collating = [], []
        sync(device)
        origin, start = self.event(), time.perf_counter()
        interp.residuals(lm, texts, position="last", backend="hooks", batch_size=batch_size)
        sync(device)
        total = time.perf_counter() - start

        def gpu(event):
            return origin.elapsed_time(event) / 1e3 if origin is not None else float("nan")
        rows = [(h0 - start, h1 - start, gpu(g0), gpu(g1)) for h0, h1, g0, g1 in self.batches]
        return {"total": total, "rows": rows, "collate": self.collating}


def summary(call: dict, cuda: bool) -> str:
    rows, total = call["rows"], call["total"]
    launch = sum(h1 - h0 for h0, h1, _, _ in rows)
    between = sum(rows[k + 1][0] - rows[k][1] for k in range(len(rows) - 1))
    text = (f"total {total:.3f} s: before the first launch {rows[0][0]:.3f}, launching forwards {launch:.3f}, "
            f"host work between launches {between:.3f} (padding batches {sum(call['collate'][1:]):.3f}), "
            f"after the last launch {total - rows[-1][1]:.3f}")
    if cuda:
        busy = sum(g1 - g0 for _, _, g0, g1 in rows)
        lag = statistics.median(g1 - h1 for _, h1, _, g1 in rows)
        text += (f"; GPU from first batch start to last batch end {busy:.3f}, tail after the GPU's last batch "
                 f"{total - rows[-1][3]:.3f}; median lag (GPU end - launch end) {lag * 1e3:.1f} ms")
    return text


def table(call: dict) -> str:
    lines = ["| batch | host launch (s) | GPU run (s) | GPU idle before (ms) | lag (ms) |", "|---:|---|---|---:|---:|"]
    previous_end = 0.0
    for k, (h0, h1, g0, g1) in enumerate(call["rows"]):
        lines.append(f"| {k} | {h0:.4f}..{h1:.4f} | {g0:.4f}..{g1:.4f} | {(g0 - previous_end) * 1e3:.1f} | "
                     f"{(g1 - h1) * 1e3:.1f} |")
        previous_end = g1
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_setup_arguments(parser)
    parser.add_argument("--calls", type=int, default=5, help="timed calls (after two warm-ups); the median is shown")
    args = parser.parse_args(argv)

    cuda = args.device.startswith("cuda")
    model, tok = make_model("tiny" if args.tiny else "full", args.device, getattr(torch, args.dtype))
    lm = interp.load_model(model, tokenizer=tok)
    texts = statements(args.n, model.config.vocab_size)
    recorder = Recorder(cuda)
    residuals_module.get_backend = lambda name: recorder
    batching_module.collate = recorder.timed_collate
    for _ in range(2):
        recorder.call(lm, texts, args.batch_size, args.device)
    calls = sorted((recorder.call(lm, texts, args.batch_size, args.device) for _ in range(args.calls)),
                   key=lambda c: c["total"])
    median = calls[len(calls) // 2]
    print(f"{torch.cuda.get_device_name() if cuda else 'cpu'}, {args.n} statements, batch size {args.batch_size}; "
          f"call totals {[round(c['total'], 3) for c in calls]} s; the median call:\n")
    print(summary(median, cuda) + "\n")
    print(table(median))


if __name__ == "__main__":
    main()
