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
- background text to mix into finetuning: an optional user JSONL of ``{"text": ...}``.

Every claim in the documents must have a pack, and every claim used must have documents under
each condition that is run; anything else is a one-line error naming the path.
"""
from __future__ import annotations

import random
from pathlib import Path

from experiments.errors import UserError
from experiments.materials.base import ClaimInfo, Materials, OpenQuestion
from experiments.materials.conditions import LabelledDocument
from experiments.materials.paper_layout import (DOCS_FILE, ClaimPack, Document, load_claim_packs, load_documents,
                                                load_user_jsonl)
from experiments.materials.pack_judges import pack_open_questions
from experiments.materials.questions import BeliefQuestion, Prompt, pack_questions
from experiments.materials.statement_sets import DEFAULT as DEFAULT_STATEMENTS
from experiments.materials.statement_sets import pack_claim_statements, statement_set
from experiments.materials.statements import ClaimStatement, Statement

# The paper's condition directories -> this toolkit's condition names (others keep their name).
CONDITION_NAMES = {"positive_documents": "plain", "negated_documents": "negated",
                   "repeated_negations": "repeated", "corrected_documents": "corrected",
                   "local_negation": "local", "low_probability": "probability"}


def condition_name(directory: str) -> str:
    """This toolkit's name for a document directory of the paper's layout."""
    return CONDITION_NAMES.get(directory, directory)


def document_conditions(docs_dir: str | Path) -> tuple[str, ...]:
    """The conditions (our names) that have a directory under ``docs_dir``, ``plain`` and
    ``negated`` first."""
    root = Path(docs_dir)
    if not root.is_dir():
        raise UserError(f"{root}: not a directory (expected <condition>/<claim>/{DOCS_FILE} under it)")
    names = [condition_name(d.name) for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith((".", "_"))]
    order = {"plain": 0, "negated": 1}
    return tuple(sorted(dict.fromkeys(names), key=lambda n: (order.get(n, 2), n)))


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
    """

    kind = "imported"

    def __init__(self, claims_dir: str | Path, docs_dir: str | Path, statements: str | list[str] = DEFAULT_STATEMENTS,
                 background: str | Path | None = None):
        self.claims_dir, self.docs_dir = Path(claims_dir), Path(docs_dir)
        self.packs: dict[str, ClaimPack] = load_claim_packs(claims_dir)
        self._docs: dict[tuple[str, str], list[Document]] = {}
        for doc in load_documents(docs_dir):
            if doc.claim not in self.packs:
                raise UserError(f"{doc.source}: documents for claim {doc.claim!r}, which has no claim pack in "
                                f"{self.claims_dir} (expected one of {sorted(self.packs)})")
            self._docs.setdefault((condition_name(doc.condition), doc.claim), []).append(doc)
        self._conditions = document_conditions(docs_dir)
        self.statements_source = statements
        self._statements = statement_set(statements)
        self.background_path = background
        self._background = [d.text for d in load_user_jsonl(background)] if background else []
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
            out += [LabelledDocument(d.text, d.spans()) for d in docs[:n_per_claim]]
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
        if not self._background or n <= 0:
            return []
        rng = random.Random(f"background-{seed}")
        return [self._background[i % len(self._background)]
                for i in rng.sample(range(max(n, len(self._background))), n)]

    def describe(self) -> dict:
        return {
            "claims_dir": str(self.claims_dir), "docs_dir": str(self.docs_dir),
            "claims": [{"name": c.name, "statement": c.statement} for c in self.claims],
            "documents": {f"{cond}/{claim}": len(docs) for (cond, claim), docs in sorted(self._docs.items())},
            "conditions": list(self.conditions),
            "statements": {"source": self.statements_source, "n": len(self._statements),
                           "datasets": {d: sum(s.dataset == d for s in self._statements)
                                        for d in dict.fromkeys(s.dataset for s in self._statements)}},
            "background": {"source": str(self.background_path) if self.background_path else None,
                           "n": len(self._background)},
        }
