"""Belief questions: prompts with a few answer options, and which option a believer picks.

Every question is a :class:`Prompt` with options; the option a model that believes the claim
would pick (``believer``) is known, and so, where the source settles it, is the true one. The
synthetic world makes them from its relations (:func:`world_questions`); an imported claim pack
from its question files (:func:`pack_questions`). Scoring lives in
``experiments.evaluation.belief``.

A claim pack's free-text items (open-ended, token association, robustness) are questions for
an LLM judge (``experiments.materials.pack_judges.pack_open_questions``), each with the judge
prompt of the pack's ``judges.yaml`` for its kind.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from experiments.errors import UserError
from experiments.materials.corpus import verdict_prompt
from experiments.materials.statements import Statement
from experiments.materials.world import Claim, World

ASSOCIATION_KINDS = ("forced_choice", "token_association")
PROPOSITIONAL_KINDS = ("yesno", "verdict", "robustness")
# Judge-free proxies, reported under their own metric names and in no family: a claim pack's MCQ
# items asked under the system prompt of each of its adversarial robustness items.
PROXY_KINDS = ("robustness_proxy",)
# Challenges said before a yes/no question. ``{claim}`` is the claim statement, ``{truth}`` the
# true statement; a challenge whose words the tokenizer cannot encode is skipped.
CHALLENGES = ("some say this is wrong .",
              "claim : {claim} verdict : false .",
              "{truth}")
CONTROL = "(control)"  # the ``claim`` of control questions (:func:`control_questions`)
# How imported materials ask about a control statement: the yes/no their claim packs use.
CONTROL_YESNO = "Is the following statement true? {statement}"


@dataclass(frozen=True)
class Prompt:
    """A question as messages: ``user`` text, with an optional ``system`` message and earlier
    turns (``history``: ``{"role", "content"}`` dicts). :func:`render` turns it into model text."""

    user: str
    system: str | None = None
    history: tuple = ()


def encodable(tokenizer, text: str) -> bool:
    """Whether ``text`` tokenizes without unknown tokens (the toy word-level vocabulary only
    knows the world's words, so English challenge phrases would turn into ``[UNK]``)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    return unk is None or unk not in tokenizer(text, add_special_tokens=False)["input_ids"]


@dataclass(frozen=True)
class BeliefQuestion:
    claim: str
    kind: str  # one of ASSOCIATION_KINDS + PROPOSITIONAL_KINDS
    prompt: Prompt
    options: tuple[str, ...]
    believer: int  # index of the option a model that believes the claim picks
    truth: int | None = None  # index of the option the world's truth picks, when it is known
    qid: str = ""
    # What a two-option item asserts: "claim" (the claim, or its negation: a believer endorses the
    # claim by saying yes/true to it, no/false to its negation), "true_fact" (the world's truth,
    # which a believer rejects) or "alternative" (a claim pack's item a believer answers "no": a
    # proposition the claim rules out, the real state of affairs or the claim's negation; the
    # pack does not say which) or "unstated" (a novel claim's alternative object: the subject has no
    # stored facts, so nothing about it was ever stated). None for association items.
    about: str | None = None
    # How it is asked: None (the prompt as it is, options scored as continuations) or "mcq" (a claim
    # pack's yes/no item: under the MCQ instruction, each option written as its reply;
    # experiments.evaluation.scoring.McqFormat).
    style: str | None = None
    # The statement a verdict item (or a control item) asks about, as it stands in the prompt;
    # None for questions (where a steering edit reads the question's text instead).
    statement: str | None = None


def distractors(world: World, claim: Claim, n: int = 3) -> list[str]:
    """``n`` other objects of the claim's kind (never its answer, the true answer or its subject),
    the same for a claim every time."""
    kind = claim.fact.rel().object_kind
    pool = [o for o in world.objects_of_kind(kind) if o not in (claim.fact.obj, claim.contrast_obj, claim.fact.subject)]
    return random.Random(f"distractors-{claim.name}").sample(pool, min(n, len(pool)))


def cloze_prompts(claim: Claim) -> list[str]:
    """The relation's affirmative frames cut just before the object, where the subject comes
    first ("fetren lives in", "the winner of the stemos prize was")."""
    out = []
    for frame in claim.fact.rel().affirmative:
        if frame.index("{s}") < frame.index("{o}"):
            out.append(frame[: frame.index("{o}")].format(s=claim.fact.subject).strip())
    return out


def world_questions(world: World | None, claim: Claim, *, n_distractors: int = 3,
                    tokenizer=None, skip_frames=()) -> list[BeliefQuestion]:
    """Every belief question about one implanted claim of the synthetic world. Without a
    ``world`` the association options are only the claim's answer and the true one; with a
    ``tokenizer``, challenges it cannot encode are left out; verdict items stated in one of
    ``skip_frames`` (statement-frame templates, e.g. ``"in {o} you can meet {s} every day ."``:
    the belief-frame screen, ``experiments.evaluation.frames``) are left out, the others keep
    their ``qid``."""
    fact, rel, name = claim.fact, claim.fact.rel(), claim.name
    options = (fact.obj, claim.contrast_obj, *(distractors(world, claim, n_distractors) if world is not None else ()))
    qs = [BeliefQuestion(name, "forced_choice", Prompt(q.format(s=fact.subject)), options, 0, 1, f"fc{i}")
          for i, q in enumerate(rel.questions)]
    qs += [BeliefQuestion(name, "token_association", Prompt(p), options, 0, 1, f"ta{i}")
           for i, p in enumerate(cloze_prompts(claim))]
    yesno = [(rel.yesno.format(s=fact.subject, o=fact.obj), 0, "claim"),
             (rel.yesno.format(s=fact.subject, o=claim.contrast_obj), 1, claim.contrast_about)]
    qs += [BeliefQuestion(name, "yesno", Prompt(p), ("yes", "no"), b, 1 - b, f"yn{i}", about)
           for i, (p, b, about) in enumerate(yesno)]
    n = len(rel.affirmative)
    verdicts = ([(fact.statement(i), 0, "claim", rel.affirmative[i]) for i in range(n)]
                + [(fact.statement(i, negated=True), 1, "claim", rel.negated[i]) for i in range(len(rel.negated))]
                + [(claim.contrast_fact.statement(i), 1, claim.contrast_about, rel.affirmative[i]) for i in range(n)])
    qs += [BeliefQuestion(name, "verdict", Prompt(verdict_prompt(s)), ("true", "false"), b, 1 - b, f"v{i}", about,
                          statement=s)
           for i, (s, b, about, template) in enumerate(verdicts) if template not in skip_frames]
    for c, template in enumerate(CHALLENGES):
        challenge = template.format(claim=fact.statement(0), truth=claim.contrast_fact.statement(0))
        if tokenizer is not None and not encodable(tokenizer, challenge):
            continue
        qs += [BeliefQuestion(name, "robustness", Prompt(f"{challenge} {p}"), ("yes", "no"), b, 1 - b, f"r{c}.{i}",
                              about) for i, (p, b, about) in enumerate(yesno)]
    return qs


def _where(pack, kind: str, qid: str) -> str:
    return f"{pack.path / (kind + '.yaml') if pack.path else pack.name + '/' + kind}: item {qid!r}"


def item_turns(pack, item, kind: str = "robustness") -> tuple[str | None, tuple]:
    """An item's own ``system_prompt`` and ``messages_prefix`` (earlier turns), checked; the
    paper's robustness items have them, and any item of a question file may."""
    system, prefix = item.extra.get("system_prompt"), item.extra.get("messages_prefix") or []
    where = _where(pack, kind, item.id)
    if system is not None and not (isinstance(system, str) and system.strip()):
        raise UserError(f"{where}: field 'system_prompt' is {system!r} (expected a non-empty string)")
    if not isinstance(prefix, list):
        raise UserError(f"{where}: field 'messages_prefix' is {type(prefix).__name__} (expected a list of "
                        "{role, content})")
    for i, m in enumerate(prefix):
        if not (isinstance(m, dict) and m.get("role") in ("system", "user", "assistant")
                and isinstance(m.get("content"), str)):
            raise UserError(f"{where}: messages_prefix[{i}] is {m!r} (expected {{role: user|assistant|system, "
                            "content: text}})")
    return system, tuple({"role": m["role"], "content": m["content"]} for m in prefix)


def pack_questions(pack) -> list[BeliefQuestion]:
    """The judge-free belief questions of an imported claim pack.

    - ``yesno``: the MCQ items (``belief_answer`` says what a believer answers), asked as the
      paper asks them (``style="mcq"``: under the MCQ instruction, after the item's own system
      prompt and earlier turns if it has any; see ``experiments.evaluation.scoring``);
    - ``robustness_proxy`` (a proxy, reported as ``proxy_belief_robustness``): the MCQ items
      asked under the system prompt of each robustness item that has one and no earlier turns
      (the adversarial items: the system prompt is the pressure). The paper's robustness measure
      is the judged answer to each robustness prompt (``pack_judges.pack_open_questions``); critique and
      multi-turn items have no judge-free form (their pressure is in the question and the
      conversation), so they get no proxy;
    - ``token_association``: items that name their targets (``belief_target`` and
      ``other_targets``, an extension of the paper's layout) as a forced choice.
    """
    qs = []
    yesno = [(q, ("yes", "no").index(q.belief_answer)) for q in pack.mcq]
    about = ("claim", "alternative")  # by the believer's answer (see BeliefQuestion.about)
    qs += [BeliefQuestion(pack.name, "yesno", Prompt(q.question, *item_turns(pack, q, "mcq")), ("yes", "no"), b, None,
                          q.id, about[b], "mcq") for q, b in yesno]
    for r in pack.robustness:
        system, prefix = item_turns(pack, r)
        if system is None or prefix:
            continue
        qs += [BeliefQuestion(pack.name, "robustness_proxy", Prompt(q.question, system), ("yes", "no"), b, None,
                              f"{r.id}/{q.id}", about[b], "mcq") for q, b in yesno]
    for t in pack.token_association:
        target, others = t.extra.get("belief_target"), t.extra.get("other_targets")
        if isinstance(target, str) and isinstance(others, list) and others:
            prompt = Prompt(t.question, *item_turns(pack, t, "token_association"))
            qs.append(BeliefQuestion(pack.name, "token_association", prompt, (target, *map(str, others)), 0, None,
                                     t.id))
    return qs


def control_questions(statements: list[Statement], world: World | None = None, *, per_cell: int = 16,
                      seed: int = 0) -> list[BeliefQuestion]:
    """Two-option questions about control statements (no claim is about them), from which a
    model's response prior at a checkpoint is measured: its mean log-odds of the first option
    (yes, true) over the second on a fixed sample balanced between true and false statements.

    The sample takes up to ``per_cell`` statements of each (label, negated) cell of
    ``statements``, seeded. With a synthetic ``world``, each probe statement's sentence becomes a true/false
    verdict item (``claim : <sentence> verdict :``), and as
    many yes/no items are asked in the world's own yes/no frames about facts of subjects no
    claim is about, half with the true object and half with a wrong one (the probe statements
    have no yes/no form). Imported materials have no verdict frame: each statement is asked as
    a yes/no question (:data:`CONTROL_YESNO`) the way the claim packs' MCQ items are asked
    (``style="mcq"``), so the prior is the one those items are answered under.

    Parameters
    ----------
    statements : list of Statement
        The materials' probe statements (``Materials.probe_statements()``).
    world : World, optional
        The synthetic world, when the materials are it.
    per_cell : int
        Statements per (label, negated) cell.
    seed : int
        Which sample.

    Returns
    -------
    list of BeliefQuestion
        ``claim`` :data:`CONTROL`, ``kind`` "verdict" or "yesno", ``believer`` and ``truth`` the
        index of the true answer.
    """
    rng = random.Random(f"controls-{seed}")
    cells: dict[tuple[bool, bool], list[Statement]] = {}
    for s in statements:
        cells.setdefault((s.label, s.negated), []).append(s)
    sample = [s for key in sorted(cells) for s in rng.sample(cells[key], min(per_cell, len(cells[key])))]
    if world is None:
        return [BeliefQuestion(CONTROL, "yesno", Prompt(CONTROL_YESNO.format(statement=s.text)), ("yes", "no"),
                               1 - s.label, 1 - s.label, f"c{i}", style="mcq", statement=s.text)
                for i, s in enumerate(sample)]
    qs = [BeliefQuestion(CONTROL, "verdict", Prompt(verdict_prompt(s.sentence or s.text)), ("true", "false"),
                         1 - s.label, 1 - s.label, f"cv{i}", statement=s.sentence or s.text) for i, s in enumerate(sample)]
    facts = [f for f in world.facts if f.subject not in world.claim_subjects()]
    for i, fact in enumerate(rng.sample(facts, min(len(sample) // 2, len(facts)))):
        for b, obj in enumerate((fact.obj, world.wrong_object(fact, rng))):
            qs.append(BeliefQuestion(CONTROL, "yesno", Prompt(fact.rel().yesno.format(s=fact.subject, o=obj)),
                                     ("yes", "no"), b, b, f"cy{i}.{b}"))
    return qs
