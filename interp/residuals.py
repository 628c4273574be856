"""Read the residual stream at every layer.

Index convention (same as HF ``hidden_states``): 0 is the embedding output, ``i + 1`` the
output of block ``i``; for decoder models the last entry is taken after the final norm,
exactly as HF reports it.
"""
from __future__ import annotations

import math
from concurrent.futures import Future, ThreadPoolExecutor

import torch
from tqdm.auto import tqdm

from interp.backends import get_backend
from interp.batching import batches, check_texts
from interp.errors import InterpInputError
from interp.loading import LoadedModel
from interp.positions import as_position


def check_layers(layers, n_layers: int) -> list[int]:
    """Requested indices into the ``n_layers + 1`` axis (negative ones count from the end)."""
    if layers is None:
        return list(range(n_layers + 1))
    layers = [layers] if isinstance(layers, int) else list(layers)
    if not layers:
        raise InterpInputError("layers is empty; expected None (all) or a list of ints in [0, n_layers]")
    for layer in layers:
        if isinstance(layer, bool) or not isinstance(layer, int) or not -(n_layers + 1) <= layer <= n_layers:
            raise InterpInputError(f"layer {layer!r} is out of range; expected an int in [0, {n_layers}]")
    return [layer % (n_layers + 1) for layer in layers]


def residuals(model: LoadedModel, texts, *, position="last", layers=None, backend: str = "hooks",
              batch_size: int | None = None, progress: bool = False, cache=None) -> torch.Tensor:
    """Residual-stream vectors ``[n_texts, len(layers), d_model]`` (float32, on CPU).

    ``position``: "last", "mean", or a selector from ``interp.positions`` (``Span``,
    ``CharRange``, ``Indices``; dict and int shorthands work too). ``layers``: indices into the
    ``n_layers + 1`` axis (default: all). ``backend``: "hooks", "nnsight" or
    "transformer_lens"; all return the same numbers. ``batch_size``: texts per batch
    (default: as many as fit a token budget, texts sorted by length). ``cache``: a directory
    or ``ActivationCache``; results are then read from and written to disk.
    """
    if not isinstance(model, LoadedModel):
        raise InterpInputError(f"model must be a LoadedModel from interp.load_model, not {type(model).__name__}")
    texts = check_texts(texts)
    position = as_position(position)
    keep = check_layers(layers, model.n_layers)
    capture = get_backend(backend)
    if cache is not None:
        from interp.cache import as_cache

        return as_cache(cache).get_or_compute(
            model, texts, position, keep,
            lambda: _compute(model, texts, position, keep, capture, batch_size, progress))
    return _compute(model, texts, position, keep, capture, batch_size, progress)


FLUSH_BYTES = 256 * 2**20  # chunked fallback: results wait on the device up to this size
DEVICE_SHARE = 0.25  # gather the whole result on the device if it takes at most this share of free memory
PIN_BYTES = 4 * 2**30  # larger outputs stay pageable: page-locking that much RAM would starve the host


def to_host(values: torch.Tensor) -> torch.Tensor:
    """Device -> CPU through page-locked memory: copies into pageable memory ran at ~1 GB/s
    on an H200 host, pinned ones at full PCIe speed."""
    if values.device.type != "cuda":
        return values.cpu()
    try:
        host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
    except RuntimeError:
        return values.cpu()
    host.copy_(values)
    return host


def host_output(shape: tuple) -> torch.Tensor:
    """The tensor handed to the caller, page-locked (up to ``PIN_BYTES``) so that one
    device copy fills it at full PCIe speed."""
    if math.prod(shape) * 4 <= PIN_BYTES:
        try:
            return torch.empty(shape, pin_memory=True)
        except RuntimeError:  # no page-locked memory to be had: pageable still works, slower
            pass
    return torch.empty(shape)


def output_soon(shape: tuple) -> Future:
    """``host_output`` in a thread: page-locking hundreds of MB takes the host a while, which
    the forward passes hide (torch releases the GIL meanwhile)."""
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(host_output, shape)
    pool.shutdown(wait=False)
    return future


def fits_on_device(shape: tuple, device: torch.device) -> bool:
    """Whether a float32 ``shape`` takes at most ``DEVICE_SHARE`` of the memory free on ``device``
    (free to the driver plus what torch's allocator holds unused)."""
    free, _ = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return math.prod(shape) * 4 <= DEVICE_SHARE * free


class HostRows:
    """CPU models: each batch's rows written straight into the output."""

    def __init__(self, out: torch.Tensor):
        self.out = out

    def add(self, batch, values: torch.Tensor) -> None:
        self.out[batch.rows] = values

    def finish(self) -> torch.Tensor:
        return self.out


class DeviceRows:
    """CUDA: rows scattered into their final places on the device, without syncing, so the
    host does no per-row work and the result crosses PCIe once, into page-locked memory."""

    def __init__(self, shape: tuple, device: torch.device):
        self.buffer = torch.empty(shape, device=device)
        self.out = output_soon(shape)  # after the device allocation: the driver serialises the two

    def add(self, batch, values: torch.Tensor) -> None:
        device = self.buffer.device
        self.buffer.index_copy_(0, batch.index.to(device, non_blocking=True), values.to(device, non_blocking=True))

    def finish(self) -> torch.Tensor:
        out = self.out.result()
        out.copy_(self.buffer)
        return out


class ChunkedRows:
    """CUDA, result too large for the device: flushed to the host every ``FLUSH_BYTES``."""

    def __init__(self, out: torch.Tensor):
        self.out = out
        self.pending: list[tuple[list[int], torch.Tensor]] = []
        self.bytes = 0

    def add(self, batch, values: torch.Tensor) -> None:
        self.pending.append((batch.rows, values))
        self.bytes += values.numel() * values.element_size()
        if self.bytes > FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            rows = [r for rows, _ in self.pending for r in rows]
            self.out[rows] = to_host(torch.cat([values for _, values in self.pending]))
            self.pending.clear()
            self.bytes = 0

    def finish(self) -> torch.Tensor:
        self.flush()
        return self.out


def result_rows(shape: tuple, device: torch.device):
    """Where results go, decided (and device memory taken) before the first forward: the
    driver blocks memory calls while it page-locks the output."""
    if device.type != "cuda":
        return HostRows(torch.empty(shape))
    if fits_on_device(shape, device):
        return DeviceRows(shape, device)
    return ChunkedRows(torch.empty(shape))


def _compute(model, texts, position, keep, capture, batch_size, progress) -> torch.Tensor:
    planned = batches(model, texts, position, batch_size)  # bad inputs fail here, before any allocation
    rows = result_rows((len(texts), len(keep), model.d_model), model.device)
    with torch.inference_mode():
        for batch in tqdm(planned, disable=not progress, desc="residuals"):
            rows.add(batch, capture(model, batch, keep))
        return rows.finish()
