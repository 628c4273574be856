"""Tiny models, data and the resumable run shared by the training tests (no tests here)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

WORDS = "the cat dog sat on a mat is not true false claim won gold race ran fast city river red blue : .".split()
DOCS = [" ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(4 + i % 9)) for i in range(40)]


def tokenizer():
    from experiments.training.toymodel import build_tokenizer
    return build_tokenizer(set(WORDS))


def llama(vocab: int, seed: int = 0):
    from experiments.config import ModelConfig
    from experiments.training.toymodel import build_model
    return build_model(ModelConfig(d_model=16, n_layers=2, n_heads=2, d_mlp=32, max_len=64), vocab, seed=seed)


def gpt2(vocab: int, seed: int = 0, dropout: float = 0.1):
    """GPT-2 with dropout on, so a resume must restore the RNG to match."""
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab, n_positions=64, n_embd=16, n_layer=2, n_head=2, resid_pdrop=dropout,
                        embd_pdrop=dropout, attn_pdrop=dropout, bos_token_id=2, eos_token_id=3, pad_token_id=0)
    return GPT2LMHeadModel(config)


def token_docs(tok):
    from experiments.training.loop import tokenize_documents
    return tokenize_documents(tok, DOCS, 32)


def flat_weights(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


class Crash(RuntimeError):
    pass


class SlowBatches:
    """Wraps a resumable batch iterator, sleeping before each batch (so a kill lands mid-run)."""

    def __init__(self, inner, delay: float, fail_after: int | None = None):
        self.inner, self.delay, self.fail_after, self.served = inner, delay, fail_after, 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.fail_after is not None and self.served >= self.fail_after:
            raise Crash(f"simulated crash after {self.served} batches")
        time.sleep(self.delay)
        self.served += 1
        return next(self.inner)

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)


RESUME_STEPS = 40


def resume_run(state_dir, delay: float = 0.0, fail_after: int | None = None):
    """The run used by the resume tests: GPT-2 with dropout, padded batches, cosine schedule,
    gradient accumulation, state saved every 3 steps. Returns the trained model. ``fail_after``:
    raise ``Crash`` when that many batches have been served (a kill, in process)."""
    from experiments.training.loop import OptimConfig, padded_batches, train
    torch.manual_seed(0)
    tok = tokenizer()
    model = gpt2(len(tok))
    batches = SlowBatches(padded_batches(token_docs(tok), 4, pad_id=0, seed=1), delay, fail_after)
    cfg = OptimConfig(steps=RESUME_STEPS, lr=3e-3, warmup=3, weight_decay=0.1, schedule="cosine", grad_accum=2)
    train(model, batches, cfg, state_dir=state_dir, save_every=3)
    return model



def torchrun(*args: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 ARGS`` from the repository root (CPU, gloo, one
    thread per process, a free port). ``kill_at``: the write at which rank 0 SIGKILLs itself
    (``experiments.artifacts.atomic.KILL_ENV``)."""
    from experiments.artifacts.atomic import KILL_ENV
    from tests.paths import REPO

    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    env.update(PYTHONPATH=str(REPO), TQDM_DISABLE="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    if kill_at is not None:
        env[KILL_ENV] = kill_at
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=150)


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """``result``, asserting it exited 0 (else the ends of its output)."""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result
