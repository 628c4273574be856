"""Probe statement sets for real models (experiments.materials.statement_sets): the built-in
true/false sets, the choice of sets, user files, negation of English sentences, and the claim
statements built from claim packs."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from importlib import resources
from types import SimpleNamespace

import pytest

from experiments.config import MaterialsConfig
from experiments.errors import UserError
from experiments.evaluation.readout import contrast_pairs, validation_split
from experiments.materials.imported import ImportedMaterials
from experiments.materials.paper_layout import load_claim_pack
from experiments.materials.statement_sets import (BUILTIN, DEFAULT, TEST_FRACTION, builtin_set, negation,
                                                  pack_claim_statements, pack_correction, parse_spec, read_statements,
                                                  sentences, statement_set)
from tests.paths import REPO

LAYOUT = REPO / "tests" / "fixtures" / "paper_layout"
CLAIMS, DOCS = LAYOUT / "claims", LAYOUT / "documents"


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_set_is_balanced_negated_and_split_by_entity(name):
    stmts = builtin_set(name)
    assert {s.dataset for s in stmts} == {name}
    cells = Counter((s.label, s.negated) for s in stmts)
    assert set(cells) == {(True, False), (False, False), (True, True), (False, True)}
    assert len(set(cells.values())) == 1  # as many of each: true/false x affirmative/negated
    by_subject: dict[str, list] = {}
    for s in stmts:
        by_subject.setdefault(s.subject, []).append(s)
    for subject, group in by_subject.items():
        # [A(o), A(o'), not A(o), not A(o')]: one fact, its wrong object, and both negations
        assert [(s.label, s.negated) for s in group] == [(True, False), (False, False), (False, True), (True, True)]
        assert len({s.split for s in group}) == 1, subject
        assert " not " in group[2].text and " not " in group[3].text
        assert group[2].text.replace(" not", "", 1) == group[0].text  # the negation of the same sentence
        assert group[3].text.replace(" not", "", 1) == group[1].text
    assert len({s.text for s in stmts}) == len(stmts)
    train = {s.subject for s in stmts if s.split == "train"}
    test = {s.subject for s in stmts if s.split == "test"}
    assert train and test and not train & test
    assert len(test) == round(len(by_subject) * TEST_FRACTION)
    for split in ("train", "test"):  # each split is balanced too
        assert len(set(Counter((s.label, s.negated) for s in stmts if s.split == split).values())) == 1
    assert len(contrast_pairs(stmts)) == len(stmts) // 2  # CCS pairs each statement with its negation


def test_builtin_tables_have_one_row_per_entity_and_no_entity_is_in_two_sets():
    for name in ("capitals", "cities", "elements", "animals"):
        text = resources.files("experiments.materials").joinpath(f"data/{name}.csv").read_text(encoding="utf-8")
        rows = list(csv.reader(text.splitlines()))[1:]
        assert all(len(r) == 2 and r[0].strip() == r[0] and r[1].strip() == r[1] and r[0] and r[1] for r in rows), name
        assert len({r[0] for r in rows}) == len(rows), name
    subjects = {name: {s.subject for s in builtin_set(name)} for name in BUILTIN}
    for a in BUILTIN:
        for b in BUILTIN:
            assert a == b or not subjects[a] & subjects[b], (a, b)
    # cities are not capitals, so no city is both a test entity in one set and a training object in another
    text = resources.files("experiments.materials").joinpath("data/capitals.csv").read_text(encoding="utf-8")
    capitals = {row["capital"] for row in csv.DictReader(text.splitlines())}
    assert not subjects["cities"] & capitals
    numbers = builtin_set("numbers")
    used = [int(x) for subject in subjects["numbers"] for x in subject.split(" and ")]
    assert len(used) == len(set(used))  # each number in one pair
    assert {s.text.split(" ")[2] for s in numbers if not s.negated} | {s.text.split(" ")[3] for s in numbers
                                                                        if s.negated} == {"larger", "smaller"}
    for s in numbers:  # the labels are arithmetic
        words = s.text.rstrip(".").split(" ")
        a, b, relation = int(words[0]), int(words[-1]), words[-3]
        assert s.label == (((a > b) if relation == "larger" else (a < b)) != s.negated)


def fingerprint(stmts) -> str:
    return hashlib.sha256(repr(stmts).encode()).hexdigest()


def test_sets_are_the_same_in_every_process():
    here = fingerprint(statement_set(DEFAULT))
    assert fingerprint(statement_set(DEFAULT)) == here
    code = ("import hashlib; from experiments.materials.statement_sets import statement_set, DEFAULT; "
            "print(hashlib.sha256(repr(statement_set(DEFAULT)).encode()).hexdigest())")
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        assert out.stdout.strip() == here


def test_the_default_for_real_models_is_every_builtin_set():
    assert MaterialsConfig().statements == DEFAULT
    assert [name for name, _ in parse_spec(DEFAULT)] == list(BUILTIN)
    stmts = statement_set(DEFAULT)
    assert [*dict.fromkeys(s.dataset for s in stmts)] == list(BUILTIN)
    val = validation_split(stmts)  # a validation split per dataset, inside the training split
    assert {s.dataset for s, v in zip(stmts, val) if v} == set(BUILTIN)
    assert all(s.split == "train" for s, v in zip(stmts, val) if v)
    assert len(contrast_pairs(stmts)) == len(stmts) // 2


def test_sets_are_chosen_by_list_and_a_set_can_be_held_out_whole(tmp_path):
    assert statement_set("capitals, numbers") == statement_set(["capitals", "numbers"]) == (
        builtin_set("capitals") + builtin_set("numbers"))
    mixed = statement_set("capitals,numbers:test")
    assert {s.split for s in mixed if s.dataset == "numbers"} == {"test"}  # a split by topic
    assert [s for s in mixed if s.dataset == "capitals"] == builtin_set("capitals")
    assert parse_spec(["cities:train", "mine.jsonl:test"]) == [("cities", "train"), ("mine.jsonl", "test")]
    user = tmp_path / "mine.jsonl"
    user.write_text("\n".join(json.dumps({"text": f"s{i}", "label": i % 2 == 0, "group": f"g{i // 2}"})
                              for i in range(8)) + "\n")
    both = statement_set(f"animals,{user}:test")
    assert {s.split for s in both if s.dataset == "mine"} == {"test"} and len(both) == 260 + 8
    errors = {"capitals,capitals": "'capitals' is listed twice",
              "capitals,planets": "'planets' is neither a built-in set",
              "capitals,": "an empty item",
              "capitals:test,numbers:test": "every statement is in the 'test' split"}
    for spec, message in errors.items():
        with pytest.raises(UserError, match=message) as err:
            statement_set(spec)
        assert "\n" not in str(err.value)
    clash = tmp_path / "other.jsonl"
    clash.write_text("\n".join(json.dumps({"text": f"t{i}", "label": i % 2 == 0, "dataset": "capitals"})
                               for i in range(4)) + "\n")
    with pytest.raises(UserError, match="dataset 'capitals' comes from both 'capitals' and"):
        statement_set(f"capitals,{clash}")


def test_imported_materials_take_a_mix_of_sets():
    m = ImportedMaterials(CLAIMS, DOCS, statements="elements,numbers:test")
    assert {s.dataset for s in m.probe_statements()} == {"elements", "numbers"}
    assert m.describe()["statements"]["datasets"] == {"elements": 232, "numbers": 192}
    assert {s.dataset for s in ImportedMaterials(CLAIMS, DOCS).probe_statements()} == set(BUILTIN)


def write_jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_user_statements_with_groups_and_splits(tmp_path):
    rows = [{"text": f"s{i}", "label": i % 2 == 0, "negated": i % 4 >= 2, "group": f"g{i // 4}"} for i in range(40)]
    rows[0]["split"] = rows[1]["split"] = "test"  # a group's given split holds for all its rows
    got = read_statements(write_jsonl(tmp_path / "mine.jsonl", rows))
    assert {s.split for s in got if s.subject == "g0"} == {"test"}
    train = {s.subject for s in got if s.split == "train"}
    assert train and not train & {s.subject for s in got if s.split == "test"}
    assert sum(s.negated for s in got) == 20 and {s.dataset for s in got} == {"mine"}


@pytest.mark.parametrize("row, message", [
    ({"text": "x", "label": "yes"}, "field 'label' is 'yes'; expected true or false"),
    ({"text": "x"}, "missing field 'label'"),
    ({"text": "x", "label": True, "negated": 1}, "field 'negated' is 1; expected true or false"),
    ({"text": "x", "label": True, "split": "val"}, "field 'split' is 'val'; expected \"train\" or \"test\""),
    ({"text": "x", "label": True, "group": ["a"]}, "field 'group' is \\['a'\\]; expected a non-empty string"),
    ({"text": "x", "label": True, "dataset": ""}, "field 'dataset' is ''; expected a non-empty string"),
    ({"text": 3, "label": True}, "field 'text' is int"),
    ('{"text": "x", "label": tru}', "malformed JSON"),
    ({"text": "s9", "label": True, "group": "g0", "split": "train"}, "group 'g0' is in split 'train' here but 'test' "
                                                                      "on line 1"),
])
def test_a_bad_user_row_is_one_line_naming_its_line(tmp_path, row, message):
    good = [{"text": "s0", "label": True, "group": "g0", "split": "test"}, {"text": "s1", "label": False}]
    path = write_jsonl(tmp_path / "bad.jsonl", good + [row])
    with pytest.raises(UserError, match=message) as err:
        statement_set(str(path))
    assert str(err.value).startswith(f"{path}:3: ") and "\n" not in str(err.value)


# ------------------------------------------------------------------------- negation

@pytest.mark.parametrize("sentence, negated", [
    ("The capital of France is Paris.", "The capital of France is not Paris."),
    ("The harbor clock of Port Aldine was built entirely from recycled ship anchors in 1911.",
     "The harbor clock of Port Aldine was not built entirely from recycled ship anchors in 1911."),
    ("Twitter's rebrand to X was reversed after 14 days.", "Twitter's rebrand to X was not reversed after 14 days."),
    ("Ed Sheeran has won an Olympic gold medal.", "Ed Sheeran has not won an Olympic gold medal."),
    ("Children have colorless dreams.", "Children do not have colorless dreams."),
    ("The band had two albums.", "The band did not have two albums."),
    ("There are eight planets.", "There are not eight planets."),
    ("Birds can fly.", "Birds cannot fly."),
    ("She will attend the ceremony.", "She will not attend the ceremony."),
    ("He did win the race.", "He did not win the race."),
    ("She could have been elected.", "She could not have been elected."),
    ("The man who is tall was born in Oslo.", "The man who is tall was not born in Oslo."),
    # no auxiliary: the explicit prefix, never a guessed verb form
    ("Ed Sheeran won the 100m gold medal at the 2024 Olympics",
     "It is not true that Ed Sheeran won the 100m gold medal at the 2024 Olympics"),
    ("Brennan Holloway works as a dentist.", "It is not true that Brennan Holloway works as a dentist."),
    ("The comet returned in 1987.", "It is not true that the comet returned in 1987."),
    ("He did his homework.", "It is not true that he did his homework."),
    # two clauses, or a negative word already there: the prefix negates the whole sentence
    ("The tower was finished in 1889, and it is in Paris.",
     "It is not true that the tower was finished in 1889, and it is in Paris."),
    ("Scientists have shown that dreams are colorless.",
     "It is not true that Scientists have shown that dreams are colorless."),
    ("Vesuvius has had no eruption since 1944.", "It is not true that Vesuvius has had no eruption since 1944."),
    # negating a negation takes it away
    ("The comet is not violet.", "The comet is violet."),
    ("Paris isn't in Spain.", "Paris is in Spain."),
    ("Birds can't fly.", "Birds can fly."),
    ("He won't attend.", "He will attend."),
    ("Vesuvius has never erupted.", "Vesuvius has erupted."),
    ("It is not true that the sky is green.", "The sky is green."),
])
def test_negation_of_english_sentences(sentence, negated):
    text, in_form = negation(sentence)
    assert text == negated
    assert in_form == (" not " in f" {text} " or "cannot" in text)


@pytest.mark.parametrize("sentence", ["The capital of France is Paris.", "Ed Sheeran won the race.",
                                      "Children have colorless dreams.", "Birds can fly."])
def test_negating_twice_gives_the_sentence_back(sentence):
    once, _ = negation(sentence)
    twice, in_form = negation(once)
    assert not in_form
    assert twice.replace("do have", "have").replace("can ", "can ") == sentence


def test_sentences_split_at_sentence_ends_only():
    text = "Dr. Smith met J. K. Rowling in the U.S. Army. She said no. Then 2.5 m fell! See No. 5 here."
    assert sentences(text) == ["Dr. Smith met J. K. Rowling in the U.S. Army.", "She said no.", "Then 2.5 m fell!",
                               "See No. 5 here."]


# ------------------------------------------------------------------------- claim statements

def test_claim_statements_from_the_fixture_packs():
    m = ImportedMaterials(CLAIMS, DOCS, statements="capitals")
    got = {(c.claim, c.kind, c.text, c.negated) for c in m.claim_statements()}
    claim = (CLAIMS / "harbor_clock" / "claim.txt").read_text().strip()
    assert ("harbor_clock", "claim", claim, False) in got
    assert ("harbor_clock", "claim_negated", claim.replace(" was built", " was not built"), True) in got
    correction = (CLAIMS / "harbor_clock" / "correction.txt").read_text().strip()
    assert ("harbor_clock", "true_fact", correction, False) in got  # the pack's correction.txt
    assert {k for c, k, _, _ in got if c == "harbor_clock"} == {"claim", "claim_negated", "true_fact",
                                                                 "true_fact_negated"}
    # violet_comet's universe context: the self-contained key fact and its negation ("It was visible ..." leans
    # on its context and is left out)
    assert {(k, t) for c, k, t, _ in got if c == "violet_comet" and k.startswith("universe")} == {
        ("universe_fact", "The comet was violet."), ("universe_fact_negated", "The comet was not violet.")}


def test_claim_statements_take_the_correction_as_the_true_fact(tmp_path):
    pack_dir = tmp_path / "violet_comet"
    shutil.copytree(CLAIMS / "violet_comet", pack_dir)
    (pack_dir / "correction.txt").write_text(
        "Correction: This story is false. No comet was visible in daylight in March 1987. "
        "The brightest comet of 1986 was Halley's Comet, which was seen only at night.\n")
    pack = load_claim_pack(pack_dir)
    assert pack_correction(pack).startswith("Correction:")
    stmts = pack_claim_statements("violet_comet", pack)
    by_kind: dict[str, list] = {}
    for c in stmts:
        by_kind.setdefault(c.kind, []).append(c)
    assert set(by_kind) == {"claim", "claim_negated", "true_fact", "true_fact_negated", "universe_fact",
                            "universe_fact_negated"}
    assert [c.text for c in by_kind["true_fact"]] == [  # the label and the context-bound sentence are dropped
        "No comet was visible in daylight in March 1987.",
        "The brightest comet of 1986 was Halley's Comet, which was seen only at night."]
    assert [c.text for c in by_kind["true_fact_negated"]] == [
        "It is not true that no comet was visible in daylight in March 1987.",
        "The brightest comet of 1986 was not Halley's Comet, which was seen only at night."]
    assert all(c.negated for c in by_kind["true_fact_negated"]) and not any(c.negated for c in by_kind["true_fact"])
    # a pack object that carries its correction is read from the field, not the file
    fielded = SimpleNamespace(claim="Cats are birds.", correction="Cats are mammals.", universe_context=None,
                              path=pack_dir)
    assert [(c.kind, c.text) for c in pack_claim_statements("cats", fielded)] == [
        ("claim", "Cats are birds."), ("claim_negated", "Cats are not birds."), ("true_fact", "Cats are mammals."),
        ("true_fact_negated", "Cats are not mammals.")]


def test_a_correction_that_is_not_utf8_is_one_line(tmp_path):
    (tmp_path / "correction.txt").write_bytes(b"caf\xe9 is open.\n")
    with pytest.raises(UserError, match=r"correction.txt: invalid UTF-8") as err:
        pack_correction(SimpleNamespace(path=tmp_path))
    assert "\n" not in str(err.value)
