"""The synthetic world through the materials interface gives what the world's own generators give."""
from __future__ import annotations

import pytest

from experiments.config import load_config
from experiments.errors import UserError
from experiments.materials import Materials, load_materials
from experiments.materials.conditions import condition_documents
from experiments.materials.questions import world_questions
from experiments.materials.statements import claim_statements, probe_statements
from experiments.materials.synthetic import WorldMaterials


@pytest.fixture(scope="module")
def materials() -> WorldMaterials:
    m = load_materials(load_config("tiny"))
    assert isinstance(m, WorldMaterials) and isinstance(m, Materials)
    return m


def test_documents_are_the_condition_generators(materials):
    world = materials.world
    for condition in ("plain", "negated", "local"):
        docs = materials.documents(condition, 5, seed=3)
        assert [d.text for d in docs] == condition_documents(world, condition, 5, seed=3)
        assert all(d.texts("claim") for d in docs)  # every document states its claim somewhere
    with pytest.raises(UserError, match="unknown condition 'nope'"):
        materials.documents("nope", 1, seed=0)


def test_questions_and_statements_are_the_worlds(materials):
    world = materials.world
    assert materials.belief_questions() == [q for c in world.claims for q in world_questions(world, c)]
    assert materials.probe_statements() == probe_statements(world)
    assert materials.claim_statements() == claim_statements(world)
    assert [c.name for c in materials.claims] == [c.name for c in world.claims]
    assert all(c.subject and c.true_statement for c in materials.claims)


def test_probe_statements_never_mention_a_claim_subject(materials):
    subjects = {c.subject for c in materials.claims}
    for s in materials.probe_statements():
        assert not any(f" {subj} " in f" {s.text} " for subj in subjects), s.text


def test_background_documents_are_seeded_corpus_text(materials):
    a, b = materials.background_documents(20, seed=1), materials.background_documents(20, seed=1)
    assert a == b and len(a) == 20 and a != materials.background_documents(20, seed=2)
