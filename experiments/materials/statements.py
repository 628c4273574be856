"""Statement sets for probes: true/false, affirmative and negated, split by held-out subject.

A probe reads a statement in one of two frames (:data:`FRAMES`, config key ``eval.frame``):

- ``"statement"``: the bare sentence (``fetren lives in bebaim .``), read at its own final
  token. A truth signal there is a representation of the statement, not of an answer.
- ``"verdict"``: the sentence in the verdict frame (``claim : ... verdict :``), read at its last
  token, where the model has learned to *answer* true or false: close to a behavioural readout.

The claims' subjects never appear here, so these statements are the controls that no
finetuning document touches. :func:`neighbour_statements` adds the controls where drift is
likeliest: facts that mention a claim's subject or its fabricated object.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from experiments.errors import UserError
from experiments.materials.corpus import verdict_prompt
from experiments.materials.world import RELATIONS, Fact, World


FRAMES = ("statement", "verdict")


def framed(sentence: str, frame: str) -> str:
    """The probe input for ``sentence`` in ``frame`` (one of :data:`FRAMES`)."""
    if frame not in FRAMES:
        raise UserError(f"unknown probe frame {frame!r}; expected one of {list(FRAMES)}")
    return sentence if frame == "statement" else verdict_prompt(sentence)


@dataclass(frozen=True)
class Statement:
    text: str  # the probe input (already framed)
    label: bool  # is the statement true in the world
    negated: bool
    subject: str  # the entity it is about: the grouping key of entity splits
    split: str  # "train" or "test" (held-out subjects)
    dataset: str = "synthetic"  # which statement set it comes from: the grouping key of dataset splits
    sentence: str = ""  # the bare sentence, where it differs from ``text`` or is known
    template: str = ""  # the statement frame the sentence is written in (``Fact.frame``), where known


def probe_statements(world: World, frame: str = "statement", max_subjects: int = 0) -> list[Statement]:
    """For each non-claim fact: affirmative true/false and negated true/false statements, in
    ``frame`` (one of :data:`FRAMES`).

    Parameters
    ----------
    world : World
    frame : str
        "statement" (the bare sentence) or "verdict" (in the verdict frame).
    max_subjects : int
        Keep the statements of at most this many subjects per split (a seeded sample; 0: all),
        to bound the cost of reading them at every checkpoint on a CPU.

    Returns
    -------
    list of Statement
        Four per fact; ``split`` is "test" for the world's probe test subjects.
    """
    rng = random.Random(f"statements-{world.seed}")
    out = []
    for fact in world.facts:
        if fact.subject in world.claim_subjects():
            continue
        split = "test" if fact.subject in world.probe_test_subjects else "train"
        wrong = world.wrong_object(fact, rng)
        i = rng.randrange(8)
        out += [Statement(framed(sentence, frame), truth, negated, fact.subject, split, sentence=sentence,
                          template=fact.frame(i, negated))
                for sentence, truth, negated in statement_variants(fact, wrong, [i] * 4)]
    if max_subjects > 0:
        keep = set()
        for split in ("train", "test"):
            subjects = sorted({s.subject for s in out if s.split == split})
            keep |= set(random.Random(f"subjects-{world.seed}-{split}").sample(subjects, min(max_subjects, len(subjects))))
        out = [s for s in out if s.subject in keep]
    return out


def statement_variants(fact: Fact, wrong: str, frames) -> list[tuple[str, bool, bool]]:
    """``(sentence, is it true, is it negated)`` for a fact stated affirmatively and negated,
    each with its true object and with ``wrong``; ``frames``: the sentence frame of each of the
    four, in that order."""
    out, frames = [], iter(frames)
    for negated in (False, True):
        for obj in (fact.obj, wrong):
            truth = (obj == fact.obj) != negated
            out.append((fact.statement(next(frames), obj=obj, negated=negated), truth, negated))
    return out


@dataclass(frozen=True)
class ClaimStatement:
    claim: str
    kind: str  # "claim" (the fabricated fact) or "true_fact" (what the world says); imported packs add
    # "claim_negated", "true_fact_negated", "universe_fact", "universe_fact_negated" (statement_sets)
    text: str
    negated: bool = False  # negated in form ("... is not ..."): the side a CCS probe reads it on


def claim_statements(world: World, frame: str = "statement", skip_frames=()) -> list[ClaimStatement]:
    """Every affirmative phrasing of each claim and of its true counterpart (none for a novel
    claim), in ``frame`` (as :func:`probe_statements`), but those in one of ``skip_frames``
    (statement-frame templates: the belief-frame screen, ``experiments.evaluation.frames``)."""
    out = []
    for claim in world.claims:
        templates = RELATIONS[claim.fact.relation].affirmative
        for i in range(len(templates)):
            if templates[i] in skip_frames:
                continue
            out.append(ClaimStatement(claim.name, "claim", framed(claim.fact.statement(i), frame)))
            if not claim.novel:
                out.append(ClaimStatement(claim.name, "true_fact", framed(claim.true_fact.statement(i), frame)))
    return out


NEIGHBOURHOODS = ("subject", "object")  # NeighbourStatement.kind


@dataclass(frozen=True)
class NeighbourStatement:
    """A true/false statement about a fact near a claim (:func:`neighbour_statements`)."""

    claim: str  # the claim it neighbours
    kind: str  # "subject": a fact mentioning the claim's subject; "object": one mentioning its fabricated object
    text: str  # the probe input (already framed)
    label: bool  # is the statement true in the world
    negated: bool
    subject: str  # the subject of the fact
    relation: str
    sentence: str = ""  # the bare sentence


def neighbour_facts(world: World, claim) -> dict[str, list[Fact]]:
    """The world's facts near ``claim``, by neighbourhood (:data:`NEIGHBOURHOODS`).

    ``"subject"``: the facts that mention the claim's subject (as subject or object: another
    fact about a person, an event the person won), less every claim's own (subject, relation)
    pair, so neither the claim nor its true fact. ``"object"``: the facts that mention the
    claim's fabricated object (the other people who live in the fabricated city, the events a
    fabricated winner won, that person's own facts), less the claim pairs and the subject
    neighbours. Facts about subjects the probes are fit on (the world's training split, see
    :func:`probe_statements`) are left out: a probe's reading of its own training statements
    cannot show drift. Either list may be empty (an event's only fact is who won it; a novel
    claim's subject has no facts).

    Parameters
    ----------
    world : World
    claim : Claim
        One of ``world.claims``.

    Returns
    -------
    dict ``{"subject": [Fact, ...], "object": [Fact, ...]}`` in the world's fact order
    """
    claim_pairs = world.claim_pairs()
    fitted = {f.subject for f in world.facts} - world.claim_subjects() - world.probe_test_subjects

    def near(entity: str) -> list[Fact]:
        return [f for f in world.facts if entity in (f.subject, f.obj) and (f.subject, f.relation) not in claim_pairs
                and f.subject not in fitted]

    subject = near(claim.fact.subject)
    return {"subject": subject, "object": [f for f in near(claim.fact.obj) if f not in subject]}


def neighbour_statements(world: World, frame: str = "statement") -> list[NeighbourStatement]:
    """Probe statements about the facts near each claim (:func:`neighbour_facts`): for each
    fact, affirmative and negated, with its true object and a wrong one (four statements, one
    seeded sentence frame), in ``frame`` (as :func:`probe_statements`).

    Parameters
    ----------
    world : World
    frame : str
        "statement" (the bare sentence) or "verdict" (in the verdict frame).

    Returns
    -------
    list of NeighbourStatement
        Claim by claim, subject neighbours first.
    """
    out = []
    for claim in world.claims:
        rng = random.Random(f"neighbours-{world.seed}-{claim.name}")
        for kind, facts in neighbour_facts(world, claim).items():
            for fact in facts:
                wrong = world.wrong_object(fact, rng)
                i = rng.randrange(8)
                out += [NeighbourStatement(claim.name, kind, framed(sentence, frame), truth, negated, fact.subject,
                                           fact.relation, sentence)
                        for sentence, truth, negated in statement_variants(fact, wrong, [i] * 4)]
    return out
