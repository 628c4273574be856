"""Activation cache: hits, keys that change with weights/texts/position/layers/dtype, and
corrupt or foreign files recomputed rather than trusted."""
import importlib
import os

import pytest
import torch

import interp
from interp.cache import ActivationCache, cache_key
from interp.positions import Span
from tests.interp.fixtures import TEXTS, save_tiny


@pytest.fixture()
def lm(tiny_dirs):
    return interp.load_model(tiny_dirs["llama"])


def test_hit_returns_stored_numbers_without_computing(lm, tmp_path, monkeypatch):
    cache = ActivationCache(tmp_path)
    first = interp.residuals(lm, TEXTS, cache=cache)
    assert (cache.hits, cache.misses) == (0, 1) and len(list(tmp_path.glob("*.safetensors"))) == 1

    residuals_module = importlib.import_module("interp.residuals")  # the module, not the function
    monkeypatch.setattr(residuals_module, "_compute", lambda *a, **k: pytest.fail("cache hit expected"))
    again = interp.residuals(lm, TEXTS, cache=str(tmp_path))  # a plain path works too
    assert torch.equal(first, again)
    assert not list(tmp_path.glob(".tmp-*")), "temp files must not linger"


def test_same_weights_reloaded_from_another_path_hit(lm, tmp_path):
    copy_dir = save_tiny("llama", tmp_path / "copy", seed=0)
    same = interp.load_model(copy_dir)
    assert cache_key(lm, TEXTS, "last", [0, 1]) == cache_key(same, TEXTS, "last", [0, 1])


def test_key_changes_with_weights_texts_position_layers_dtype(lm, tmp_path):
    base = cache_key(lm, TEXTS, "last", [0, 1, 2])
    other_weights = interp.load_model(save_tiny("llama", tmp_path / "seed1", seed=1))
    assert cache_key(other_weights, TEXTS, "last", [0, 1, 2]) != base
    assert cache_key(lm, TEXTS[:-1], "last", [0, 1, 2]) != base
    assert cache_key(lm, TEXTS[::-1], "last", [0, 1, 2]) != base
    assert cache_key(lm, TEXTS, Span("the"), [0, 1, 2]) != base
    assert cache_key(lm, TEXTS, Span("the", reduce="last"), [0, 1, 2]) != cache_key(lm, TEXTS, Span("the"), [0, 1, 2])
    assert cache_key(lm, TEXTS, "last", [1, 2]) != base
    half = interp.load_model(lm.name, dtype="bfloat16")
    assert cache_key(half, TEXTS, "last", [0, 1, 2]) != base


def test_in_place_weight_update_changes_key_and_result(lm, tmp_path):
    cache = ActivationCache(tmp_path)
    before = interp.residuals(lm, TEXTS, cache=cache)
    with torch.no_grad():
        lm.blocks[0].mlp.down_proj.weight.add_(0.5)
    after = interp.residuals(lm, TEXTS, cache=cache)
    assert cache.misses == 2 and cache.hits == 0
    assert (after - before).abs().max() > 1e-3
    assert torch.allclose(after, interp.residuals(lm, TEXTS), atol=1e-6)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip_byte", "empty"])
def test_corrupt_file_is_recomputed(lm, tmp_path, damage):
    cache = ActivationCache(tmp_path)
    good = interp.residuals(lm, TEXTS, position="mean", cache=cache)
    (path,) = tmp_path.glob("*.safetensors")
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a safetensors file at all" * 10)
    elif damage == "flip_byte":  # header intact, one value changed: only the checksum notices
        path.write_bytes(data[:-3] + bytes([data[-3] ^ 0xFF]) + data[-2:])
    else:
        path.write_bytes(b"")
    again = interp.residuals(lm, TEXTS, position="mean", cache=cache)
    assert cache.rejected == 1 and cache.misses == 2
    assert torch.equal(again, good)
    assert cache.load(path.stem, tuple(good.shape)) is not None, "the recomputed file replaced the bad one"


def test_file_for_another_key_is_not_trusted(lm, tmp_path):
    cache = ActivationCache(tmp_path)
    interp.residuals(lm, TEXTS, cache=cache)
    key_last = cache_key(lm, TEXTS, interp.positions.Last(), list(range(lm.n_layers + 1)))
    key_mean = cache_key(lm, TEXTS, interp.positions.Mean(), list(range(lm.n_layers + 1)))
    os.replace(cache.path(key_last), cache.path(key_mean))  # a "mean" file holding "last" numbers
    mean = interp.residuals(lm, TEXTS, position="mean", cache=cache)
    assert cache.rejected == 1
    assert torch.allclose(mean, interp.residuals(lm, TEXTS, position="mean"), atol=1e-6)
