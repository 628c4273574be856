"""Probe statement sets for real models: a built-in set shipped with the package, and user files.

The built-in ``capitals`` set (``data/capitals.csv``, 60 countries) gives, per country, the
four statements of one fact: affirmative true ("The capital of France is Paris."), affirmative
false (another country's capital), and the two negations ("... is not ..."), so a probe is
trained and tested on both polarities. Test countries (a seeded 30%) are never in the training
split, so the four variants of one fact never straddle train and test.

A user file is JSONL with one statement per line: ``{"text": str, "label": bool}`` plus optional
``"negated": bool`` (default false), ``"group": str`` (the entity, for entity splits; default the
text) and ``"dataset": str`` (default the file's stem).
"""
from __future__ import annotations

import csv
import random
from importlib import resources
from pathlib import Path

from experiments.errors import UserError
from experiments.materials.paper_layout import read_jsonl
from experiments.materials.statements import Statement

BUILTIN = ("capitals",)
TEST_FRACTION = 0.3


def _split(groups: list[str], seed: str) -> set[str]:
    """The test groups: a seeded ``TEST_FRACTION`` of the distinct groups (at least one)."""
    distinct = sorted(set(groups))
    random.Random(seed).shuffle(distinct)
    return set(distinct[: max(1, round(len(distinct) * TEST_FRACTION))])


def capitals() -> list[Statement]:
    """The built-in statement set: four statements per country (see the module docstring)."""
    text = resources.files("experiments.materials").joinpath("data/capitals.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    test = _split([r["country"] for r in rows], "capitals")
    rng = random.Random("capitals-wrong")
    out = []
    for i, row in enumerate(rows):
        country, capital = row["country"], row["capital"]
        wrong = rng.choice([r["capital"] for j, r in enumerate(rows) if j != i])
        split = "test" if country in test else "train"
        for negated in (False, True):
            for obj in (capital, wrong):
                verb = "is not" if negated else "is"
                out.append(Statement(f"The capital of {country} {verb} {obj}.", (obj == capital) != negated, negated,
                                     country, split, "capitals"))
    return out


def read_statements(path: str | Path) -> list[Statement]:
    """Statements from a user JSONL file (see the module docstring); one-line errors name the
    file, the line and the field."""
    path = Path(path)
    rows = []
    for lineno, obj in read_jsonl(path, ("text",)):
        for key in ("label", "negated"):
            if key in obj and not isinstance(obj[key], bool):
                raise UserError(f"{path}:{lineno}: field {key!r} is {obj[key]!r}; expected true or false")
        if "label" not in obj:
            raise UserError(f"{path}:{lineno}: missing field 'label' (expected true or false)")
        rows.append(obj)
    if len({r["label"] for r in rows}) < 2:
        raise UserError(f"{path}: needs true and false statements (a probe needs both labels)")
    groups = [str(r.get("group", r["text"])) for r in rows]
    test = _split(groups, f"user-{path.name}")
    return [Statement(r["text"], r["label"], bool(r.get("negated", False)), g, "test" if g in test else "train",
                      str(r.get("dataset", path.stem))) for r, g in zip(rows, groups)]


def statement_set(name_or_path: str) -> list[Statement]:
    """A built-in set by name (:data:`BUILTIN`) or a user JSONL file by path."""
    if name_or_path == "capitals":
        return capitals()
    if Path(name_or_path).suffix == ".jsonl" or Path(name_or_path).exists():
        return read_statements(name_or_path)
    raise UserError(f"materials.statements {name_or_path!r} is neither a built-in set {list(BUILTIN)} "
                    "nor a JSONL file")
