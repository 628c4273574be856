"""On-disk activation cache: one safetensors file per (model weights, tokenizer, texts,
position, layers, dtype), validated on load and written atomically.

The key hashes the weights themselves (the state dict), so two checkpoints never share an
entry and a checkpoint reloaded from another path still hits. A file that cannot be read,
belongs to another key, has the wrong shape, or fails its content checksum is recomputed
and overwritten, never trusted.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable

import torch

from interp.loading import LoadedModel

FORMAT = "2"  # bump when the meaning of stored activations changes (2: no doubled BOS, interp.batching)
TENSOR = "residuals"
log = logging.getLogger(__name__)


def _digest() -> "hashlib._Hash":
    return hashlib.blake2b(digest_size=20)


def tensor_checksum(tensor: torch.Tensor) -> str:
    h = _digest()
    h.update(tensor.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def model_fingerprint(lm: LoadedModel) -> str:
    """Hash of every state-dict tensor (names, dtypes, shapes, bytes); memoised until a
    tensor is replaced or modified in place (tracked by tensor version counters)."""
    state = lm.model.state_dict()
    versions = tuple((name, id(t), t._version) for name, t in state.items())
    memo = lm.backend_state.get("fingerprint")
    if memo is not None and memo[0] == versions:
        return memo[1]
    h = _digest()
    for name in sorted(state):
        t = state[name].detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    lm.backend_state["fingerprint"] = (versions, h.hexdigest())
    return h.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        text = backend.to_str()
    else:
        text = json.dumps(sorted(tokenizer.get_vocab().items())) + type(tokenizer).__name__
    h = _digest()
    h.update(text.encode())
    return h.hexdigest()


def cache_key(lm: LoadedModel, texts: list[str], position, layers: list[int]) -> str:
    texts_hash = _digest()
    texts_hash.update(json.dumps(texts).encode())
    parts = {
        "format": FORMAT,
        "model": model_fingerprint(lm),
        "tokenizer": tokenizer_fingerprint(lm.tokenizer),
        "texts": texts_hash.hexdigest(),
        "position": repr(position),
        "layers": list(layers),
        "dtype": str(next(lm.model.parameters()).dtype),
    }
    h = _digest()
    h.update(json.dumps(parts, sort_keys=True).encode())
    return h.hexdigest()


class ActivationCache:
    """A directory of cached residuals. ``hits``/``misses``/``rejected`` count lookups."""

    def __init__(self, root):
        self.root = Path(root).expanduser()
        self.hits = self.misses = self.rejected = 0

    def path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def load(self, key: str, shape: tuple) -> torch.Tensor | None:
        """The stored tensor if the file is complete and belongs to ``key``; else None."""
        path = self.path(key)
        if not path.exists():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensor = f.get_tensor(TENSOR)
        except Exception as exc:  # truncated or garbled files raise assorted errors
            return self._reject(path, f"unreadable ({type(exc).__name__})")
        if meta.get("key") != key or meta.get("format") != FORMAT:
            return self._reject(path, "written for another key")
        if tuple(tensor.shape) != tuple(shape) or tensor.dtype != torch.float32:
            return self._reject(path, f"shape {tuple(tensor.shape)} instead of {tuple(shape)}")
        if meta.get("checksum") != tensor_checksum(tensor):
            return self._reject(path, "checksum mismatch")
        return tensor

    def _reject(self, path: Path, why: str) -> None:
        self.rejected += 1
        log.warning("activation cache file %s is %s; recomputing", path, why)
        return None

    def save(self, key: str, tensor: torch.Tensor, description: dict | None = None) -> Path:
        """Write atomically and durably through the project's one write primitive
        (``probes._atomic.write_file``; a refused write raises its ``WriteError``)."""
        from safetensors.torch import save_file

        from probes._atomic import write_file  # probes is the lowest layer; imported when first needed

        tensor = tensor.detach().to(torch.float32).contiguous().cpu()
        meta = {"key": key, "format": FORMAT, "checksum": tensor_checksum(tensor)}
        meta.update({k: str(v) for k, v in (description or {}).items()})
        return write_file(self.path(key), lambda tmp: save_file({TENSOR: tensor}, str(tmp), metadata=meta))

    def get_or_compute(self, lm: LoadedModel, texts: list[str], position, layers: list[int],
                       compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        key = cache_key(lm, texts, position, layers)
        cached = self.load(key, (len(texts), len(layers), lm.d_model))
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        result = compute()
        self.save(key, result, {"model": lm.name, "position": repr(position), "layers": list(layers),
                                "n_texts": len(texts)})
        return result


def as_cache(cache) -> ActivationCache:
    return cache if isinstance(cache, ActivationCache) else ActivationCache(cache)
