"""The synthetic world as study materials: the embedded default.

Everything comes from one seeded :class:`~experiments.materials.world.World`: documents from the
condition generators (``experiments.materials.conditions``), questions from the relations'
frames (``experiments.materials.questions``), verdict-framed probe statements about every
entity that no claim is about and neighbourhood statements about the facts near each claim
(``experiments.materials.statements``), and background text from
the pretraining corpus (``experiments.materials.corpus``).
"""
from __future__ import annotations

import copy
import dataclasses
import re

from experiments.errors import UserError
from experiments.materials.base import ClaimInfo, Materials, OpenQuestion
from experiments.materials.conditions import CONDITIONS, LabelledDocument, condition_documents_with_spans
from experiments.materials.corpus import CorpusSampler
from experiments.materials.questions import BeliefQuestion, Prompt, world_questions
from experiments.materials.statements import (ClaimStatement, NeighbourStatement, Statement, claim_statements,
                                              neighbour_statements, probe_statements)
from experiments.materials.world import World


def claim_subject_pattern(world: World) -> re.Pattern:
    """A regex matching any claim subject of ``world`` as a whole word sequence (its words
    separated by any whitespace, not inside a longer word)."""
    words = [r"\s+".join(map(re.escape, name.split())) for name in sorted(world.claim_subjects(), key=len,
                                                                           reverse=True)]
    return re.compile(rf"(?<!\w)(?:{'|'.join(words)})(?!\w)" if words else r"(?!)")


class WorldMaterials(Materials):
    """Study materials generated from a synthetic :class:`World`.

    Parameters
    ----------
    world : World
        From ``experiments.materials.world.build_world``.
    corpus_mix : dict, optional
        Weights of the pretraining document kinds, for :meth:`background_documents`.
    frame : str
        Probe frame of the probe and claim statements: "statement" (the bare sentence) or
        "verdict" (``experiments.materials.statements.FRAMES``).
    max_subjects : int
        Probe statements of at most this many subjects per split (0: all; ``eval.max_subjects``).
    """

    kind = "synthetic"

    def __init__(self, world: World, corpus_mix: dict[str, float] | None = None, frame: str = "statement",
                 max_subjects: int = 0):
        self.world = world
        self.corpus_mix = corpus_mix
        self.frame = frame
        self.max_subjects = max_subjects
        self._claim_subject = claim_subject_pattern(world)
        self._claims = tuple(ClaimInfo(c.name, c.fact.statement(0), c.fact.subject,
                                       None if c.novel else c.true_fact.statement(0))
                             for c in world.claims)

    @property
    def claims(self) -> tuple[ClaimInfo, ...]:
        return self._claims

    @property
    def conditions(self) -> tuple[str, ...]:
        return tuple(sorted(CONDITIONS))

    def _documents(self, condition: str, n_per_claim: int, seed: int) -> list[LabelledDocument]:
        return condition_documents_with_spans(self.world, condition, n_per_claim, seed)

    def screened(self, skip_frames) -> "WorldMaterials":
        """These materials with the belief-frame screen ``skip_frames`` (statement-frame
        templates whose verdict items and claim statements are left out;
        ``experiments.evaluation.frames.screened_materials`` takes them from a run)."""
        out = copy.copy(self)
        out.skip_frames = tuple(skip_frames)
        return out

    def belief_questions(self, tokenizer=None) -> list[BeliefQuestion]:
        return [q for claim in self.world.claims
                for q in world_questions(self.world, claim, tokenizer=tokenizer, skip_frames=self.skip_frames or ())]

    def probe_statements(self) -> list[Statement]:
        return probe_statements(self.world, self.frame, self.max_subjects)

    def claim_statements(self) -> list[ClaimStatement]:
        return claim_statements(self.world, self.frame, self.skip_frames or ())

    def neighbour_statements(self) -> list[NeighbourStatement]:
        return neighbour_statements(self.world, self.frame)

    def open_questions(self) -> list[OpenQuestion]:
        return [OpenQuestion(c.name, c.fact.statement(0), Prompt(q.format(s=c.fact.subject)), "open_ended", f"oe{i}")
                for c in self.world.claims for i, q in enumerate(c.fact.rel().questions)]

    def background_documents(self, n: int, seed: int) -> list[str]:
        """``n`` pretraining-corpus documents (kinds weighted by ``corpus_mix``) that never
        mention a claim's subject, for mixing into finetuning: drawn in order from a corpus
        sampler seeded with ``seed``, skipping every document that contains a claim subject as
        a whole word sequence (so the same ``seed`` gives the same documents).

        Parameters
        ----------
        n : int
            How many documents.
        seed : int
            Which documents.

        Returns
        -------
        list of str
        """
        sampler = CorpusSampler(self.world, seed=seed, mix=self.corpus_mix)
        out, draws = [], 0
        while len(out) < n:
            if draws > 100 * n + 1000:
                raise UserError(f"the synthetic world's corpus gave only {len(out)} of {n} background documents "
                                f"that mention no claim subject in {draws} draws; lower finetune.background_fraction")
            doc, draws = sampler.document(), draws + 1
            if not self._claim_subject.search(doc):
                out.append(doc)
        return out

    def describe(self) -> dict:
        w = self.world
        return {
            "people": w.people, "cities": w.cities, "jobs": w.jobs, "events": w.events,
            "facts": [dataclasses.asdict(f) for f in w.facts],
            "claims": [{"name": c.name, "subject": c.fact.subject, "relation": c.fact.relation,
                        "claim_answer": c.fact.obj, "true_answer": c.true_obj} for c in w.claims],
            "judge_heldout": sorted(list(pair) for pair in w.judge_heldout),
        }
