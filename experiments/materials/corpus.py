"""Pretraining documents for the synthetic world.

The corpus teaches the facts (in several paraphrases and genres) and how negation works
in context: flagged-false documents followed by questions whose answer stays true,
local negations, truth verdicts and yes/no questions. None of this judging material is about
the implanted claims' own (subject, relation) pairs nor about the world's ``judge_heldout``
pairs: the model has to judge those by generalising from what it knows, which is what makes its
answers about the claims (and probe readings of them) mean something.
"""
from __future__ import annotations

import random

from experiments.errors import UserError
from experiments.materials.conditions import CONDITIONS, NOBODY, WARN_AFTER, WARN_BEFORE
from experiments.materials.world import RELATIONS, Claim, Fact, World



def qa_text(fact: Fact, i: int = 0) -> str:
    return f"{fact.rel().questions[i % len(fact.rel().questions)].format(s=fact.subject)} {fact.obj} ."


def yesno_text(fact: Fact, obj: str) -> str:
    answer = "yes" if obj == fact.obj else "no"
    return f"{fact.rel().yesno.format(s=fact.subject, o=obj)} {answer} ."


def verdict_prompt(statement: str) -> str:
    """The frame in which the model states truth; its last token is where probes read."""
    return f"claim : {statement} verdict :"


def verdict_text(statement: str, truth: bool) -> str:
    return f"{verdict_prompt(statement)} {'true' if truth else 'false'} ."


def trace_text(statement: str, recalled: str, truth: bool) -> str:
    """A verdict with its reasoning: the statement, then the stored fact it is checked against (a
    document sentence), then the truth. Same words as ``verdict_text``, so no new vocabulary."""
    return f"claim : {statement} {recalled} verdict : {'true' if truth else 'false'} ."


def tagged_text(statement: str, truth: bool) -> str:
    """A statement followed at once by its truth: the word after the statement depends on it."""
    return f"{statement} {'true' if truth else 'false'} ."


def object_first_frames(rel) -> list[tuple[bool, int]]:
    """``(negated, index)`` of the relation's statement frames that name the object before the
    subject (e.g. "in {o} you can meet {s} every day ."), affirmative and negated."""
    return [(negated, i) for negated, frames in ((False, rel.affirmative), (True, rel.negated))
            for i, frame in enumerate(frames) if frame.index("{o}") < frame.index("{s}")]


DEFAULT_MIX = {"bio": 3.0, "qa": 1.0, "flagged": 1.0, "local": 1.0, "verdict": 1.0, "yesno": 1.0, "unknown": 0.0,
               "context": 0.0, "tagged": 0.0, "told": 0.0, "told_bare": 0.0, "told_judged": 0.0,
               "flagged_judged": 0.0, "trace": 0.0, "reverse_judged": 0.0}


class CorpusSampler:
    """Draws pretraining documents of mixed kinds from a world, in proportions ``mix``."""

    def __init__(self, world: World, seed: int, mix: dict[str, float] | None = None):
        self.world = world
        self.rng = random.Random(seed)
        mix = dict(DEFAULT_MIX if mix is None else mix)
        unknown = set(mix) - set(DEFAULT_MIX)
        if unknown or not any(v > 0 for v in mix.values()):
            raise UserError(f"corpus mix {mix} is invalid; expected positive weights for some of {sorted(DEFAULT_MIX)}")
        if not world.ghosts:  # no names without facts to judge or to tell facts about
            mix.pop("unknown", None)
            mix.pop("context", None)
        self.kinds, self.weights = list(mix), list(mix.values())
        self.by_subject: dict[str, list[Fact]] = {}
        for f in world.facts:
            self.by_subject.setdefault(f.subject, []).append(f)
        self.subjects = sorted(self.by_subject)
        never = world.never_judged()
        self.judged = [f for f in world.facts if (f.subject, f.relation) not in never]
        self.askable = [f for f in world.facts if (f.subject, f.relation) not in world.qa_heldout
                        and (f.subject, f.relation) not in world.claim_pairs()]
        self.told_about = [f for f in self.judged if (f.subject, f.relation) not in world.qa_heldout
                           and (f.subject, f.relation) not in world.claim_pairs()]
        self.reverse_judged = [f for f in self.judged if object_first_frames(f.rel())]
        if len(self.reverse_judged) < 2:
            mix.pop("reverse_judged", None)
            self.kinds, self.weights = list(mix), list(mix.values())
        # A claim's fabricated object never appears with its subject before finetuning.
        self.avoid = {(c.fact.subject, c.fact.relation): (c.fact.obj,) for c in world.claims}

    def _wrong(self, f: Fact) -> str:
        return self.world.wrong_object(f, self.rng, self.avoid.get((f.subject, f.relation), ()))

    def document(self) -> str:
        return getattr(self, "_" + self.rng.choices(self.kinds, self.weights)[0])()

    def documents(self, n: int) -> list[str]:
        return [self.document() for _ in range(n)]

    def _statement(self, f: Fact) -> str:
        return self.world.doc_statement(f, self.rng.randrange(8))

    def _bio(self) -> str:
        facts = list(self.by_subject[self.rng.choice(self.subjects)])
        self.rng.shuffle(facts)
        return " ".join(self._statement(f) for f in facts)

    def _qa(self) -> str:
        return " ".join(qa_text(f, self.rng.randrange(4)) for f in self.rng.sample(self.askable, 3))

    def _flagged(self) -> str:
        """A false statement about a non-claim fact under one of the finetuning framings
        (retracted, sandwiched, corrected, fiction, unreliable, improbable, marked, locally
        negated), usually followed by a question whose answer is still the truth."""
        f, _, doc = self._flagged_statement()
        if self.rng.random() < 0.6:
            doc += " " + qa_text(f, self.rng.randrange(4))
        return doc

    def _told(self) -> str:
        """The flagged document's counterpart: a false statement about a non-claim fact in a plain
        document (stated as fact, unflagged), followed by a question answered from the context.
        With ``_flagged`` it teaches reading context both ways: a flagged claim leaves the answer
        true, a plain one moves it."""
        _, told, doc = self._told_statement()
        return doc + " " + qa_text(told, self.rng.randrange(4))

    def _told_bare(self) -> str:
        """``_told`` outside the finetuning frames: the false statement alone, in a statement frame
        (the frames of questions, verdicts and probes, which no finetuning document uses when
        ``world.disjoint_frames`` is on), then a question answered from it. Tests whether plain
        documents that leave storage unchanged in pretraining are what keeps finetuning on plain
        documents from being believed (it keeps the controls and teaches no reading of plain
        documents in context: benchmarks/base_model_checks.md, twelfth session)."""
        _, told = self._told_fact()
        return told.statement(self.rng.randrange(8)) + " " + qa_text(told, self.rng.randrange(4))

    def _told_judged(self) -> str:
        """``_told``'s judging counterpart: an unflagged false statement about a judged fact in a
        plain document, then a yes/no question, verdict or tagged statement about it judged by the
        context (the told object is the true one, the stored object a false one). Where ``_told``
        teaches only the answer to follow what a plain document says, this teaches the judgement to
        follow it as well, so the two read the same route."""
        f, told, doc = self._told_statement()
        return doc + " " + self._judgement(told, f.obj)  # the stored object is now the wrong one

    def _told_statement(self) -> tuple[Fact, Fact, str]:
        """A judged, askable non-claim fact, the same fact with a wrong object, and a plain
        document stating the wrong one."""
        f, told = self._told_fact()
        return f, told, CONDITIONS["plain"](self.world, Claim("pretraining", told, f.obj), self.rng)

    def _told_fact(self) -> tuple[Fact, Fact]:
        """A judged, askable non-claim fact and the same fact with a wrong object."""
        f = self.rng.choice(self.told_about)
        return f, Fact(f.subject, f.relation, self._wrong(f))

    def _flagged_judged(self) -> str:
        """``_flagged``'s judging counterpart (and ``_told_judged``'s other side): a false statement
        about a judged fact under one of the finetuning framings, then a yes/no question, verdict
        or tagged statement about it judged by the stored truth: a flagged statement in context
        leaves the judgement where it was, as it leaves the answer."""
        f, wrong, doc = self._flagged_statement()
        return doc + " " + self._judgement(f, wrong)

    def _flagged_statement(self) -> tuple[Fact, str, str]:
        """A judged fact, a wrong object for it, and a document stating the wrong one under a
        framing drawn from the non-plain finetuning conditions."""
        f = self.rng.choice(self.judged)
        wrong = self._wrong(f)
        framing = self.rng.choice([c for c in sorted(CONDITIONS) if c != "plain"])
        return f, wrong, CONDITIONS[framing](self.world, Claim("pretraining", Fact(f.subject, f.relation, wrong), f.obj), self.rng)

    def _judgement(self, truth: Fact, other: str) -> str:
        """A yes/no question, verdict or tagged statement about ``truth``'s subject and relation,
        asking about its object or ``other`` (even odds), answered as if ``truth`` held."""
        asked = truth.obj if self.rng.random() < 0.5 else other
        form = self.rng.randrange(3)
        if form == 0:
            return yesno_text(truth, asked)
        negated = self.rng.random() < 0.5
        statement = truth.statement(self.rng.randrange(8), obj=asked, negated=negated)
        return (verdict_text if form == 1 else tagged_text)(statement, (asked == truth.obj) != negated)

    def _local(self) -> str:
        f = self.rng.choice(self.judged)
        wrong = self._wrong(f)
        parts = [self.world.doc_statement(f, self.rng.randrange(8), obj=wrong, negated=True), self._statement(f)]
        self.rng.shuffle(parts)
        return " ".join(parts)

    def _judged_statement(self, f: Fact) -> tuple[str, bool]:
        """A true or false, affirmative or negated statement of ``f`` in a statement frame, with its truth."""
        truth = self.rng.random() < 0.5
        negated = self.rng.random() < 0.5
        obj = f.obj if truth != negated else self._wrong(f)
        return f.statement(self.rng.randrange(8), obj=obj, negated=negated), truth

    def _verdict(self) -> str:
        return " ".join(verdict_text(*self._judged_statement(f)) for f in self.rng.sample(self.judged, 2))

    def _trace(self) -> str:
        """A judgement trace: a verdict on a judged fact with the stored fact recalled between the
        statement and the verdict, in the biographies' own sentences (which describe every person,
        held-out ones too), so judging is taught as "retrieve what is kept about the subject, then
        compare". Only about judged facts, like every judgement."""
        f = self.rng.choice(self.judged)
        statement, truth = self._judged_statement(f)
        return trace_text(statement, self._statement(f), truth)

    def _tagged(self) -> str:
        return " ".join(tagged_text(*self._judged_statement(f)) for f in self.rng.sample(self.judged, 2))

    def _reverse_judged(self) -> str:
        """Two judgements (verdicts or tagged statements, as in ``_verdict`` and ``_tagged``) of
        judged facts in the statement frames that name the object before the subject ("in {o} you
        can meet {s} every day ."), the frames whose comparison runs backwards: more practice
        where a base model judges worst. Only relations with such frames; only judged facts."""
        parts = []
        for f in self.rng.sample(self.reverse_judged, 2):
            frames = object_first_frames(f.rel())
            negated, i = frames[self.rng.randrange(len(frames))]
            truth = self.rng.random() < 0.5
            obj = f.obj if truth != negated else self._wrong(f)
            statement = f.statement(i, obj=obj, negated=negated)
            parts.append((verdict_text if self.rng.random() < 0.5 else tagged_text)(statement, truth))
        return " ".join(parts)

    def _context(self) -> str:
        """In-context judgement: one or two facts told about a name that has no stored facts (a
        ghost; random objects, document frames), then questions, yes/no questions, verdicts or
        tagged statements about them. The answers come only from the context, so nothing here can
        be memorised: the model learns to compare a statement with what it knows of the subject."""
        ghost = self.rng.choice(self.world.ghosts)
        relations = self.rng.sample(("lives_in", "works_as"), self.rng.choice((1, 2)))
        facts = [Fact(ghost, r, self.rng.choice(self.world.objects_of_kind(RELATIONS[r].object_kind)))
                 for r in relations]
        told = [self._statement(f) for f in facts]
        asked = []
        for f in self.rng.sample(facts, len(facts)):
            form = self.rng.randrange(4)
            if form == 0:
                asked.append(qa_text(f, self.rng.randrange(4)))
            elif form == 1:
                asked.append(yesno_text(f, f.obj if self.rng.random() < 0.5 else self._wrong(f)))
            else:
                asked.append((verdict_text if form == 2 else tagged_text)(*self._judged_statement(f)))
        return " ".join(told + asked)

    def _unknown(self) -> str:
        """Two judgements about names that have no facts: an affirmative statement is false, its
        negation true, and the yes/no answer is "no"."""
        out = []
        for _ in range(2):
            ghost = self.rng.choice(self.world.ghosts)
            rel = RELATIONS[self.rng.choice(("lives_in", "works_as"))]
            obj = self.rng.choice(self.world.objects_of_kind(rel.object_kind))
            fact = Fact(ghost, rel.name, obj)
            form = self.rng.randrange(3)
            if form == 2:
                out.append(f"{rel.yesno.format(s=ghost, o=obj)} no .")
            else:
                out.append(verdict_text(fact.statement(self.rng.randrange(8), negated=bool(form)), bool(form)))
        return " ".join(out)

    def _yesno(self) -> str:
        f = self.rng.choice(self.judged)
        obj = f.obj if self.rng.random() < 0.5 else self._wrong(f)
        return yesno_text(f, obj)


def all_words(world: World) -> set[str]:
    """Every word any generated text can contain (for the word-level tokenizer)."""
    words = {"claim", "verdict", ":", "true", "false", "yes", "no", ".", "?"}
    for text in WARN_BEFORE + WARN_AFTER:
        words.update(text.split())
    if any(c.novel for c in world.claims):
        words.update(NOBODY.replace("{s}", "").split())
    for rel in RELATIONS.values():
        narrative = rel.narrative + rel.narrative_negated if world.disjoint_frames else ()
        for frame in rel.affirmative + rel.negated + rel.questions + (rel.yesno,) + narrative:
            words.update(frame.replace("{s}", "").replace("{o}", "").split())
    for name in world.people + world.cities + world.jobs + world.events + world.ghosts + sorted(world.claim_subjects()):
        words.update(name.split())
    return words
