"""Packed pretraining batches sliced on the device from a token array.

``StreamBatches`` gives the batches of ``packed_batches`` over the same documents and seed,
token for token (the same shuffled document order, epoch after epoch, cut into rows of
``seq_len``), but each epoch's token stream is gathered once on the host (numpy) and copied to
the device in one transfer; a batch is then a view of that device tensor. A step costs no host
work and no host-device synchronisation. The position is one integer, so saving and restoring
it (``state_dict``/``load_state_dict``) is instant.
"""
from __future__ import annotations

import random

import numpy as np
import torch

from experiments.training.corpus_tokens import shuffled_stream_indices


class StreamBatches:
    """Endless ``{"input_ids", "loss_weights"}`` batches of ``batch_size`` rows of ``seq_len``
    tokens on ``device``, cut from the documents ``tokens[offsets[i]:offsets[i + 1]]`` shuffled
    with ``random.Random(seed)`` each epoch. Every token is a prediction target except the
    first of each row (weight 0), as in ``packed_batches``."""

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray, batch_size: int, seq_len: int, *, seed: int,
                 device: str | torch.device = "cpu"):
        offsets = np.asarray(offsets, dtype=np.int64)
        if offsets.ndim != 1 or len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != len(tokens):
            raise ValueError("offsets must start at 0, end at len(tokens) and hold at least one document")
        if np.any(np.diff(offsets) <= 0):
            raise ValueError("every document needs at least one token")
        if batch_size < 1 or seq_len < 2:
            raise ValueError(f"need batch_size >= 1 and seq_len >= 2; got {batch_size} and {seq_len}")
        self.tokens, self.offsets, self.seed = tokens, offsets, seed
        self.batch_size, self.seq_len, self.device = batch_size, seq_len, torch.device(device)
        weights = torch.ones(batch_size, seq_len)
        weights[:, 0] = 0.0  # the first token of a row is never a prediction target
        self.weights = weights.to(self.device)
        self._restart(0)

    def _restart(self, position: int) -> None:
        """Start drawing at stream ``position`` (tokens since the first batch)."""
        self._rng = random.Random(self.seed)
        epoch_tokens = int(self.offsets[-1])
        for _ in range(position // epoch_tokens):  # replay the shuffles of the epochs before it
            self._rng.shuffle(list(range(len(self.offsets) - 1)))
        self._buffer = torch.empty(0, dtype=torch.long, device=self.device)
        self._buffer_start = position - position % epoch_tokens  # stream position of _buffer[0]
        self.position = position

    def _append_epoch(self) -> None:
        indices = shuffled_stream_indices(self.offsets, self._rng)
        epoch = torch.from_numpy(np.asarray(self.tokens[indices], dtype=np.int64)).to(self.device)
        drop = min(self.position - self._buffer_start, len(self._buffer))  # tokens already served
        self._buffer = torch.cat([self._buffer[drop:], epoch])
        self._buffer_start += drop

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        need = self.batch_size * self.seq_len
        while self._buffer_start + len(self._buffer) < self.position + need:
            self._append_epoch()
        start = self.position - self._buffer_start
        self.position += need
        return {"input_ids": self._buffer[start:start + need].view(self.batch_size, self.seq_len),
                "loss_weights": self.weights}

    def state_dict(self) -> dict:
        return {"position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self._restart(int(state["position"]))
