"""Shipped base models: exported with their provenance, copied into a run whose config matches,
refused in one line for another world or config, and checked for damage."""
from __future__ import annotations

import dataclasses

import pytest
from safetensors.torch import load_file

from experiments.artifacts.rundir import RunDir
from experiments.config import load_config
from experiments.errors import UserError
from experiments.materials import load_materials
from experiments.training import shipped, stages


@pytest.fixture
def shelf(tiny_run, tmp_path, monkeypatch):
    """The tiny run's base model exported as the shipped model 'tiny', on a private shelf."""
    out, _ = tiny_run
    monkeypatch.setattr(shipped, "SHIPPED_DIR", tmp_path / "pretrained")
    shipped.export_shipped(RunDir(out).base_model, load_config("tiny"), tmp_path / "pretrained" / "tiny",
                           {"command": "test"})
    return tmp_path / "pretrained" / "tiny"


def test_a_run_with_the_same_config_starts_from_the_shipped_model(shelf, tmp_path):
    cfg = load_config("tiny")
    run = RunDir(tmp_path / "run")
    base = stages.pretrain(run, cfg, load_materials(cfg))
    assert base == run.base_model
    assert not (run.root / "corpus").exists()  # nothing was pretrained
    a, b = load_file(shelf / "model.safetensors"), load_file(run.base_model / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_auto_ignores_a_shipped_model_of_another_config_and_off_never_uses_one(shelf):
    assert shipped.shipped_base_for(load_config("tiny", overrides=["world.seed=3"])) is None
    assert shipped.shipped_base_for(load_config("tiny", overrides=['pretrain.shipped="off"'])) is None
    assert shipped.shipped_base_for(load_config("tiny", overrides=["pretrain.log_every=5"])) == shelf


def test_a_named_shipped_model_refuses_another_world_in_one_line(shelf):
    cfg = load_config("tiny", overrides=['pretrain.shipped="tiny"', "world.n_people=13"])
    with pytest.raises(UserError, match=r"world\.n_people \(13 here, 12 shipped\)") as err:
        shipped.shipped_base_for(cfg)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="no shipped base model 'nope'"):
        shipped.shipped_base_for(dataclasses.replace(cfg, pretrain=dataclasses.replace(cfg.pretrain, shipped="nope")))


def test_a_damaged_shipped_model_is_refused(shelf):
    weights = shelf / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(UserError, match="damaged"):
        shipped.shipped_base_for(load_config("tiny"))


def test_a_run_from_a_shipped_model_takes_its_check_base_figures_from_the_provenance(shelf, tmp_path):
    import json

    from experiments.pipeline import check_base_model, check_settings, prepare

    cfg = load_config("tiny")
    provenance = json.loads((shelf / "provenance.json").read_text())
    figures = {"heldout_qa": 0.123, "statement_probe_best_acc": 0.5}
    provenance |= {"check_settings": list(check_settings(cfg)), "check_base": figures}
    (shelf / "provenance.json").write_text(json.dumps(provenance))
    run = RunDir(tmp_path / "run")
    materials = prepare(run, cfg)
    stages.pretrain(run, cfg, materials)
    assert check_base_model(run.root) == figures  # not recomputed: the tiny model would not score 0.123
