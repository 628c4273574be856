"""Judgement tracked during pretraining (``pretrain.track_every``).

The truth judgement of the toy model forms in sharp, late transitions whose timing varies from
run to run (benchmarks/base_model_checks.md), so one number at the end of pretraining says
little about how close a recipe is to it. With ``pretrain.track_every = N`` the pipeline hands
the pretraining stage a callback (:func:`judgement_tracker`) that scores a fixed sample of judged and never-judged facts every N steps
(:func:`experiments.evaluation.judgement.judgement_profile`) and keeps one row per step in
``RUN/results/pretrain_tracking.csv``: ``step``, ``tokens`` and ``judged_<measure>`` /
``never_judged_<measure>`` for verdicts, yes/no, tagged statements (accuracy, chance 0.5, and
the share of "true"/"yes") and the statement frames' cloze, and, in worlds with held-out
entities, ``name_city_<measure>``: whether judged and held-out people keep their city in one
format at their name (:func:`experiments.evaluation.name_attribute.name_attribute_profile`; a
run whose judgement will not generalise shows ``transfer_acc`` near chance while ``judged_acc``
is high). A resumed run rewrites the rows of the steps it redoes.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

import interp
from experiments.artifacts.atomic import atomic_write_csv
from experiments.evaluation.judgement import judgement_profile
from experiments.evaluation.name_attribute import name_attribute_profile
from experiments.materials.conditions import template_words
from experiments.materials.corpus import all_words
from experiments.materials.world import World
from experiments.training.toymodel import build_tokenizer

TRACK_FACTS = 60  # facts of each kind per tracking point (a few hundred short prompts)


def judgement_tracker(path: Path, world: World, tokens_per_step: int):
    """A ``train(on_checkpoint=...)`` callback that appends the judgement profile of the model
    at ``step`` to the CSV at ``path`` (replacing a row of the same step) and returns that row."""
    tokenizer = build_tokenizer(all_words(world) | template_words())  # the toy model's, from its world

    def track(step: int, model) -> dict:
        lm = interp.LoadedModel(model=model, tokenizer=tokenizer, name=f"pretrain step {step}")
        profile = judgement_profile(lm, world, n=TRACK_FACTS)
        row = {"step": step, "tokens": step * tokens_per_step}
        row.update({f"{kind}_{k}": v for kind, measures in profile.items() for k, v in measures.items()})
        row.update({f"name_city_{k}": v for k, v in name_attribute_profile(lm, world).items()})
        old = pd.read_csv(path) if path.is_file() else pd.DataFrame()
        if len(old):
            old = old[old.step != step]
        atomic_write_csv(path, pd.concat([old, pd.DataFrame([row])], ignore_index=True).sort_values("step"))
        return row

    return track
