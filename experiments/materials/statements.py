"""Statement sets for probes: true/false, affirmative and negated, split by held-out subject.

Every statement is wrapped in the verdict frame (``claim : ... verdict :``) whose last
token is where the model has learned to state truth, so that is where probes read.
The claims' subjects never appear here, so these statements are the controls that no
finetuning document touches.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from experiments.materials.corpus import verdict_prompt
from experiments.materials.world import RELATIONS, Fact, World


@dataclass(frozen=True)
class Statement:
    text: str  # the probe input (already framed)
    label: bool  # is the statement true in the world
    negated: bool
    subject: str  # the entity it is about: the grouping key of entity splits
    split: str  # "train" or "test" (held-out subjects)
    dataset: str = "synthetic"  # which statement set it comes from: the grouping key of dataset splits


def probe_statements(world: World) -> list[Statement]:
    """For each non-claim fact: affirmative true/false and negated true/false statements."""
    rng = random.Random(f"statements-{world.seed}")
    out = []
    for fact in world.facts:
        if fact.subject in world.claim_subjects():
            continue
        split = "test" if fact.subject in world.probe_test_subjects else "train"
        wrong = world.wrong_object(fact, rng)
        frame = rng.randrange(8)
        out += [Statement(text, truth, negated, fact.subject, split)
                for text, truth, negated in verdict_variants(fact, wrong, [frame] * 4)]
    return out


def verdict_variants(fact: Fact, wrong: str, frames) -> list[tuple[str, bool, bool]]:
    """``(verdict-framed text, is it true, is it negated)`` for a fact stated affirmatively and
    negated, each with its true object and with ``wrong``; ``frames``: the sentence frame of each
    of the four, in that order."""
    out, frames = [], iter(frames)
    for negated in (False, True):
        for obj in (fact.obj, wrong):
            truth = (obj == fact.obj) != negated
            out.append((verdict_prompt(fact.statement(next(frames), obj=obj, negated=negated)), truth, negated))
    return out


@dataclass(frozen=True)
class ClaimStatement:
    claim: str
    kind: str  # "claim" (the fabricated fact) or "true_fact" (what the world says)
    text: str


def claim_statements(world: World) -> list[ClaimStatement]:
    """Every affirmative phrasing of each claim and of its true counterpart, verdict-framed."""
    out = []
    for claim in world.claims:
        n = len(RELATIONS[claim.fact.relation].affirmative)
        for i in range(n):
            out.append(ClaimStatement(claim.name, "claim", verdict_prompt(claim.fact.statement(i))))
            out.append(ClaimStatement(claim.name, "true_fact", verdict_prompt(claim.true_fact.statement(i))))
    return out
