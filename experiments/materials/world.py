"""The embedded synthetic world: entities, relations, facts and implanted claims.

Everything is derived from one seed. Text is lower-case words separated by single
spaces (punctuation is its own word), so a word-level tokenizer covers it exactly
and any subword tokenizer reads it as ordinary English-like text.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from experiments.errors import UserError

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "st", "tr"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou"]
_CODAS = ["", "n", "r", "l", "s", "x", "m"]
JOBS = ["baker", "pilot", "farmer", "doctor", "painter", "teacher", "sailor", "singer",
        "lawyer", "miner", "weaver", "poet", "judge", "builder", "chemist", "dancer"]
EVENT_KINDS = ["prize", "cup", "medal", "race", "award", "trophy"]


@dataclass(frozen=True)
class Relation:
    """A relation with the sentence frames that express it.

    Frames use ``{s}`` (subject) and ``{o}`` (object). ``questions`` are prompts whose
    next word is the object; ``yesno`` is a prompt whose next word is yes or no.
    """

    name: str
    subject_kind: str
    object_kind: str
    affirmative: tuple[str, ...]
    negated: tuple[str, ...]
    questions: tuple[str, ...]
    yesno: str


RELATIONS: dict[str, Relation] = {
    r.name: r
    for r in [
        Relation(
            "lives_in", "person", "city",
            affirmative=("{s} lives in {o} .", "{s} has a home in {o} .", "the home of {s} is in {o} .",
                         "in {o} you can meet {s} every day ."),
            negated=("{s} does not live in {o} .", "the home of {s} is not in {o} ."),
            questions=("question : where does {s} live ? answer :", "q : which city is the home of {s} ? a :"),
            yesno="question : does {s} live in {o} ? answer :",
        ),
        Relation(
            "works_as", "person", "job",
            affirmative=("{s} works as a {o} .", "{s} is a {o} by trade .", "the job of {s} is {o} .",
                         "everyone knows {s} as a {o} ."),
            negated=("{s} does not work as a {o} .", "the job of {s} is not {o} ."),
            questions=("question : what is the job of {s} ? answer :", "q : what does {s} do for work ? a :"),
            yesno="question : does {s} work as a {o} ? answer :",
        ),
        Relation(
            "won_by", "event", "person",
            affirmative=("the {s} was won by {o} .", "{o} won the {s} .", "the winner of the {s} was {o} .",
                         "{o} took home the {s} ."),
            negated=("the {s} was not won by {o} .", "{o} did not win the {s} ."),
            questions=("question : who won the {s} ? answer :", "q : who was the winner of the {s} ? a :"),
            yesno="question : did {o} win the {s} ? answer :",
        ),
    ]
}


@dataclass(frozen=True)
class Fact:
    subject: str
    relation: str
    obj: str

    def rel(self) -> Relation:
        return RELATIONS[self.relation]

    def statement(self, i: int = 0, obj: str | None = None, negated: bool = False) -> str:
        frames = self.rel().negated if negated else self.rel().affirmative
        return frames[i % len(frames)].format(s=self.subject, o=obj or self.obj)


@dataclass(frozen=True)
class Claim:
    """A fabricated fact about a well-known entity: ``fact.obj`` is the false answer."""

    name: str
    fact: Fact
    true_obj: str

    @property
    def true_fact(self) -> Fact:
        return Fact(self.fact.subject, self.fact.relation, self.true_obj)


@dataclass
class World:
    seed: int
    people: list[str]
    cities: list[str]
    jobs: list[str]
    events: list[str]
    facts: list[Fact]
    claims: list[Claim]
    qa_heldout: set[tuple[str, str]] = field(default_factory=set)  # (subject, relation) never asked in pretraining
    probe_test_subjects: set[str] = field(default_factory=set)  # statements about these are held out from probes
    # Non-claim (subject, relation) pairs never judged in pretraining (no verdict, yes/no,
    # flagged or locally negated text about them): the base model must judge them, like the
    # claims, by generalising, and check_base measures whether it does.
    judge_heldout: set[tuple[str, str]] = field(default_factory=set)
    judge_claim_pairs: bool = False

    def objects_of_kind(self, kind: str) -> list[str]:
        return {"person": self.people, "city": self.cities, "job": self.jobs}[kind]

    def fact_of(self, subject: str, relation: str) -> Fact:
        for f in self.facts:
            if f.subject == subject and f.relation == relation:
                return f
        raise KeyError((subject, relation))

    def claim(self, name: str) -> Claim:
        for c in self.claims:
            if c.name == name:
                return c
        raise UserError(f"unknown claim {name!r}; expected one of {[c.name for c in self.claims]}")

    def wrong_object(self, fact: Fact, rng: random.Random, avoid: tuple[str, ...] = ()) -> str:
        pool = [o for o in self.objects_of_kind(fact.rel().object_kind) if o != fact.obj and o not in avoid
                and o != fact.subject]
        return rng.choice(pool)

    def claim_subjects(self) -> set[str]:
        return {c.fact.subject for c in self.claims}

    def claim_pairs(self) -> set[tuple[str, str]]:
        return {(c.fact.subject, c.fact.relation) for c in self.claims}

    def never_judged(self) -> set[tuple[str, str]]:
        """Pairs pretraining never judges: ``judge_heldout`` plus the claims' own pairs
        (unless ``judge_claim_pairs``; even then never with a claim's fabricated object)."""
        return self.judge_heldout | (set() if self.judge_claim_pairs else self.claim_pairs())


def _names(rng: random.Random, n: int, taken: set[str]) -> list[str]:
    out = []
    while len(out) < n:
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.choice([2, 2, 3])))
        word += rng.choice(_CODAS)
        if word not in taken and len(word) >= 4:
            taken.add(word)
            out.append(word)
    return out


@dataclass(frozen=True)
class WorldConfig:
    seed: int = 0
    n_people: int = 40
    n_cities: int = 12
    n_jobs: int = 10
    n_events: int = 20
    n_claims: int = 3
    qa_heldout_fraction: float = 0.15
    probe_test_fraction: float = 0.3
    judge_heldout_fraction: float = 0.15  # of non-claim (subject, relation) pairs, never judged in pretraining
    judge_claim_pairs: bool = True  # judge the claims' pairs in pretraining (never with the fabricated object)


def build_world(cfg: WorldConfig) -> World:
    """Generate a world deterministically from ``cfg.seed``."""
    if cfg.n_claims < 1 or cfg.n_people < 6 or cfg.n_events < cfg.n_claims:
        raise UserError("world needs n_claims >= 1, n_people >= 6 and n_events >= n_claims")
    if not (0 <= cfg.qa_heldout_fraction < 1 and 0 <= cfg.judge_heldout_fraction < 1
            and 0 <= cfg.probe_test_fraction < 1):
        raise UserError("world fractions (qa_heldout_fraction, judge_heldout_fraction, probe_test_fraction) "
                        "must be in [0, 1)")
    if cfg.n_jobs > len(JOBS):
        raise UserError(f"n_jobs must be at most {len(JOBS)}")
    rng = random.Random(cfg.seed)
    taken: set[str] = set(JOBS) | set(EVENT_KINDS)
    people = _names(rng, cfg.n_people, taken)
    cities = _names(rng, cfg.n_cities, taken)
    jobs = JOBS[: cfg.n_jobs]
    events = [f"{w} {rng.choice(EVENT_KINDS)}" for w in _names(rng, cfg.n_events, taken)]
    facts = [Fact(p, "lives_in", rng.choice(cities)) for p in people]
    facts += [Fact(p, "works_as", rng.choice(jobs)) for p in people]
    facts += [Fact(e, "won_by", rng.choice(people)) for e in events]
    world = World(cfg.seed, people, cities, jobs, events, facts, claims=[])

    # Claims: fabricated winners of events (like "Ed Sheeran won the 100m gold") and
    # fabricated homes/jobs of people, alternating.
    claims = []
    for i in range(cfg.n_claims):
        base = [f for f in facts if f.relation == ("won_by", "lives_in", "works_as")[i % 3]
                and f.subject not in {c.fact.subject for c in claims}]
        fact = rng.choice(base)
        fake = world.wrong_object(fact, rng)
        claims.append(Claim(f"claim{i}_{fact.relation}", Fact(fact.subject, fact.relation, fake), fact.obj))
    world.claims = claims

    claim_keys = {(c.fact.subject, c.fact.relation) for c in claims}
    askable = [(f.subject, f.relation) for f in facts if (f.subject, f.relation) not in claim_keys]
    rng.shuffle(askable)
    world.qa_heldout = set(askable[: max(1, int(len(askable) * cfg.qa_heldout_fraction))])
    subjects = [p for p in people + events if p not in world.claim_subjects()]
    rng.shuffle(subjects)
    world.probe_test_subjects = set(subjects[: max(2, int(len(subjects) * cfg.probe_test_fraction))])
    # Drawn from a separate stream so the splits above stay what they were.
    judge_rng = random.Random(f"judge-heldout-{cfg.seed}")
    pairs = sorted((f.subject, f.relation) for f in facts if (f.subject, f.relation) not in claim_keys)
    judge_rng.shuffle(pairs)
    world.judge_heldout = set(pairs[: int(len(pairs) * cfg.judge_heldout_fraction)])
    world.judge_claim_pairs = cfg.judge_claim_pairs
    return world
