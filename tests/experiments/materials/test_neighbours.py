"""Neighbourhood statements (experiments.materials.statements.neighbour_statements): facts near
each claim, never the claim's own pair, about the right subject or object, never fit on."""
from __future__ import annotations

import pytest

from experiments.config import load_config
from experiments.materials import load_materials
from experiments.materials.imported import ImportedMaterials
from experiments.materials.statements import neighbour_facts, neighbour_statements, probe_statements
from experiments.materials.world import build_world
from tests.paths import REPO

LAYOUT = REPO / "tests" / "fixtures" / "paper_layout"
CLAIMS, DOCS = LAYOUT / "claims", LAYOUT / "documents"

WORLDS = [("tiny", 0), ("tiny", 1), ("standard", 0), ("standard", 3), ("testbed", 0)]


def world_of(preset: str, seed: int):
    return build_world(load_config(preset, overrides=[f"world.seed={seed}"]).world)


@pytest.mark.parametrize("preset, seed", WORLDS)
def test_neighbour_facts_are_about_the_claims_subject_or_fabricated_object(preset, seed):
    world = world_of(preset, seed)
    fitted = {s.subject for s in probe_statements(world) if s.split == "train"}
    found = {"subject": 0, "object": 0}
    for claim in world.claims:
        near = neighbour_facts(world, claim)
        assert set(near) == {"subject", "object"}
        for kind, entity in (("subject", claim.fact.subject), ("object", claim.fact.obj)):
            for fact in near[kind]:
                assert entity in (fact.subject, fact.obj), (claim, kind, fact)
                assert (fact.subject, fact.relation) != (claim.fact.subject, claim.fact.relation)
                assert (fact.subject, fact.relation) not in world.claim_pairs()
                assert fact.subject not in fitted  # never in the probes' training split
                assert fact in world.facts  # a true fact of the world
            found[kind] += len(near[kind])
        assert not set(near["subject"]) & set(near["object"])
    assert found["object"] > 0  # the fabricated objects have neighbours in every world here
    # every fact that mentions the subject or the object and is neither a claim pair nor fit on is there
    for claim in world.claims:
        expected = [f for f in world.facts if claim.fact.subject in (f.subject, f.obj)
                    and (f.subject, f.relation) not in world.claim_pairs() and f.subject not in fitted]
        assert neighbour_facts(world, claim)["subject"] == expected


@pytest.mark.parametrize("preset, seed", WORLDS[:3])
def test_four_statements_per_neighbour_fact(preset, seed):
    world = world_of(preset, seed)
    statements = neighbour_statements(world)
    claim_sentences = {c.fact.statement(i) for c in world.claims for i in range(8)}
    for claim in world.claims:
        for kind, facts in neighbour_facts(world, claim).items():
            mine = [s for s in statements if s.claim == claim.name and s.kind == kind]
            assert len(mine) == 4 * len(facts)
            for fact, group in zip(facts, [mine[i:i + 4] for i in range(0, len(mine), 4)]):
                assert [(s.label, s.negated) for s in group] == [(True, False), (False, False), (False, True),
                                                                 (True, True)]
                assert {s.subject for s in group} == {fact.subject} and {s.relation for s in group} == {fact.relation}
                true_sentence = group[0].sentence
                assert fact.obj in true_sentence and fact.subject in true_sentence
                entity = claim.fact.subject if kind == "subject" else claim.fact.obj
                assert entity in true_sentence
    assert not {s.sentence for s in statements} & claim_sentences  # no claim is ever a neighbour
    assert neighbour_statements(world) == statements  # seeded


def test_verdict_frame_wraps_the_same_sentences():
    world = world_of("tiny", 0)
    plain, verdict = neighbour_statements(world), neighbour_statements(world, "verdict")
    assert [s.sentence for s in plain] == [s.sentence for s in verdict]
    assert all(v.text != v.sentence and v.sentence in v.text for v in verdict)


def test_materials_give_them_and_imported_materials_have_none():
    materials = load_materials(load_config("tiny"))
    assert materials.neighbour_statements() == neighbour_statements(materials.world)
    assert ImportedMaterials(CLAIMS, DOCS).neighbour_statements() == []
