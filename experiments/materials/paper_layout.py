"""Import the paper's materials and user documents, with validation.

Layouts (Mayne et al., "Negation Neglect", github TruthfulAI-research/negation_neglect):

- claim packs: ``claims/<claim>/claim.txt`` plus question files ``mcq.yaml``,
  ``open_ended.yaml``, ``token_association.yaml``, ``robustness.yaml`` (optional
  ``universe_context.yaml``). A question file holds ``questions:``, a list of
  ``{id, question, category}``; MCQ items add ``belief_answer: yes|no`` (the answer of a
  model that believes the claim). Robustness items may add ``system_prompt`` and
  ``messages_prefix``; any such extra keys are kept in ``Question.extra``.
- documents: ``<condition>/<claim>/annotated_docs.jsonl``, one JSON object per line with
  the string fields ``text, doc_type, fact_name, mode``. Extra keys are kept in ``meta``.
- user documents: any JSONL with one ``{"text": ...}`` per line; extra keys go to ``meta``.

Every schema problem raises :class:`UserError` with one line naming the file, the line
(JSONL) or the item (YAML), the field, and the expected form, e.g.
``docs/negated/ed_sheeran/annotated_docs.jsonl:17: missing field 'text' (expected a string)``.
YAML is read with ``yaml.safe_load`` only.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from experiments.materials.conditions import Span
from experiments.errors import UserError

QUESTION_FILES = ("mcq", "open_ended", "token_association", "robustness")
DOC_FIELDS = ("text", "doc_type", "fact_name", "mode")
DOCS_FILE = "annotated_docs.jsonl"
PAPER_DOCTAG = "<DOCTAG>"

@dataclass(frozen=True)
class Question:
    id: str
    question: str
    category: str
    belief_answer: str | None = None  # "yes" or "no"; MCQ items only
    extra: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class ClaimPack:
    name: str  # the directory name, e.g. "ed_sheeran"
    claim: str  # the text of claim.txt
    mcq: tuple[Question, ...] = ()
    open_ended: tuple[Question, ...] = ()
    token_association: tuple[Question, ...] = ()
    robustness: tuple[Question, ...] = ()
    universe_context: Any = None  # universe_context.yaml as parsed, if present
    path: Path | None = None
    # --- judges.yaml (belief judging, experiments/evaluation/judge.py): the mapping as parsed, {} when absent
    judges: dict = field(default_factory=dict, hash=False)

    def questions(self) -> dict[str, tuple[Question, ...]]:
        """Question kind (``mcq``, ``open_ended``, ...) -> its questions."""
        return {kind: getattr(self, kind) for kind in QUESTION_FILES}


@dataclass(frozen=True)
class Document:
    text: str
    doc_type: str | None = None
    fact_name: str | None = None
    mode: str | None = None
    condition: str | None = None  # from the directory layout, for annotated documents
    claim: str | None = None
    source: str = ""  # "path:line"
    meta: dict[str, Any] = field(default_factory=dict, hash=False)

    def spans(self, doctag: str = PAPER_DOCTAG) -> tuple[Span, ...]:
        """A ``"doctag"`` span over a leading document tag (the paper prefixes ``<DOCTAG>`` and
        masks it from the loss), or no spans when the text does not start with it."""
        return (Span(0, len(doctag), "doctag"),) if doctag and self.text.startswith(doctag) else ()


# ---------------------------------------------------------------------------- reading files


def _read_text(path: Path, expected: str) -> str:
    """The file's text; one-line errors for a missing, non-UTF-8 or empty file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found (expected {expected})") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory (expected a file with {expected})") from None
    try:
        text = data.decode("utf-8-sig")  # tolerate a byte-order mark
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: invalid UTF-8 byte 0x{data[e.start]:02x} "
                        f"(expected UTF-8 text with {expected})") from None
    if not text.strip():
        raise UserError(f"{path}: empty file (expected {expected})")
    return text


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_str(value: Any, where: str, name: str) -> str:
    if not isinstance(value, str):
        raise UserError(f"{where}: field {name!r} is {_type_name(value)} (expected a string)")
    if not value.strip():
        raise UserError(f"{where}: field {name!r} is empty (expected a non-empty string)")
    return value


def _safe_load(path: Path, expected: str) -> Any:
    text = _read_text(path, expected)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        loc = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{path}{loc}: malformed YAML ({problem}) (expected {expected})") from None


def read_jsonl(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) per non-blank line, each checked to have string ``required`` fields."""
    text = _read_text(path, "one JSON object per line")
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{where}: malformed JSON ({e.msg} at column {e.colno}) "
                            f"(expected one JSON object per line)") from None
        if not isinstance(obj, dict):
            raise UserError(f"{where}: line is a JSON {_type_name(obj)} (expected a JSON object with "
                            f"fields {', '.join(required)})")
        for name in required:
            if name not in obj:
                raise UserError(f"{where}: missing field {name!r} (expected a string)")
            _check_str(obj[name], where, name)
        rows.append((lineno, obj))
    return rows


# ---------------------------------------------------------------------------- claim packs


def _load_questions(path: Path, kind: str) -> tuple[Question, ...]:
    expected = "a mapping with a 'questions' list of {id, question, category}"
    data = _safe_load(path, expected)
    items = data.get("questions") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise UserError(f"{path}: top level is {_type_name(data)} without a 'questions' list (expected {expected})")
    if not items:
        raise UserError(f"{path}: 'questions' is empty (expected at least one question)")

    out, seen = [], {}
    for i, item in enumerate(items):
        where = f"{path}: questions[{i}]"
        if not isinstance(item, dict):
            raise UserError(f"{where}: item is {_type_name(item)} (expected a mapping with id, question, category)")
        if "id" not in item:
            raise UserError(f"{where}: missing field 'id' (expected a string or integer)")
        qid = item["id"]
        if isinstance(qid, bool) or not isinstance(qid, (str, int)) or not str(qid).strip():
            raise UserError(f"{where}: field 'id' is {_type_name(qid)} {qid!r} "
                            f"(expected a non-empty string or integer)")
        qid = str(qid)
        where = f"{where} (id {qid!r})"
        if qid in seen:
            raise UserError(f"{where}: duplicate id {qid!r}, first at questions[{seen[qid]}] (expected unique ids)")
        seen[qid] = i
        for name in ("question", "category"):
            if name not in item:
                raise UserError(f"{where}: missing field {name!r} (expected a string)")
            _check_str(item[name], where, name)
        belief = None
        if kind == "mcq":
            if "belief_answer" not in item:
                raise UserError(f"{where}: missing field 'belief_answer' (expected yes or no)")
            raw = item["belief_answer"]
            # YAML 1.1 reads bare yes/no as booleans; the paper quotes nothing, so accept them.
            belief = {True: "yes", False: "no"}.get(raw) if isinstance(raw, bool) else (
                raw.strip().lower() if isinstance(raw, str) else None)
            if belief not in ("yes", "no"):
                raise UserError(f"{where}: field 'belief_answer' is {raw!r} (expected yes or no)")
        extra = {k: v for k, v in item.items() if k not in ("id", "question", "category", "belief_answer")}
        out.append(Question(qid, item["question"].strip(), item["category"], belief, extra))
    return tuple(out)


def load_claim_pack(directory: str | Path) -> ClaimPack:
    """One ``claims/<claim>/`` directory. ``claim.txt`` is required, and at least one question file."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"{directory}: not a directory (expected claims/<claim>/ with claim.txt)")
    claim = _read_text(directory / "claim.txt", "the claim statement as text").strip()
    found = {kind: _load_questions(directory / f"{kind}.yaml", kind)
             for kind in QUESTION_FILES if (directory / f"{kind}.yaml").exists()}
    if not found:
        raise UserError(f"{directory}: no question files (expected at least one of "
                        f"{', '.join(k + '.yaml' for k in QUESTION_FILES)})")
    upath = directory / "universe_context.yaml"
    universe = _safe_load(upath, "YAML describing the claim's universe") if upath.exists() else None
    # --- judges.yaml
    jpath = directory / "judges.yaml"
    judges = _safe_load(jpath, "a mapping of judge prompts") if jpath.exists() else {}
    if not isinstance(judges, dict):
        raise UserError(f"{jpath}: top level is {_type_name(judges)} (expected a mapping of judge prompts, "
                        "e.g. open_ended: ..., judge_key: answer)")
    return ClaimPack(directory.name, claim, universe_context=universe, path=directory, judges=judges, **found)


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def load_claim_packs(root: str | Path) -> dict[str, ClaimPack]:
    """Every claim pack under ``root`` (the ``claims/`` directory, or its parent), by name."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: not a directory (expected a claims/ directory of claim packs)")
    if (root / "claims").is_dir():
        root = root / "claims"
    packs = {d.name: load_claim_pack(d) for d in _subdirs(root)}
    if not packs:
        raise UserError(f"{root}: no claim packs (expected subdirectories <claim>/ with claim.txt)")
    return packs


# ---------------------------------------------------------------------------- documents


def _pick(root: Path, name: str | None, what: str) -> list[Path]:
    dirs = _subdirs(root)
    if name is None:
        return dirs
    if not (root / name).is_dir():
        raise UserError(f"{root}: no {what} {name!r} (expected one of {[d.name for d in dirs]})")
    return [root / name]


def load_documents(root: str | Path, condition: str | None = None, claim: str | None = None) -> list[Document]:
    """Documents from ``root/<condition>/<claim>/annotated_docs.jsonl``, optionally one
    condition and/or one claim, in sorted (condition, claim, line) order."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: not a directory (expected <condition>/<claim>/{DOCS_FILE} under it)")
    cond_dirs = _pick(root, condition, "condition")
    if claim is None:
        claim_dirs = [d for c in cond_dirs for d in _subdirs(c)]
    else:
        claim_dirs = [c / claim for c in cond_dirs if (c / claim).is_dir()]
        if not claim_dirs:
            available = sorted({d.name for c in cond_dirs for d in _subdirs(c)})
            where = root / condition if condition else root
            raise UserError(f"{where}: no claim {claim!r} (expected one of {available})")
    docs = []
    for kdir in claim_dirs:
        path = kdir / DOCS_FILE
        if not path.exists():
            raise UserError(f"{path}: file not found (expected {DOCS_FILE} in every <condition>/<claim>/)")
        for lineno, obj in read_jsonl(path, DOC_FIELDS):
            meta = {k: v for k, v in obj.items() if k not in DOC_FIELDS}
            docs.append(Document(obj["text"], obj["doc_type"], obj["fact_name"], obj["mode"],
                                 kdir.parent.name, kdir.name, f"{path}:{lineno}", meta))
    if not docs:
        sel = ", ".join(f"{k}={v!r}" for k, v in (("condition", condition), ("claim", claim)) if v) or "any"
        raise UserError(f"{root}: no documents for {sel} (expected <condition>/<claim>/{DOCS_FILE})")
    return docs


def load_user_jsonl(path: str | Path) -> list[Document]:
    """User documents: one ``{"text": ...}`` per line; other keys are kept in ``meta``."""
    path = Path(path)
    return [Document(obj["text"], source=f"{path}:{lineno}", meta={k: v for k, v in obj.items() if k != "text"})
            for lineno, obj in read_jsonl(path, ("text",))]
