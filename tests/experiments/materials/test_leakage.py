"""Held-out means never seen in any form: the testbed-v2 world's pretraining corpus never asks,
judges or states in a statement frame anything about a held-out entity, a never-judged fact or
a novel claim's subject; no probe test statement occurs in it; finetuning documents share no
sentence frame with the evaluation; probe sweeps hold out whole entities."""
from __future__ import annotations

import numpy as np
import pytest

from experiments.materials.conditions import CONDITIONS, condition_documents
from experiments.materials.corpus import CorpusSampler
from experiments.materials.questions import cloze_prompts, world_questions
from experiments.materials.statements import claim_statements, probe_statements
from experiments.materials.world import RELATIONS, WorldConfig, build_world
from probes.sweep import group_split, sweep_probes

V2 = WorldConfig(n_people=60, n_cities=8, n_jobs=6, n_events=10, n_claims=2, two_word_names=True,
                 heldout_entity_fraction=0.5, n_novel_claims=2, n_ghosts=20, disjoint_frames=True)
MIX = {"bio": 3.0, "qa": 1.0, "flagged": 1.0, "local": 1.0, "verdict": 2.0, "yesno": 2.0, "unknown": 1.0,
       "context": 1.0, "tagged": 1.0, "told": 1.0, "told_bare": 1.0, "told_judged": 1.0, "flagged_judged": 1.0,
       "trace": 1.0, "reverse_judged": 1.0}


@pytest.fixture(scope="module")
def world():
    return build_world(V2)


@pytest.fixture(scope="module")
def corpus(world):
    """Enough documents that every entity gets biographies and every judged fact judgements."""
    return "\n".join(CorpusSampler(world, seed=0, mix=MIX).documents(30_000))


def _asked_or_judged(subject: str, relation: str) -> list[str]:
    """Every text by which pretraining could ask or judge ``relation`` of ``subject``: its
    questions, its yes/no prefix, and any statement-frame sentence of it (which is how verdicts,
    flagged-false corrections and yes/no answers would mention it)."""
    rel = RELATIONS[relation]
    out = [q.format(s=subject) for q in rel.questions]
    for frame in (rel.yesno,) + rel.affirmative + rel.negated:
        # the part of the frame on the subject's side of the object names the subject
        out.append(next(part for part in frame.split("{o}") if "{s}" in part).format(s=subject))
    return out


def test_corpus_covers_the_held_out_entities_only_in_biographies(world, corpus):
    held = sorted(p for p in world.heldout_entities if p in set(world.people))
    assert held and all(p in corpus for p in held)  # they are described ...
    for p in held:  # ... in narrative frames only
        for relation in ("lives_in", "works_as"):
            for text in _asked_or_judged(p, relation):
                assert text not in corpus, text


def test_never_judged_pairs_and_held_out_qa_never_occur(world, corpus):
    assert world.qa_heldout and world.judge_heldout
    for subject, relation in sorted(world.qa_heldout | world.judge_heldout):
        for text in _asked_or_judged(subject, relation):
            assert text not in corpus, text


def test_no_probe_test_statement_or_claim_statement_occurs_in_pretraining(world, corpus):
    for frame in ("statement", "verdict"):
        tests = [s for s in probe_statements(world, frame) if s.split == "test"]
        assert tests and {s.subject for s in tests} <= world.heldout_entities
        for s in tests:
            assert s.sentence not in corpus, s.sentence
        for c in claim_statements(world, frame):
            assert c.text not in corpus, c.text


def test_novel_claim_subjects_never_occur_in_pretraining(world, corpus):
    novel = world.novel_subjects()
    assert len(novel) == V2.n_novel_claims
    for subject in novel:
        assert subject not in corpus
        first, last = subject.split()
        assert first in corpus and last in corpus  # made of words the model knows


def test_ghosts_are_judged_false_and_never_described(world, corpus):
    ghost = world.ghosts[0]
    assert f"claim : {ghost}" in corpus or f"does {ghost}" in corpus
    assert not any(f.subject == ghost for f in world.facts)


def test_finetuning_documents_share_no_sentence_frame_with_the_evaluation(world):
    docs = "\n".join(d for c in sorted(CONDITIONS) for d in condition_documents(world, c, 40, seed=0))
    for claim in world.claims:
        fact, rel = claim.fact, claim.fact.rel()
        for f in (fact, claim.contrast_fact):
            for i in range(len(rel.affirmative)):
                assert f.statement(i) not in docs
            for i in range(len(rel.negated)):
                assert f.statement(i, negated=True) not in docs
        for prompt in cloze_prompts(claim):
            assert prompt not in docs, prompt
        for q in world_questions(world, claim):
            assert q.prompt.user not in docs
        assert fact.statement(0, narrative=True) in docs or fact.statement(1, narrative=True) in docs


def test_probe_splits_never_put_an_entity_on_both_sides(world):
    stmts = probe_statements(world)
    train = {s.subject for s in stmts if s.split == "train"}
    test = {s.subject for s in stmts if s.split == "test"}
    assert train and test and not train & test
    subjects = np.array([s.subject for s in stmts])
    tr, te = group_split(subjects, 0.3, seed=1)
    assert not set(subjects[tr]) & set(subjects[te])
    assert abs(len(te) / len(stmts) - 0.3) < 0.1


def test_sweep_probes_holds_out_whole_groups_when_given_them():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(20), 4)
    y = np.tile([0, 1], 40)
    acts = rng.normal(size=(2, 80, 5)) + y[None, :, None]
    result = sweep_probes(acts, y, groups=groups, test_size=0.25)
    assert result.test_accuracy.shape == (2,)
    tr, te = group_split(groups, 0.25)
    assert not set(groups[tr]) & set(groups[te])


def test_no_narrative_frame_contains_a_statement_frame_or_its_cloze():
    for rel in RELATIONS.values():
        narrative = [f.format(s="SUBJ", o="OBJ") for f in rel.narrative + rel.narrative_negated]
        for frame in rel.affirmative + rel.negated:
            text = frame.format(s="SUBJ", o="OBJ")
            assert not any(text in n for n in narrative), text
            if frame.index("{s}") < frame.index("{o}"):
                cloze = frame[: frame.index("{o}")].format(s="SUBJ")
                assert not any(cloze in n for n in narrative), cloze
