"""Background documents mixed into finetuning (``finetune.background_fraction``)."""
from __future__ import annotations

import json

import pytest

from experiments.artifacts.rundir import RunDir
from experiments.config import load_config
from experiments.errors import UserError
from experiments.materials import load_materials
from experiments.materials.corpus import CorpusSampler
from experiments.materials.imported import ImportedMaterials
from experiments.training.stages import (BACKGROUND_SEED_OFFSET, background_count, check_background, finetune,
                                         finetuning_documents)
from tests.paths import FIXTURES

LAYOUT = FIXTURES / "paper_layout"


def config(fraction: float, *more: str):
    return load_config("tiny", overrides=[f"finetune.background_fraction={fraction}", "finetune.docs_per_claim=30",
                                          *more])


@pytest.fixture(scope="module")
def materials():
    return load_materials(load_config("tiny"))


def mentions(text: str, subject: str) -> bool:
    """``subject``'s words as a contiguous run of ``text``'s words (punctuation split off)."""
    words, sub = text.replace(".", " . ").split(), subject.split()
    return any(words[i:i + len(sub)] == sub for i in range(len(words) - len(sub) + 1))


def test_the_share_of_background_documents_is_the_fraction(materials):
    docs = finetuning_documents(config(0.25), materials, "plain", seed=0)
    n_claim = 30 * len(materials.claims)
    assert background_count(n_claim, 0.25) == 20
    assert [d["source"] for d in docs].count("background") == 20 and len(docs) == n_claim + 20
    assert {d["condition"] for d in docs} == {"plain"}
    sources = [d["source"] for d in docs]
    assert sources != sorted(sources) and sources != sorted(sources, reverse=True)  # shuffled in, not appended


def test_fraction_zero_leaves_the_documents_as_they_were(materials):
    docs = finetuning_documents(config(0), materials, "negated", seed=2)
    assert [d["text"] for d in docs] == [d.text for d in materials.documents("negated", 30, seed=2)]
    assert {d["source"] for d in docs} == {"claim"}


def test_the_mix_is_deterministic_in_the_seed_and_the_background_seed_is_its_own(materials):
    cfg = config(0.2)
    a, b = (finetuning_documents(cfg, materials, "plain", seed=1) for _ in range(2))
    assert a == b and a != finetuning_documents(cfg, materials, "plain", seed=3)
    background = [d["text"] for d in a if d["source"] == "background"]
    assert sorted(background) == sorted(materials.background_documents(len(background), seed=1 + BACKGROUND_SEED_OFFSET))
    assert sorted(background) != sorted(materials.background_documents(len(background), seed=1))


def test_background_documents_never_mention_a_claim_subject(materials):
    subjects = [c.subject for c in materials.claims]
    assert any(" " in s for s in subjects)  # the tiny world has an event claim: a two-word subject
    raw = CorpusSampler(materials.world, seed=5, mix=materials.corpus_mix).documents(400)
    assert any(mentions(doc, s) for doc in raw for s in subjects)  # the corpus itself does
    docs = materials.background_documents(400, seed=5)
    assert len(docs) == 400 and docs == materials.background_documents(400, seed=5)
    assert not [doc for doc in docs for s in subjects if mentions(doc, s)]
    assert docs[:3] == [d for d in raw if not any(mentions(d, s) for s in subjects)][:3]  # the corpus, filtered


def test_the_docs_file_records_the_mix(tiny_run, materials, tmp_path):
    base, _ = tiny_run
    cfg = config(0.2, "finetune.steps=2", "finetune.n_checkpoints=2")
    run = RunDir(tmp_path / "run")
    finetune(run, cfg, materials, base / "base", "plain", 0)
    rows = [json.loads(line) for line in run.docs("plain", 0).read_text().splitlines()]
    assert rows == finetuning_documents(cfg, materials, "plain", seed=0)
    assert sum(r["source"] == "background" for r in rows) / len(rows) == pytest.approx(0.2, abs=0.01)


def test_imported_materials_without_background_are_one_line_naming_the_key(tmp_path):
    bare = ImportedMaterials(LAYOUT / "claims", LAYOUT / "documents")
    check_background(config(0), bare)  # nothing asked, nothing needed
    with pytest.raises(UserError, match=r"config key 'finetune.background_fraction' is 0.2 .*materials.background") \
            as err:
        finetuning_documents(config(0.2), bare, "plain", seed=0)
    assert "\n" not in str(err.value)
    background = tmp_path / "background.jsonl"
    background.write_text("".join(json.dumps({"text": f"background text {i}"}) + "\n" for i in range(5)))
    mixed = ImportedMaterials(LAYOUT / "claims", LAYOUT / "documents", background=background)
    docs = finetuning_documents(config(0.5), mixed, "plain", seed=0)
    n_claim = len(mixed.documents("plain", 30, seed=0))
    assert [d["source"] for d in docs].count("background") == n_claim
    assert {d["text"] for d in docs if d["source"] == "background"} <= {f"background text {i}" for i in range(5)}
