"""Steer the attribute a model keeps at a person's name, and read what it then answers.

The testbed's causal test of where a judgement reads a fact (``benchmarks/subject_steering.py``,
``notebooks/04_where_belief_lives.ipynb``): a probe decodes a person's city or job from the
residual stream at the name's last token (:func:`fit_attribute_probe`); adding the difference of
two of its class directions there (:func:`attribute_edit`, an ``interp.AddDirection``) moves what
the probe reads; :func:`answers_under` then asks the open question, the yes/no question and the
verdict with the edit in place. If the verdict follows the open answer, the judgement reads the
same stored attribute.

    probe = fit_attribute_probe(lm, world, "lives_in", layer=1)
    edit = attribute_edit(probe, "pulair pubrousto", state, toward="purim", away="zotir", alpha=2.0)
    answers_under(lm, "lives_in", "pulair pubrousto", claimed="purim", other="zotir", edit=edit)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

import interp
from experiments.materials.corpus import verdict_prompt
from experiments.materials.world import RELATIONS, World


def name_states(lm, names: list[str]) -> np.ndarray:
    """Residuals ``[names, layers + 1, d_model]`` at each name's last token, the name alone as
    input (in a causal model the state there is the same in any sentence that starts with it)."""
    return interp.residuals(lm, names, position="last").numpy()


@dataclass
class AttributeProbe:
    """A multinomial logistic probe of ``relation``'s object at the name, at residual ``layer``."""

    relation: str
    layer: int
    model: LogisticRegression
    heldout_acc: float  # on the world's held-out people (chance: one over the number of objects)

    def direction(self, toward: str, away: str) -> np.ndarray:
        """The logit direction that raises ``toward`` over ``away``."""
        classes = list(self.model.classes_)
        return self.model.coef_[classes.index(toward)] - self.model.coef_[classes.index(away)]

    def proba(self, states: np.ndarray) -> dict[str, np.ndarray]:
        """P(object) per object for ``states`` ``[n, d_model]`` (at this probe's layer)."""
        p = self.model.predict_proba(states)
        return {c: p[:, i] for i, c in enumerate(self.model.classes_)}


def fit_attribute_probe(lm, world: World, relation: str, layer: int) -> AttributeProbe:
    """Fit the probe on the judged people of ``world`` (claim subjects left out) and score it on
    the held-out people.

    Parameters
    ----------
    lm:
        An ``interp.LoadedModel`` of a model of ``world``.
    world:
        The synthetic world (held-out people are where the probe is scored; with none, on the
        people it was fit on).
    relation:
        "lives_in" or "works_as".
    layer:
        Residual index (0: embeddings, i + 1: after block i).

    Returns
    -------
    AttributeProbe
    """
    obj = {f.subject: f.obj for f in world.facts if f.relation == relation}
    people = sorted(set(obj) - world.claim_subjects())
    judged = [p for p in people if p not in world.heldout_entities]
    held = [p for p in people if p in world.heldout_entities] or judged
    model = LogisticRegression(C=1.0, max_iter=2000).fit(name_states(lm, judged)[:, layer], [obj[p] for p in judged])
    score = float(model.score(name_states(lm, held)[:, layer], [obj[p] for p in held]))
    return AttributeProbe(relation, layer, model, score)


def attribute_edit(probe: AttributeProbe, subject: str, state: np.ndarray, toward: str, away: str,
                   alpha: float, random_direction: np.random.Generator | None = None) -> interp.AddDirection:
    """The edit at ``subject``'s last token that moves the probe's reading from ``away`` toward
    ``toward`` by ``alpha`` times its current preference for ``away`` (1: a tie; 2: it reads
    ``toward`` as surely as it read ``away``).

    Parameters
    ----------
    state:
        The subject's residual at the probe's layer (``name_states(...)[i, probe.layer]``).
    random_direction:
        A generator: a random direction of the same norm instead (the control).
    """
    w = probe.direction(toward, away)
    gap = -float(w @ state)  # how far the probe prefers `away` now, in logit units
    vec = alpha * max(gap, 0.0) * w / float(w @ w)
    if random_direction is not None:
        r = random_direction.standard_normal(vec.shape)
        vec = r / np.linalg.norm(r) * np.linalg.norm(vec)
    return interp.AddDirection(torch.tensor(vec, dtype=torch.float32), layers=[probe.layer],
                               position=interp.Span(subject, reduce="last"))


def answers_under(lm, relation: str, subject: str, claimed: str, other: str,
                  edit: interp.AddDirection | None = None) -> dict[str, float]:
    """Whether the model sides with ``claimed`` over ``other`` about ``subject`` (1.0 or 0.0):
    the open question (``open_answer``), yes/no about the claim (``yesno_endorse``) and about the
    other object (``yesno_reject_other``), and the verdict on each statement (``verdict_*``), with
    ``edit`` applied (None: the model as it is)."""
    rel = RELATIONS[relation]
    ids = {w: lm.tokenizer.convert_tokens_to_ids(w) for w in (claimed, other, "yes", "no", "true", "false")}
    prompts = [rel.questions[0].format(s=subject),
               rel.yesno.format(s=subject, o=claimed), rel.yesno.format(s=subject, o=other),
               verdict_prompt(rel.affirmative[0].format(s=subject, o=claimed)),
               verdict_prompt(rel.affirmative[0].format(s=subject, o=other))]
    logits = interp.logits_under(lm, prompts, [edit] if edit is not None else [])

    def prefers(row: int, a: str, b: str) -> float:
        return float(logits[row, ids[a]] > logits[row, ids[b]])

    return {"open_answer": prefers(0, claimed, other),
            "yesno_endorse": prefers(1, "yes", "no"), "yesno_reject_other": prefers(2, "no", "yes"),
            "verdict_endorse": prefers(3, "true", "false"), "verdict_reject_other": prefers(4, "false", "true")}
