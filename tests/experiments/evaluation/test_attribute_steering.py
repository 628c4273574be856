"""Steering the attribute kept at a name (experiments/evaluation/attribute_steering.py), on the
base model shipped with the package: the probe reads held-out people's cities, an edit along its
direction moves the answers, the same edit's norm in a random direction does not, and an edit
of one subject is refused on prompts that do not name it."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import interp
from interp.errors import InterpInputError
from experiments.config import load_config
from experiments.evaluation.attribute_steering import answers_under, attribute_edit, fit_attribute_probe, name_states
from experiments.materials.world import build_world
from experiments.training import shipped


@pytest.fixture(scope="module")
def setting():
    torch.set_num_threads(1)
    world = build_world(load_config("testbed").world)
    lm = interp.load_model(shipped.shipped_models()["testbed"], device="cpu")
    probe = fit_attribute_probe(lm, world, "lives_in", layer=1)
    city = {f.subject: f.obj for f in world.facts if f.relation == "lives_in"}
    people = random.Random(0).sample(sorted(set(city) & world.heldout_entities - world.claim_subjects()), 12)
    other = {p: sorted(set(probe.model.classes_) - {city[p]})[0] for p in people}
    return world, lm, probe, city, people, other, name_states(lm, people)[:, 1]


def share(lm, people, city, other, edits) -> float:
    return float(np.mean([answers_under(lm, "lives_in", p, other[p], city[p], e)["verdict_endorse"]
                          for p, e in zip(people, edits)]))


def test_the_probe_reads_held_out_people_at_the_name(setting):
    _, _, probe, *_ = setting
    assert probe.heldout_acc > 0.9 and probe.layer == 1  # chance 1/20


def test_an_edit_along_the_probe_moves_the_verdict_and_a_random_one_does_not(setting):
    _, lm, probe, city, people, other, states = setting
    assert share(lm, people, city, other, [None] * len(people)) == 0.0
    along = [attribute_edit(probe, p, states[i], other[p], city[p], alpha=3.0) for i, p in enumerate(people)]
    rng = np.random.default_rng(0)
    random_ = [attribute_edit(probe, p, states[i], other[p], city[p], 3.0, rng) for i, p in enumerate(people)]
    assert share(lm, people, city, other, along) >= 0.75
    assert share(lm, people, city, other, random_) <= 0.25
    for a, r in zip(along, random_):
        assert torch.isclose(a.direction.norm(), r.direction.norm())
    edited = probe.proba(states + np.stack([a.direction.numpy() for a in along]))
    assert all(edited[other[p]][i] > 0.5 for i, p in enumerate(people))  # the probe now reads the other city


def test_alpha_zero_is_no_edit_and_an_edit_is_refused_on_prompts_without_its_subject(setting):
    _, lm, probe, city, people, other, states = setting
    p, q = people[0], people[1]
    assert attribute_edit(probe, p, states[0], other[p], city[p], 0.0).direction.abs().sum() == 0
    edit = attribute_edit(probe, p, states[0], other[p], city[p], 3.0)
    with pytest.raises(InterpInputError, match="not found"):  # it edits its subject's token, nowhere else
        answers_under(lm, "lives_in", q, other[q], city[q], edit)
