"""The in-context control: what a model concludes when condition documents are in its
context rather than in its weights.

For each claim, k documents of a condition (k swept, bounded by the model's context) are put
before a question. Belief questions ask about the claim (forced choice claim vs true answer;
yes/no about both, so a believer answers yes once and no once). Control questions ask about
the facts of the documents' *context sentences*, which every condition states as true and a
negated document does not change: a model that answers "no" whenever a retraction is in
context would look like it disbelieves the claim, and the control exposes that (its yes/no
controls are balanced between yes and no answers).
"""
from __future__ import annotations

import random

import pandas as pd

from experiments.materials.conditions import condition_documents_with_spans
from experiments.evaluation.scoring import option_logprobs, render
from experiments.materials.questions import Prompt
from experiments.materials.world import Fact, World
from interp import LoadedModel
from interp.logprobs import prompt_ids

DEFAULT_KS = (0, 1, 2, 3, 4, 8)  # bounded per model by its context (usable_ks)
MEASURES = ("belief_forced_choice", "belief_yesno", "control_forced_choice", "control_yesno")


def _sentence_facts(world: World) -> dict[str, Fact]:
    """Every affirmative sentence the world's frames can make about a fact -> that fact."""
    return {f.statement(i): f for f in world.facts for i in range(len(f.rel().affirmative))}


def _questions(world: World, claim_index: int, control: list[Fact], rng: random.Random):
    """(measure, question, options, index of the option counted as a hit) for one claim.

    Belief hits are the believer's option; control hits are the true option."""
    claim = world.claims[claim_index]
    fact, rel = claim.fact, claim.fact.rel()
    out = [("belief_forced_choice", q.format(s=fact.subject), (fact.obj, claim.contrast_obj), 0) for q in rel.questions]
    out += [("belief_yesno", rel.yesno.format(s=fact.subject, o=fact.obj), ("yes", "no"), 0),
            ("belief_yesno", rel.yesno.format(s=fact.subject, o=claim.contrast_obj), ("yes", "no"), 1)]
    for f in control:
        wrong = world.wrong_object(f, rng)
        out += [("control_forced_choice", q.format(s=f.subject), (f.obj, wrong), 0) for q in f.rel().questions]
        out += [("control_yesno", f.rel().yesno.format(s=f.subject, o=f.obj), ("yes", "no"), 0),
                ("control_yesno", f.rel().yesno.format(s=f.subject, o=wrong), ("yes", "no"), 1)]
    return out


def usable_ks(lm: LoadedModel, prompts_by_k: dict[int, list[str]], options: int = 4) -> list[int]:
    """The ks whose every prompt (plus a few answer tokens) fits the model's context, counted in
    the tokens the model reads (``interp.logprobs.prompt_ids``)."""
    limit = lm.max_context
    if limit is None:
        return sorted(prompts_by_k)
    out = []
    for k, prompts in sorted(prompts_by_k.items()):
        lengths = [len(x) for x in prompt_ids(lm.tokenizer, prompts)] if prompts else [0]
        if max(lengths) + options <= limit:
            out.append(k)
    return out


def incontext_items(world: World, condition: str = "negated", *, ks=DEFAULT_KS, seed: int = 0,
                    n_draws: int = 5) -> list[tuple]:
    """Every in-context question as ``(k, claim, measure, user text, options, hit index)``.

    ``n_draws`` different document sets per claim (drawn with ``seed``, as the finetuning
    documents of that seed are) are each asked every question with their first k documents in
    context; the control questions ask about the context sentences of the set's first
    document, at every k (k=0: the same questions without context)."""
    per_draw = max(1, max(ks))
    docs = condition_documents_with_spans(world, condition, n_draws * per_draw, seed)
    facts = _sentence_facts(world)
    items = []
    for ci, claim in enumerate(world.claims):
        for d in range(n_draws):
            start = (ci * n_draws + d) * per_draw
            draw = docs[start:start + per_draw]
            control = [facts[t] for t in draw[0].texts("context") if t in facts]
            questions = _questions(world, ci, control, random.Random(f"incontext-control-{seed}-{ci}-{d}"))
            for k in ks:
                context = " ".join(doc.text for doc in draw[:k])
                items += [(k, claim.name, measure, f"{context} {q}" if context else q, options, hit)
                          for measure, q, options, hit in questions]
    return items


def incontext_sweep(lm: LoadedModel, world: World, condition: str = "negated", *, ks=DEFAULT_KS, seed: int = 0,
                    n_draws: int = 5, batch_size: int = 128) -> pd.DataFrame:
    """Hit rates per claim and k with k ``condition`` documents in context (questions from
    :func:`incontext_items`, rendered for ``lm``; ks whose prompts do not fit its context are
    dropped). Rows ``condition, seed, k, claim, measure, value, n_questions``, ``measure`` in
    ``MEASURES`` (belief: the believer's answer wins; control: the true answer wins)."""
    items = [(k, c, m, render(lm.tokenizer, Prompt(user)), o, h)
             for k, c, m, user, o, h in incontext_items(world, condition, ks=ks, seed=seed, n_draws=n_draws)]
    by_k: dict[int, list[str]] = {}
    for it in items:
        by_k.setdefault(it[0], []).append(it[3])
    keep = set(usable_ks(lm, by_k))
    items = [it for it in items if it[0] in keep]
    scores = option_logprobs(lm, [it[3] for it in items], [it[4] for it in items], batch_size)
    frame = pd.DataFrame([{"k": k, "claim": c, "measure": m, "hit": float(int(s.argmax()) == hit)}
                          for (k, c, m, _p, _o, hit), s in zip(items, scores)])
    columns = ["condition", "seed", "k", "claim", "measure", "value", "n_questions"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    out = frame.groupby(["k", "claim", "measure"], sort=True).hit.agg(["mean", "size"]).reset_index()
    out = out.rename(columns={"mean": "value", "size": "n_questions"}).assign(condition=condition, seed=seed)
    return out[columns]


def incontext_rows(sweep: pd.DataFrame) -> list[dict]:
    """The sweep as tidy metric rows (``incontext_<measure>_k<k>`` per claim), for the
    pipeline's per-checkpoint tables."""
    return [{"claim": r.claim, "metric": f"incontext_{r.measure}_k{int(r.k)}", "value": float(r.value)}
            for r in sweep.itertuples()]
