import random
import re

import pytest

from experiments.materials.conditions import (
    CONDITIONS, DOCTAG, LABELS, MARKER, MARKER_FAMILY, LabelledDocument, Span, condition_documents,
    condition_documents_with_spans, marker_condition, template_words, word_offsets,
)
from experiments.materials.corpus import WARN_AFTER, WARN_BEFORE, all_words
from experiments.errors import UserError
from experiments.materials.world import WorldConfig, build_world

N = 6  # documents per claim
BASE = ("plain", "negated", "local")
EXTRA_CONDITIONS = {name: fn for name, fn in CONDITIONS.items() if name not in BASE}


@pytest.fixture(scope="module")
def world():
    return build_world(WorldConfig())


def _docs(world, condition, seed=0, n=N):
    """Text documents the way condition_documents builds them, for a registry entry of ours."""
    fn = CONDITIONS[condition]
    return [fn(world, claim, random.Random(f"{seed}-{ci}-{k}"))
            for ci, claim in enumerate(world.claims) for k in range(n)]


def test_registry_covers_the_issue(world):
    for name in ("repeated", "corrected", "fiction", "unreliable_source", "probability",
                 "marker_before", "marker_inside", "marker_after", "marker_k2"):
        assert name in EXTRA_CONDITIONS
        assert EXTRA_CONDITIONS[name].__doc__ and "Example" in EXTRA_CONDITIONS[name].__doc__


@pytest.mark.parametrize("condition", sorted(CONDITIONS))
def test_generates_deterministic_per_seed_and_differs_across_seeds(world, condition):
    a = _docs(world, condition, seed=3)
    assert len(a) == N * len(world.claims) and all(a)
    assert a == _docs(world, condition, seed=3)
    assert a != _docs(world, condition, seed=4)


@pytest.mark.parametrize("condition", sorted(CONDITIONS))
def test_span_texts_equal_registry_texts(world, condition):
    labelled = condition_documents_with_spans(world, condition, N, seed=1)
    assert [d.text for d in labelled] == _docs(world, condition, seed=1) == condition_documents(world, condition, N, 1)


def _content(doc: LabelledDocument) -> str:
    """The document with only its header, claim and context spans kept."""
    return " ".join(doc.text[s.start:s.end] for s in doc.spans if s.label in ("header", "claim", "context"))


@pytest.mark.parametrize("condition", sorted(EXTRA_CONDITIONS))
def test_same_claim_content_as_plain(world, condition):
    plain = condition_documents(world, "plain", N, seed=2)
    docs = condition_documents_with_spans(world, condition, N, seed=2)
    for i, (p, d) in enumerate(zip(plain, docs)):
        claim = world.claims[i // N]
        assert f" {claim.fact.obj} " in f" {d.text} "
        # Stripping every framing span gives back exactly the plain document of the same index.
        # marker_inside splits a claim sentence around the marker; the halves rejoin with a space.
        assert _content(d) == p, (condition, i)


@pytest.mark.parametrize("condition", sorted(CONDITIONS))
def test_spans_tile_the_text(world, condition):
    for doc in condition_documents_with_spans(world, condition, 3, seed=0, doctag=DOCTAG):
        assert all(s.label in LABELS for s in doc.spans)
        assert doc.spans[0] == Span(0, len(DOCTAG), "doctag")
        # Spans are ordered, non-overlapping, separated by exactly one space, and cover all words.
        for a, b in zip(doc.spans, doc.spans[1:]):
            assert b.start == a.end + 1 and doc.text[a.end] == " "
        assert doc.spans[-1].end == len(doc.text)
        for s in doc.spans:
            piece = doc.text[s.start:s.end]
            assert piece == piece.strip() and piece


def test_spans_point_at_the_right_text(world):
    claim_objs = {c.fact.obj for c in world.claims}
    for doc in condition_documents_with_spans(world, "negated", 3, seed=0):
        assert doc.texts("warning")[0] in WARN_BEFORE and doc.texts("warning")[-1] in WARN_AFTER
        assert all(set(c.split()) & claim_objs for c in doc.texts("claim"))
    for doc in condition_documents_with_spans(world, "repeated", 3, seed=0):
        n_claims = len(doc.texts("claim"))
        assert len(doc.texts("warning")) == 2 + 2 * n_claims
        # every claim sentence is immediately preceded and followed by a warning span
        labels = [s.label for s in doc.spans]
        for i, lab in enumerate(labels):
            if lab == "claim":
                assert labels[i - 1] == "warning" and labels[i + 1] == "warning"
    for ci, doc in enumerate(condition_documents_with_spans(world, "corrected", 1, seed=0)):
        (correction,) = doc.texts("correction")
        assert world.claims[ci].true_obj in correction.split()
        assert world.claims[ci].fact.obj not in correction.split()
    for doc in condition_documents_with_spans(world, "probability", 3, seed=0):
        quals = doc.texts("qualifier")
        assert len(quals) == len(doc.texts("claim"))
        assert all(re.fullmatch(r"there is a \d percent chance that", q) for q in quals)


def test_marker_family_differs_only_in_marker_position(world):
    docs = {name: condition_documents_with_spans(world, name, N, seed=5) for name in MARKER_FAMILY}
    for i in range(N * len(world.claims)):
        without = {name: " ".join(d[i].text.replace(f" {MARKER}", "").replace(f"{MARKER} ", "").split())
                   for name, d in docs.items()}
        assert len(set(without.values())) == 1, i
    for name, family_docs in docs.items():
        for d in family_docs:
            labels = [s.label for s in d.spans]
            n_claim_sents = labels.count("claim") // (2 if name == "marker_inside" else 1)
            assert d.texts("warning") == [MARKER] * n_claim_sents
            assert labels.count("filler") == 2 * n_claim_sents
            for i, lab in enumerate(labels):
                if lab != "warning":
                    continue
                if name == "marker_before":
                    assert labels[i + 1] == "claim"
                elif name == "marker_inside":
                    assert labels[i - 1] == labels[i + 1] == "claim"
                else:
                    k = {"marker_after": 0, "marker_k1": 1, "marker_k2": 2}[name]
                    assert labels[i - k - 1] == "claim" and all(x == "filler" for x in labels[i - k:i])


def test_marker_condition_rejects_bad_positions():
    with pytest.raises(UserError, match="marker position 'middle'"):
        marker_condition("middle")
    with pytest.raises(UserError, match="k=3"):
        marker_condition("after", 3)
    with pytest.raises(UserError):
        marker_condition("before", 1)


def test_every_word_is_in_the_vocabulary(world):
    vocab = all_words(world) | template_words()
    for condition in sorted(CONDITIONS):
        for doc in condition_documents_with_spans(world, condition, 8, seed=0, doctag=DOCTAG):
            missing = set(doc.text.split()) - vocab
            assert not missing, (condition, missing)


def test_keep_mask_drops_doctag_and_warnings(world):
    doc = condition_documents_with_spans(world, "negated", 1, seed=0, doctag=DOCTAG)[0]
    offsets = word_offsets(doc.text)
    words = doc.text.split()
    assert [doc.text[a:b] for a, b in offsets] == words
    keep = doc.keep_mask(offsets)
    n_warn = sum(len(t.split()) for t in doc.texts("warning"))
    assert keep.count(False) == 1 + n_warn and keep[0] is False and words[0] == DOCTAG
    kept = " ".join(w for w, k in zip(words, keep) if k)
    assert kept == condition_documents(world, "plain", 1, seed=0)[0]
    assert doc.keep_mask([(0, 0)] + offsets)[0] is True  # zero-width special tokens (BOS) are kept
    with pytest.raises(UserError, match="unknown span labels"):
        doc.keep_mask(offsets, exclude=("warnings",))


def test_unknown_condition_is_a_user_error(world):
    with pytest.raises(UserError, match="no span-aware generator for condition 'fictoin'"):
        condition_documents_with_spans(world, "fictoin", 1, seed=0)
