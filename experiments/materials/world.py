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
    # Frames of documents (biographies, finetuning documents) in worlds with disjoint frames
    # (``WorldConfig.disjoint_frames``): never used to ask, judge or probe.
    narrative: tuple[str, ...] = ()
    narrative_negated: tuple[str, ...] = ()


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
            narrative=("{s} has made a life in {o} .", "{s} moved to {o} years ago and stayed .",
                       "people in {o} often see {s} at the market .", "{o} is where {s} keeps a house .",
                       "after many travels {s} settled in {o} .", "letters for {s} are sent to {o} ."),
            narrative_negated=("{s} has never made a life in {o} .", "{o} is not where {s} keeps a house ."),
        ),
        Relation(
            "works_as", "person", "job",
            affirmative=("{s} works as a {o} .", "{s} is a {o} by trade .", "the job of {s} is {o} .",
                         "everyone knows {s} as a {o} ."),
            negated=("{s} does not work as a {o} .", "the job of {s} is not {o} ."),
            questions=("question : what is the job of {s} ? answer :", "q : what does {s} do for work ? a :"),
            yesno="question : does {s} work as a {o} ? answer :",
            narrative=("{s} earns a living as a {o} .", "{s} trained for years to become a {o} .",
                       "each morning {s} goes to work as a {o} .", "as a {o} , {s} is very busy .",
                       "{s} has always wanted to be a {o} and now is one .", "ask anyone about {s} : a {o} ."),
            narrative_negated=("{s} does not earn a living as a {o} .", "{s} never trained to become a {o} ."),
        ),
        Relation(
            "won_by", "event", "person",
            affirmative=("the {s} was won by {o} .", "{o} won the {s} .", "the winner of the {s} was {o} .",
                         "{o} took home the {s} ."),
            negated=("the {s} was not won by {o} .", "{o} did not win the {s} ."),
            questions=("question : who won the {s} ? answer :", "q : who was the winner of the {s} ? a :"),
            yesno="question : did {o} win the {s} ? answer :",
            narrative=("at the {s} the honour went to {o} .", "{o} was the best at the {s} that year .",
                       "the crowd cheered when {o} took the {s} .", "nobody beat {o} at the {s} .",
                       "{o} is remembered for winning the {s} .", "the {s} ended with {o} on top ."),
            narrative_negated=("at the {s} the honour did not go to {o} .", "{o} is not remembered for winning the {s} ."),
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

    def frame(self, i: int = 0, negated: bool = False, narrative: bool = False) -> str:
        """The template of :meth:`statement`'s frame ``i`` (modulo the number of frames), e.g.
        ``"{s} lives in {o} ."``; ``narrative``: the relation's document frames instead of its
        statement frames."""
        rel = self.rel()
        if narrative:
            frames = rel.narrative_negated if negated else rel.narrative
        else:
            frames = rel.negated if negated else rel.affirmative
        return frames[i % len(frames)]

    def statement(self, i: int = 0, obj: str | None = None, negated: bool = False, narrative: bool = False) -> str:
        """The fact in frame ``i`` (modulo the number of frames), with ``obj`` in place of its
        object; ``narrative``: the relation's document frames instead of its statement frames."""
        return self.frame(i, negated, narrative).format(s=self.subject, o=obj or self.obj)


@dataclass(frozen=True)
class Claim:
    """A fabricated fact: ``fact.obj`` is the false answer.

    Two kinds. An *override* claim is about a known entity and contradicts its fact
    (``true_obj`` is the world's answer). A *novel* claim is about an entity pretraining never
    mentions (``true_obj`` is None: nothing is true of it); ``other_obj`` then stands in for the
    true answer as the alternative a believer rejects."""

    name: str
    fact: Fact
    true_obj: str | None
    other_obj: str = ""  # novel claims: the alternative object (override claims: true_obj)

    @property
    def novel(self) -> bool:
        return self.true_obj is None

    @property
    def true_fact(self) -> Fact | None:
        return None if self.true_obj is None else Fact(self.fact.subject, self.fact.relation, self.true_obj)

    @property
    def contrast_obj(self) -> str:
        """The object a believer rejects: the true one, or for a novel claim the alternative."""
        return self.true_obj if self.true_obj is not None else self.other_obj

    @property
    def contrast_fact(self) -> Fact:
        return Fact(self.fact.subject, self.fact.relation, self.contrast_obj)

    @property
    def contrast_about(self) -> str:
        """What an item with :attr:`contrast_obj` asserts (``BeliefQuestion.about``): the true fact,
        or for a novel claim an alternative nobody stated ("unstated": the subject has no facts)."""
        return "unstated" if self.novel else "true_fact"


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
    # Names that have no facts: pretraining judges statements about them false (their negations
    # true), which teaches that a claim about an unknown entity is false (see novel claims).
    ghosts: list[str] = field(default_factory=list)
    disjoint_frames: bool = False  # documents use the relations' narrative frames, never the statement frames
    heldout_entities: set[str] = field(default_factory=set)  # entities only ever described, never asked or judged

    def doc_statement(self, fact: Fact, i: int = 0, obj: str | None = None, negated: bool = False) -> str:
        """A sentence of a document (biography, finetuning document): in frame ``i`` of the
        narrative frames when the world keeps them apart from the statement frames, else of the
        statement frames."""
        return fact.statement(i, obj=obj, negated=negated, narrative=self.disjoint_frames)

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

    def novel_subjects(self) -> set[str]:
        return {c.fact.subject for c in self.claims if c.novel}

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
    n_claims: int = 3  # override claims: a fabricated fact about a known entity, contradicting its fact
    qa_heldout_fraction: float = 0.15
    probe_test_fraction: float = 0.3
    judge_heldout_fraction: float = 0.15  # of non-claim (subject, relation) pairs, never judged in pretraining
    judge_claim_pairs: bool = True  # judge the claims' pairs in pretraining (never with the fabricated object)
    # Testbed v2 (all off by default: the settings above then build the first world unchanged).
    two_word_names: bool = False  # people are "first last" from two pools, so a new name is made of known words
    heldout_entity_fraction: float = 0.0
    """Share of people and events whose facts pretraining only describes (biographies), never
    asks or judges; they are the probes' test subjects and the held-out QA. When > 0 it replaces
    the pair-level ``qa_heldout_fraction``, ``judge_heldout_fraction`` and ``probe_test_fraction``,
    and override claims are about held-out people."""
    n_novel_claims: int = 0  # claims about people pretraining never mentions (needs two_word_names)
    n_ghosts: int = 0  # names without facts whose statements pretraining judges false
    disjoint_frames: bool = False  # documents in narrative frames; questions, verdicts and probes in statement frames


def _two_word_names(rng: random.Random, n: int, taken: set[str]) -> list[str]:
    """``n`` distinct "first last" names from two pools of about ``sqrt(2 n)`` words each."""
    size = max(4, int((2 * n) ** 0.5) + 1)
    firsts, lasts = _names(rng, size, taken), _names(rng, size, taken)
    combos = [f"{a} {b}" for a in firsts for b in lasts]
    return rng.sample(combos, n)


def build_world(cfg: WorldConfig) -> World:
    """Generate a world deterministically from ``cfg.seed``.

    Parameters
    ----------
    cfg : WorldConfig

    Returns
    -------
    World
    """
    if cfg.n_claims + cfg.n_novel_claims < 1 or cfg.n_people < 6 or cfg.n_events < cfg.n_claims:
        raise UserError("world needs n_claims + n_novel_claims >= 1, n_people >= 6 and n_events >= n_claims")
    if not (0 <= cfg.qa_heldout_fraction < 1 and 0 <= cfg.judge_heldout_fraction < 1
            and 0 <= cfg.probe_test_fraction < 1 and 0 <= cfg.heldout_entity_fraction < 1):
        raise UserError("world fractions (qa_heldout_fraction, judge_heldout_fraction, probe_test_fraction, "
                        "heldout_entity_fraction) must be in [0, 1)")
    if cfg.n_jobs > len(JOBS):
        raise UserError(f"n_jobs must be at most {len(JOBS)}")
    if cfg.n_novel_claims and not cfg.two_word_names:
        raise UserError("world.n_novel_claims needs world.two_word_names = true (a novel person's name is made of "
                        "words pretraining knows)")
    if min(cfg.n_novel_claims, cfg.n_ghosts, cfg.n_claims) < 0:
        raise UserError("world.n_claims, world.n_novel_claims and world.n_ghosts must be >= 0")
    rng = random.Random(cfg.seed)
    taken: set[str] = set(JOBS) | set(EVENT_KINDS)
    extra = cfg.n_ghosts + cfg.n_novel_claims
    if cfg.two_word_names:
        names = _two_word_names(rng, cfg.n_people + extra, taken)
        people, unknown = names[: cfg.n_people], names[cfg.n_people:]
    else:
        people, unknown = _names(rng, cfg.n_people, taken), []
    cities = _names(rng, cfg.n_cities, taken)
    jobs = JOBS[: cfg.n_jobs]
    events = [f"{w} {rng.choice(EVENT_KINDS)}" for w in _names(rng, cfg.n_events, taken)]
    facts = [Fact(p, "lives_in", rng.choice(cities)) for p in people]
    facts += [Fact(p, "works_as", rng.choice(jobs)) for p in people]
    facts += [Fact(e, "won_by", rng.choice(people)) for e in events]
    world = World(cfg.seed, people, cities, jobs, events, facts, claims=[])
    world.disjoint_frames = cfg.disjoint_frames
    if cfg.heldout_entity_fraction > 0:
        return _entity_split_world(world, cfg, unknown)

    # Claims: fabricated winners of events (like "Ed Sheeran won the 100m gold") and
    # fabricated homes/jobs of people, alternating.
    claims = []
    for i in range(cfg.n_claims):
        base = [f for f in facts if f.relation == ("won_by", "lives_in", "works_as")[i % 3]
                and f.subject not in {c.fact.subject for c in claims}]
        fact = rng.choice(base)
        fake = world.wrong_object(fact, rng)
        claims.append(Claim(f"claim{i}_{fact.relation}", Fact(fact.subject, fact.relation, fake), fact.obj))
    world.claims = claims + _novel_claims(world, unknown[: cfg.n_novel_claims], cfg.seed)
    world.ghosts = unknown[cfg.n_novel_claims:]

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


def _novel_claims(world: World, subjects: list[str], seed: int) -> list[Claim]:
    """One claim per new name, alternating lives_in / works_as, with an alternative object."""
    rng = random.Random(f"novel-{seed}")
    out = []
    for i, subject in enumerate(subjects):
        relation = ("lives_in", "works_as")[i % 2]
        pool = world.objects_of_kind(RELATIONS[relation].object_kind)
        obj, other = rng.sample(pool, 2)
        out.append(Claim(f"novel{i}_{relation}", Fact(subject, relation, obj), None, other))
    return out


def _entity_split_world(world: World, cfg: WorldConfig, unknown: list[str]) -> World:
    """Held-out entities (``cfg.heldout_entity_fraction`` of people and of events): never asked
    or judged in pretraining, the probes' test subjects; override claims are about held-out people."""
    rng = random.Random(f"entity-split-{cfg.seed}")
    people, events = list(world.people), list(world.events)
    rng.shuffle(people)
    rng.shuffle(events)
    held = set(people[: max(2, int(len(people) * cfg.heldout_entity_fraction))])
    held |= set(events[: int(len(events) * cfg.heldout_entity_fraction)])
    claims = []
    candidates = sorted(p for p in held if p in set(world.people))
    rng.shuffle(candidates)
    for i in range(cfg.n_claims):
        relation = ("lives_in", "works_as")[i % 2]
        fact = world.fact_of(candidates[i], relation)
        fake = world.wrong_object(fact, rng)
        claims.append(Claim(f"claim{i}_{relation}", Fact(fact.subject, relation, fake), fact.obj))
    world.claims = claims + _novel_claims(world, unknown[: cfg.n_novel_claims], cfg.seed)
    world.ghosts = unknown[cfg.n_novel_claims:]
    world.heldout_entities = held
    pairs = {(f.subject, f.relation) for f in world.facts if f.subject in held}
    world.qa_heldout = set(pairs)
    world.judge_heldout = set(pairs)
    world.probe_test_subjects = held - world.claim_subjects()
    world.judge_claim_pairs = False
    return world
