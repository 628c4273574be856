"""The pretraining corpus as one token array, generated and tokenized once before training.

``corpus_tokens`` generates the documents (``CorpusSampler``) in fixed-size chunks, in worker
processes when there are several chunks, tokenizes them with the tokenizer's own fast backend and
returns ``(tokens, offsets)``: document ``i`` is ``tokens[offsets[i]:offsets[i + 1]]`` (BOS, its
words, EOS, truncated to ``max_len``, exactly what ``tokenize_documents`` gives). Chunk ``k`` is
drawn from its own seed (chunk 0 from the corpus seed itself), so the corpus does not depend on
the number of workers.

``cached_corpus_tokens`` keeps the arrays in the run directory, under a name keyed by everything
they depend on (world, mix, seed, number of documents, ``max_len``, the tokenizer's vocabulary)::

    RUN/corpus/pretrain-<key>.safetensors   "tokens" (uint16; int32 for vocabularies over 65,536
                                            tokens) and "offsets" (int64, n_docs + 1)
    RUN/corpus/pretrain-<key>.json          key, sizes and the file's checksum (written last)

Both are written atomically; the JSON, written last, marks the arrays as complete. A rerun (a
resumed pretraining) memory-maps the tokens from the file instead of generating them again (no
pickle anywhere: safetensors is a JSON header and raw bytes); a file that does not match its
checksum is rebuilt with a warning.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import multiprocessing
import os
import random
from pathlib import Path

import numpy as np

from experiments.artifacts.atomic import atomic_write_json, write_file
from experiments.artifacts.checksums import file_digest
from experiments.artifacts.rundir import RunDir
from experiments.errors import warn
from experiments.materials.corpus import CorpusSampler
from experiments.materials.world import World
from experiments.training.batches import document_end_id, end_document
from experiments.training.threads import available_cores

CHUNK_DOCS = 50_000  # documents per generation chunk (about a second of Python each)
FORMAT = 1  # bump when the layout or the generation scheme changes: old caches are then ignored


def chunk_seed(seed: int, chunk: int) -> int | str:
    """The seed of generation chunk ``chunk``: the corpus seed for chunk 0 (so a corpus of one
    chunk is ``CorpusSampler(world, seed).documents(n)``), a derived string seed after it."""
    return seed if chunk == 0 else f"corpus-chunk:{seed}:{chunk}"


def chunk_sizes(n_docs: int) -> list[int]:
    return [min(CHUNK_DOCS, n_docs - start) for start in range(0, n_docs, CHUNK_DOCS)]


def chunk_documents(world: World, mix: dict, seed: int, chunk: int, n: int) -> list[str]:
    """The ``n`` documents of generation chunk ``chunk``."""
    return CorpusSampler(world, seed=chunk_seed(seed, chunk), mix=mix).documents(n)


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.int32)


def tokenize_to_array(tokenizer, docs: list[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """``(tokens, offsets)`` of the documents, each BOS + words + EOS truncated to ``max_len``
    (the same ids as ``tokenize_documents``), through the tokenizer's fast backend in batch."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        ids = [e.ids for e in backend.encode_batch(docs, add_special_tokens=True)]
    else:
        ids = tokenizer(docs, add_special_tokens=True)["input_ids"]
    end = document_end_id(tokenizer)
    ids = [end_document(x, end)[:max_len] for x in ids]
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    tokens = np.fromiter(itertools.chain.from_iterable(ids), dtype=token_dtype(len(tokenizer)), count=int(offsets[-1]))
    return tokens, offsets


def _chunk_tokens(world: World, mix: dict, seed: int, chunk: int, n: int, tokenizer, max_len: int):
    """One chunk generated and tokenized (in a worker process): ``(tokens, document lengths)``."""
    tokens, offsets = tokenize_to_array(tokenizer, chunk_documents(world, mix, seed, chunk, n), max_len)
    return tokens, np.diff(offsets)


def _map_chunks(jobs: list[tuple], workers: int) -> list:
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [_chunk_tokens(*job) for job in jobs]
    # fork: the workers generate and tokenize, nothing of torch or CUDA. TOKENIZERS_PARALLELISM
    # set while forking tells the tokenizers library that its threads are off in the children.
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        pool = multiprocessing.get_context("fork").Pool(workers)
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM")
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before
    with pool:
        return pool.starmap(_chunk_tokens, jobs, chunksize=1)


def corpus_tokens(world: World, mix: dict, seed: int, n_docs: int, tokenizer, max_len: int,
                  workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Generate and tokenize ``n_docs`` pretraining documents: ``(tokens, offsets)``.

    Parameters
    ----------
    world, mix, seed: the world, the relative weights of the document kinds, the corpus seed.
    n_docs: number of documents. tokenizer: the toy word-level tokenizer (any HF tokenizer works).
    max_len: documents are truncated to this many tokens (EOS included).
    workers: processes that generate and tokenize chunks of ``CHUNK_DOCS`` documents (None: one
        per available core); the result does not depend on it.

    Returns
    -------
    ``tokens`` (uint16, or int32 for vocabularies over 65,536) and ``offsets`` (int64, ``n_docs + 1``):
    document ``i`` is ``tokens[offsets[i]:offsets[i + 1]]``.
    """
    jobs = [(world, mix, seed, k, n, tokenizer, max_len) for k, n in enumerate(chunk_sizes(n_docs))]
    parts = _map_chunks(jobs, min(len(jobs), workers or available_cores()))
    lengths = np.concatenate([p[1] for p in parts])
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return np.concatenate([p[0] for p in parts]), offsets


def corpus_key(world: World, mix: dict, seed: int, n_docs: int, tokenizer, max_len: int) -> str:
    """A short hash of everything the token arrays depend on: the world's content, the mix, the
    seed, the number of documents, ``max_len``, the tokenizer's vocabulary and this format."""
    spec = {"format": FORMAT, "chunk_docs": CHUNK_DOCS, "world": dataclasses.asdict(world), "mix": mix,
            "seed": seed, "n_docs": n_docs, "max_len": max_len, "vocab": sorted(tokenizer.get_vocab().items()),
            "bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id}
    text = json.dumps(spec, sort_keys=True, default=sorted)  # sets (of pairs) as sorted lists
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def corpus_paths(run: RunDir, key: str) -> dict[str, Path]:
    return {"arrays": run.path("corpus", f"pretrain-{key}.safetensors"),
            "meta": run.path("corpus", f"pretrain-{key}.json")}


SAFETENSORS_DTYPES = {"U16": np.uint16, "I32": np.int32, "I64": np.int64}


def _map_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every array of a safetensors file, memory-mapped read-only (no copy, nothing unpickled)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    return {name: np.memmap(path, dtype=SAFETENSORS_DTYPES[info["dtype"]], mode="r", offset=8 + n + info["data_offsets"][0],
                            shape=tuple(info["shape"]))
            for name, info in header.items() if name != "__metadata__"}


def _load(paths: dict[str, Path], key: str, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """The saved arrays (tokens memory-mapped); ValueError/OSError naming what is wrong."""
    meta = json.loads(paths["meta"].read_text())
    if meta.get("key") != key:
        raise ValueError(f"its key is {meta.get('key')!r}, expected {key!r}")
    if file_digest(paths["arrays"]) != meta["checksum"]:
        raise ValueError(f"{paths['arrays'].name} does not match its checksum")
    arrays = _map_safetensors(paths["arrays"])
    tokens, offsets = arrays["tokens"], np.array(arrays["offsets"])
    if (tokens.ndim != 1 or offsets.ndim != 1 or len(offsets) != meta["n_docs"] + 1 or offsets[0] != 0
            or offsets[-1] != len(tokens) or np.any(np.diff(offsets) <= 0)):
        raise ValueError("its arrays do not describe the recorded documents")
    if len(tokens) and int(tokens.max()) >= vocab_size:
        raise ValueError(f"it holds token ids >= the vocabulary size {vocab_size}")
    return tokens, offsets


def cached_corpus_tokens(run: RunDir, world: World, mix: dict, seed: int, n_docs: int, tokenizer, max_len: int,
                         workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``corpus_tokens`` kept in the run directory: mapped from disk when a complete copy with
    the same key is there, generated and written (atomically) otherwise; a damaged copy is
    rebuilt with a warning. Returns ``(tokens, offsets)``, tokens memory-mapped."""
    from safetensors.numpy import save

    key = corpus_key(world, mix, seed, n_docs, tokenizer, max_len)
    paths = corpus_paths(run, key)
    if paths["meta"].is_file():
        try:
            return _load(paths, key, len(tokenizer))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warn(f"pretraining corpus {str(paths['arrays'])!r} is damaged ({str(exc) or type(exc).__name__}); "
                 "generating it again")
    tokens, offsets = corpus_tokens(world, mix, seed, n_docs, tokenizer, max_len, workers)
    data = save({"tokens": tokens, "offsets": offsets}, metadata={"key": key})
    write_file(paths["arrays"], data)
    atomic_write_json(paths["meta"], {"key": key, "n_docs": n_docs, "n_tokens": int(len(tokens)),
                                      "dtype": str(tokens.dtype), "max_len": max_len, "seed": seed,
                                      "checksum": hashlib.blake2b(data, digest_size=16).hexdigest()})
    return _map_safetensors(paths["arrays"])["tokens"], offsets


def shuffled_stream_indices(offsets: np.ndarray, rng: random.Random) -> np.ndarray:
    """Token positions of one epoch: every document once, in the order ``rng`` shuffles them
    into (``rng.shuffle(list(range(n_docs)))``, the order ``packed_batches`` draws)."""
    order = list(range(len(offsets) - 1))
    rng.shuffle(order)
    order = np.asarray(order, dtype=np.int64)
    starts, lengths = offsets[order], offsets[order + 1] - offsets[order]
    ends = np.cumsum(lengths)
    return np.arange(int(ends[-1]), dtype=np.int64) + np.repeat(starts - (ends - lengths), lengths)
