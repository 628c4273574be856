"""The pretraining data path: the corpus as a token array (generated once, cached in the run
directory, rebuilt when damaged) and packed batches sliced from it on the device, equal to
``packed_batches`` over the same documents and seed."""
from __future__ import annotations

import dataclasses
import json
import random

import numpy as np
import pytest
import torch

from experiments.artifacts.rundir import RunDir
from experiments.config import load_config
from experiments.materials.conditions import template_words
from experiments.materials.corpus import CorpusSampler, all_words
from experiments.materials.world import build_world
from experiments.training import corpus_tokens as ct
from experiments.training.loop import OptimConfig, loss_weights, packed_batches, tokenize_documents, train
from experiments.training.stream_batches import StreamBatches
from experiments.training.toymodel import build_tokenizer
from tests.experiments.training.support import Crash, SlowBatches, flat_weights, llama, token_docs, tokenizer


@pytest.fixture(scope="module")
def tiny():
    cfg = load_config("tiny")
    world = build_world(cfg.world)
    return cfg, world, build_tokenizer(all_words(world) | template_words()), dataclasses.asdict(cfg.corpus)


def as_array(docs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    return np.array([t for d in docs for t in d], dtype=np.uint16), offsets


def test_stream_batches_equal_packed_batches_across_epochs():
    docs = token_docs(tokenizer())
    tokens, offsets = as_array(docs)
    old = packed_batches(docs, 3, 16, seed=5)
    new = StreamBatches(tokens, offsets, 3, 16, seed=5)
    epochs = 0
    for _ in range(4 * len(tokens) // (3 * 16)):  # about four epochs
        a, b = next(old), next(new)
        assert torch.equal(a["input_ids"], b["input_ids"])
        assert torch.equal(loss_weights(a), loss_weights(b))
        epochs = new.position // len(tokens)
    assert epochs >= 3


def test_stream_batches_resume_from_their_position_and_differ_by_seed():
    tokens, offsets = as_array(token_docs(tokenizer()))
    first = StreamBatches(tokens, offsets, 2, 32, seed=1)
    for _ in range(23):  # past the first epoch boundary
        next(first)
    state = json.loads(json.dumps(first.state_dict()))
    resumed = StreamBatches(tokens, offsets, 2, 32, seed=1)
    resumed.load_state_dict(state)
    for _ in range(30):
        assert torch.equal(next(first)["input_ids"], next(resumed)["input_ids"])
    other = StreamBatches(tokens, offsets, 2, 32, seed=2)
    assert not torch.equal(next(StreamBatches(tokens, offsets, 2, 32, seed=1))["input_ids"], next(other)["input_ids"])


def test_training_on_stream_batches_equals_training_on_packed_batches():
    tok = tokenizer()
    docs = token_docs(tok)

    def run(batches):
        model = llama(len(tok))
        log = train(model, batches, OptimConfig(steps=6, lr=1e-2, warmup=2), log_every=1)
        return flat_weights(model), [e["loss"] for e in log]

    w_old, loss_old = run(packed_batches(docs, 2, 16, seed=3))
    w_new, loss_new = run(StreamBatches(*as_array(docs), 2, 16, seed=3))
    assert torch.equal(w_old, w_new) and loss_old == loss_new


def test_every_token_of_the_array_is_a_real_document_token(tiny):
    cfg, world, tok, mix = tiny
    tokens, offsets = ct.corpus_tokens(world, mix, seed=0, n_docs=500, tokenizer=tok, max_len=cfg.model.max_len)
    docs = CorpusSampler(world, seed=0, mix=mix).documents(500)  # one chunk: the sampler's own stream
    expected = tokenize_documents(tok, docs, cfg.model.max_len)
    assert offsets[0] == 0 and offsets[-1] == len(tokens) and len(offsets) == 501
    assert [tokens[offsets[i]:offsets[i + 1]].tolist() for i in range(500)] == expected
    assert tok.pad_token_id not in set(tokens.tolist()) and tok.unk_token_id not in set(tokens.tolist())
    assert tokens.dtype == np.uint16 and int(tokens.max()) < len(tok)


def test_the_corpus_does_not_depend_on_the_number_of_workers(tiny, monkeypatch):
    cfg, world, tok, mix = tiny
    monkeypatch.setattr(ct, "CHUNK_DOCS", 70)
    serial = ct.corpus_tokens(world, mix, 4, 250, tok, cfg.model.max_len, workers=1)
    parallel = ct.corpus_tokens(world, mix, 4, 250, tok, cfg.model.max_len, workers=2)
    assert all(np.array_equal(a, b) for a, b in zip(serial, parallel)) and len(serial[1]) == 251
    first = tokenize_documents(tok, CorpusSampler(world, seed=4, mix=mix).documents(70), cfg.model.max_len)
    tokens, offsets = serial
    assert [tokens[offsets[i]:offsets[i + 1]].tolist() for i in range(70)] == first
    assert ct.chunk_documents(world, mix, 4, 1, 70) != ct.chunk_documents(world, mix, 4, 0, 70)  # own seeds


def test_the_cached_corpus_is_reused_not_rebuilt(tiny, tmp_path, monkeypatch):
    cfg, world, tok, mix = tiny
    run = RunDir(tmp_path)
    args = (run, world, mix, 0, 300, tok, cfg.model.max_len)
    tokens, offsets = ct.cached_corpus_tokens(*args)
    files = sorted((tmp_path / "corpus").iterdir())
    assert [f.suffix for f in files] == [".json", ".safetensors"] and isinstance(tokens, np.memmap)
    stamps = [f.stat().st_mtime_ns for f in files]

    def no_generation(*a, **k):
        raise AssertionError("the corpus was generated again")

    monkeypatch.setattr(ct, "corpus_tokens", no_generation)
    again, again_offsets = ct.cached_corpus_tokens(*args)
    assert isinstance(again, np.memmap) and np.array_equal(again, tokens) and np.array_equal(again_offsets, offsets)
    assert [f.stat().st_mtime_ns for f in files] == stamps
    # A different tokenizer config is a different key: its own arrays, the first ones untouched.
    monkeypatch.undo()
    ct.cached_corpus_tokens(run, world, mix, 0, 300, tok, cfg.model.max_len - 8)
    assert len(list((tmp_path / "corpus").iterdir())) == 4


@pytest.mark.parametrize("damage", ["flip", "truncate", "meta"])
def test_a_damaged_corpus_is_rebuilt_with_a_warning(tiny, tmp_path, capsys, damage):
    cfg, world, tok, mix = tiny
    args = (RunDir(tmp_path), world, mix, 0, 300, tok, cfg.model.max_len)
    tokens, offsets = (np.array(a) for a in ct.cached_corpus_tokens(*args))
    target = next((tmp_path / "corpus").glob("*.safetensors"))
    data = bytearray(target.read_bytes())
    if damage == "flip":
        data[-5] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(bytes(data[: len(data) // 2]))
    else:
        next((tmp_path / "corpus").glob("*.json")).write_text("{not json")
    capsys.readouterr()
    rebuilt, rebuilt_offsets = ct.cached_corpus_tokens(*args)
    err = capsys.readouterr().err
    assert "warning: pretraining corpus" in err and "damaged" in err and "generating it again" in err
    assert np.array_equal(rebuilt, tokens) and np.array_equal(rebuilt_offsets, offsets)
    assert ct.cached_corpus_tokens(*args)[0].tolist() == tokens.tolist() and capsys.readouterr().err == ""


def test_shuffled_stream_indices_visit_every_document_once_in_rng_order():
    offsets = np.array([0, 3, 4, 9, 11], dtype=np.int64)
    indices = ct.shuffled_stream_indices(offsets, random.Random(7))
    order = list(range(4))
    random.Random(7).shuffle(order)
    assert indices.tolist() == [t for d in order for t in range(offsets[d], offsets[d + 1])]


def test_pretraining_resume_maps_the_cached_corpus(tmp_path, monkeypatch):
    """A pretraining killed after the corpus was written reuses it when rerun, and ends with
    the weights of an uninterrupted pretraining."""
    from experiments.materials import load_materials
    from experiments.training import stages

    cfg = load_config("tiny", None, ["pretrain.steps=12", "pretrain.log_every=2"])
    world = load_materials(cfg)  # the synthetic world's materials
    real_batches = stages.StreamBatches
    monkeypatch.setattr(stages, "StreamBatches", lambda *a, **k: SlowBatches(real_batches(*a, **k), 0.0, fail_after=7))
    with pytest.raises(Crash):
        stages.pretrain(RunDir(tmp_path / "killed"), cfg, world)
    assert json.loads((tmp_path / "killed" / "train_state" / "pretrain" / "latest.json").read_text())["step"] == 6
    monkeypatch.setattr(stages, "StreamBatches", real_batches)
    monkeypatch.setattr(ct, "corpus_tokens", lambda *a, **k: pytest.fail("the corpus was generated again"))
    killed = stages.pretrain(RunDir(tmp_path / "killed"), cfg, world)
    monkeypatch.undo()
    whole = stages.pretrain(RunDir(tmp_path / "whole"), cfg, world)
    assert (killed / "model.safetensors").read_bytes() == (whole / "model.safetensors").read_bytes()
    logs = [(tmp_path / d / "results" / "pretrain_log.csv").read_text().splitlines() for d in ("killed", "whole")]
    assert [line.rsplit(",", 1)[0] for line in logs[0]] == [line.rsplit(",", 1)[0] for line in logs[1]]
    assert len(logs[0]) == 1 + 12 // 2


def test_cpu_threads_take_half_the_cores_unless_omp_num_threads_is_set(monkeypatch):
    from experiments.training import threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for cores, expected in ((1, 1), (2, 1), (3, 1), (16, 8)):
        monkeypatch.setattr(threads, "available_cores", lambda cores=cores: cores)
        assert threads.cpu_threads() == expected
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.cpu_threads() == 3
    before = torch.get_num_threads()
    try:
        assert threads.configure_threads() == 3 and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_pretraining_compiles_only_on_cuda_for_long_runs():
    from experiments.training.stages import COMPILE_MIN_STEPS, compile_setting

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert compile_setting(None, cpu, 10 * COMPILE_MIN_STEPS) is False
    assert compile_setting(None, cuda, COMPILE_MIN_STEPS - 1) is False
    assert compile_setting(None, cuda, COMPILE_MIN_STEPS) == "reduce-overhead"
    assert compile_setting(None, cuda, COMPILE_MIN_STEPS, world_size=2) is True  # no CUDA graphs under DDP
    assert compile_setting(True, cpu, 1) is True and compile_setting(False, cuda, 10 ** 6) is False
