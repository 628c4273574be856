"""name_attribute_profile: judged and held-out people's attribute at the name, in one format or two.

Synthetic residuals stand in for a model: the city is written at one layer for everyone (one
format: a classifier fit on judged people reads held-out people too), or for judged people only
(two formats: it does not)."""
from __future__ import annotations

import torch

import interp
from experiments.config import WorldConfig
from experiments.evaluation.name_attribute import name_attribute_profile
from experiments.materials.world import build_world

WORLD = build_world(WorldConfig(n_people=80, n_cities=4, two_word_names=True, heldout_entity_fraction=0.5))
CITY = {f.subject: f.obj for f in WORLD.facts if f.relation == "lives_in"}
CITIES = sorted(set(CITY.values()))


def fake_residuals(shared: bool):
    def residuals(lm, names, position="last"):
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(len(names), 3, 16, generator=gen)
        for i, name in enumerate(names):
            if shared or name not in WORLD.heldout_entities:
                x[i, 1, CITIES.index(CITY[name])] += 6.0  # layer 1 holds the city
        return x
    return residuals


def test_one_format_transfers_to_held_out_people(monkeypatch):
    monkeypatch.setattr(interp, "residuals", fake_residuals(shared=True))
    profile = name_attribute_profile(None, WORLD)
    assert profile["judged_acc"] > 0.9 and profile["heldout_acc"] > 0.9
    assert profile["transfer_acc"] > 0.9 and profile["transfer_layer"] == 1
    assert profile["chance"] == 1 / len(CITIES)


def test_two_formats_do_not(monkeypatch):
    monkeypatch.setattr(interp, "residuals", fake_residuals(shared=False))
    profile = name_attribute_profile(None, WORLD)
    assert profile["judged_acc"] > 0.9
    assert profile["transfer_acc"] < 0.6 and profile["heldout_acc"] < 0.6  # chance 0.25


def test_a_world_without_held_out_people_gives_nothing():
    assert name_attribute_profile(None, build_world(WorldConfig(n_people=20))) == {}
