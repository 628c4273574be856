"""Imported study materials: the paper's claim packs and documents, for any Hugging Face model.

- claims: ``CLAIMS/<claim>/claim.txt`` plus question files (``experiments.materials.paper_layout``);
- documents: ``DOCS/<condition>/<claim>/annotated_docs.jsonl``, where the paper's condition
  directory names map to this toolkit's (:data:`CONDITION_NAMES`; other names are kept as they
  are);
- probe statements: built-in sets (``capitals``, ``cities``, ``elements``, ``animals``,
  ``numbers``; all by default) and/or user JSONL files (``experiments.materials.statement_sets``),
  read at each statement's own last token;
- claim statements: each claim, the true fact (``correction.txt``), the universe's key facts,
  and their negations (``statement_sets.pack_claim_statements``);
- background text to mix into finetuning: an optional user JSONL of ``{"text": ...}``;
- instruct examples to mix into finetuning: an optional JSONL of chat rows ``{"messages": [...]}``
  (rendered with the model's chat template, trained on the assistant turns only).

Documents keep their labelled spans: a leading ``<DOCTAG>`` (``"doctag"``), ``<lossmask>`` spans
(``"lossmask"``, tags removed from the text) and matches of the claim pack's word masks
(``"masked_word"``); ``finetune.loss_mask`` says which of them get zero loss weight.

Every claim in the documents must have a pack, and every claim used must have documents under
each condition that is run; anything else is a one-line error naming the path.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Sequence

from experiments.errors import UserError
from experiments.materials.base import ClaimInfo, Materials, OpenQuestion
from experiments.materials.conditions import LabelledDocument
from experiments.materials.paper_layout import (DOCS_FILE, PACK_FILES, ClaimPack, Document, load_claim_packs,
                                                load_documents, load_user_jsonl, warn_once)
from experiments.materials.pack_judges import pack_open_questions
from experiments.materials.questions import BeliefQuestion, pack_questions
from experiments.materials.statement_sets import DEFAULT as DEFAULT_STATEMENTS
from experiments.materials.statement_sets import pack_claim_statements, statement_set
from experiments.materials.statements import ClaimStatement, Statement

# The paper's condition directories -> this toolkit's condition names (those of the synthetic
# world's generators where there is one, experiments.materials.conditions). The paper's
# qualifier conditions come plain (a prefix and a suffix) and "_repeated" (around every claim
# sentence), like its negations; "_wordmask" / "_no_doctag" are its masking ablations.
CONDITION_NAMES = {
    "positive_documents": "plain", "negated_documents": "negated", "repeated_negations": "repeated",
    "repeated_negations_no_doctag": "repeated_no_doctag", "corrected_documents": "corrected",
    "local_negations": "local", "local_negation": "local", "local_negations_wordmask": "local_wordmask",
    "fiction": "fiction", "fiction_repeated": "fiction_repeated",
    "unreliable_source": "unreliable_source", "unreliable_source_repeated": "unreliable_source_repeated",
    "epistemic_uncertainty": "unknown_truth", "epistemic_uncertainty_repeated": "unknown_truth_repeated",
    "low_probability": "probability", "low_probability_repeated": "probability_repeated",
}


def condition_name(directory: str) -> str:
    """This toolkit's name for a document directory of the paper's layout (an unknown
    directory keeps its own name)."""
    return CONDITION_NAMES.get(directory, directory)


def _condition_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        raise UserError(f"{root}: not a directory (expected <condition>/<claim>/{DOCS_FILE} under it)")
    return [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith((".", "_"))]


def document_conditions(docs_dir: str | Path) -> tuple[str, ...]:
    """The conditions (our names) that have a directory under ``docs_dir``, ``plain`` and
    ``negated`` first. Two directories that map to one name are a one-line error."""
    seen: dict[str, str] = {}
    for d in _condition_dirs(Path(docs_dir)):
        name = condition_name(d.name)
        if name in seen:
            raise UserError(f"{Path(docs_dir)}: directories {seen[name]!r} and {d.name!r} are both condition "
                            f"{name!r} (expected one directory per condition)")
        seen[name] = d.name
    order = {"plain": 0, "negated": 1}
    return tuple(sorted(seen, key=lambda n: (order.get(n, 2), n)))


def warn_unknown_conditions(docs_dir: str | Path) -> None:
    """One warning line per condition directory that is not one of the paper's (it runs under
    its own name)."""
    for d in _condition_dirs(Path(docs_dir)):
        if d.name not in CONDITION_NAMES:
            warn_once(f"{d}: unknown condition directory {d.name!r}, run under its own name (the paper's are "
                      f"{', '.join(sorted(CONDITION_NAMES))})")


class ImportedMaterials(Materials):
    """Study materials read from files.

    Parameters
    ----------
    claims_dir : path
        The ``claims/`` directory of claim packs (or its parent).
    docs_dir : path
        The documents root: ``<condition>/<claim>/annotated_docs.jsonl``.
    statements : str or list of str
        Built-in statement set names and/or JSONL files of probe statements, comma-separated or
        as a list, each optionally ``:test`` (held out whole); see ``statement_sets``.
    background : path, optional
        JSONL of background documents (``{"text": ...}`` per line) for mixing into finetuning.
    instruct : path, optional
        JSONL of instruct examples (``{"messages": [...]}`` per line) for mixing into finetuning.
    claim_names : sequence of str
        The claims to study, of the packs in ``claims_dir`` (config key ``materials.claim_names``);
        empty: all of them. The other packs and their documents are not read.
    """

    kind = "imported"

    def __init__(self, claims_dir: str | Path, docs_dir: str | Path, statements: str | list[str] = DEFAULT_STATEMENTS,
                 background: str | Path | None = None, instruct: str | Path | None = None,
                 claim_names: Sequence[str] = ()):
        self.claims_dir, self.docs_dir = Path(claims_dir), Path(docs_dir)
        self.packs: dict[str, ClaimPack] = load_claim_packs(claims_dir, claim_names)
        self.claim_names = tuple(claim_names)
        warn_unknown_conditions(docs_dir)
        self._docs: dict[tuple[str, str], list[Document]] = {}
        for doc in load_documents(docs_dir, only=set(self.packs) if claim_names else None):
            if doc.claim not in self.packs:
                raise UserError(f"{doc.source}: documents for claim {doc.claim!r}, which has no claim pack in "
                                f"{self.claims_dir} (expected one of {sorted(self.packs)})")
            self._docs.setdefault((condition_name(doc.condition), doc.claim), []).append(doc)
        self._conditions = document_conditions(docs_dir)
        self.statements_source = statements
        self._statements = statement_set(statements)
        self.background_path = background
        self._background = [d.text for d in load_user_jsonl(background)] if background else []
        self.instruct_path = instruct
        self._instruct = [d.labelled() for d in load_user_jsonl(instruct, chat=True)] if instruct else []
        self._claims = tuple(ClaimInfo(name, pack.claim) for name, pack in self.packs.items())

    @property
    def claims(self) -> tuple[ClaimInfo, ...]:
        return self._claims

    @property
    def conditions(self) -> tuple[str, ...]:
        return self._conditions

    def _documents(self, condition: str, n_per_claim: int, seed: int) -> list[LabelledDocument]:
        """The first ``n_per_claim`` documents of each claim, in file order (the same positions
        under every condition); ``seed`` does not change them (the batch order is seeded)."""
        out = []
        for claim in self.packs:
            docs = self._docs.get((condition, claim))
            if not docs:
                raise UserError(f"{self.docs_dir}: no documents for claim {claim!r} under condition {condition!r} "
                                f"(expected <{condition} directory>/{claim}/{DOCS_FILE})")
            out += [d.labelled(self.packs[claim]) for d in docs[:n_per_claim]]
        return out

    def belief_questions(self, tokenizer=None) -> list[BeliefQuestion]:
        return [q for pack in self.packs.values() for q in pack_questions(pack)]

    def probe_statements(self) -> list[Statement]:
        return list(self._statements)

    def claim_statements(self) -> list[ClaimStatement]:
        return [s for name, pack in self.packs.items() for s in pack_claim_statements(name, pack)]

    def open_questions(self) -> list[OpenQuestion]:
        # open-ended, token-association and robustness items, each with its pack's judges.yaml prompt
        return [q for pack in self.packs.values() for q in pack_open_questions(pack)]

    def background_documents(self, n: int, seed: int) -> list[str]:
        return _sample(self._background, n, f"background-{seed}")

    def instruct_examples(self, n: int, seed: int) -> list[LabelledDocument]:
        return _sample(self._instruct, n, f"instruct-{seed}")

    def describe(self) -> dict:
        return {
            "claims_dir": str(self.claims_dir), "docs_dir": str(self.docs_dir),
            "claims": [{"name": c.name, "statement": c.statement} for c in self.claims],
            "claim_names": list(self.claim_names),  # the selection (materials.claim_names); empty: every pack
            "documents": {f"{cond}/{claim}": len(docs) for (cond, claim), docs in sorted(self._docs.items())},
            "conditions": list(self.conditions),
            "statements": {"source": self.statements_source, "n": len(self._statements),
                           "datasets": {d: sum(s.dataset == d for s in self._statements)
                                        for d in dict.fromkeys(s.dataset for s in self._statements)}},
            "background": {"source": str(self.background_path) if self.background_path else None,
                           "n": len(self._background)},
            "instruct": {"source": str(self.instruct_path) if self.instruct_path else None, "n": len(self._instruct)},
            "packs": {name: {"files": sorted(f for f in PACK_FILES if (pack.path / f).exists()) if pack.path else [],
                             "word_masks": list(pack.word_masks)} for name, pack in self.packs.items()},
        }


def _sample(pool: list, n: int, seed: str) -> list:
    """``n`` items of ``pool`` in a seeded order, without repeats until the pool runs out."""
    if not pool or n <= 0:
        return []
    rng = random.Random(seed)
    return [pool[i % len(pool)] for i in rng.sample(range(max(n, len(pool))), n)]
