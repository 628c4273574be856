"""Import the paper's materials and user documents, with validation.

Layouts (Mayne et al., "Negation Neglect", github TruthfulAI-research/negation_neglect):

- claim packs: ``claims/<claim>/claim.txt`` plus question files ``mcq.yaml``,
  ``open_ended.yaml``, ``token_association.yaml``, ``robustness.yaml``. A question file holds
  ``questions:``, a list of ``{id, question, category}``; MCQ items add
  ``belief_answer: yes|no`` (the answer of a model that believes the claim). Robustness items
  may add ``system_prompt`` and ``messages_prefix``; any such extra keys are kept in
  ``Question.extra``. The other files of the layout are optional and each has a field of
  :class:`ClaimPack` (:data:`PACK_FILES`): ``universe_context.yaml`` and
  ``universe_context_negated.yaml`` (parsed YAML), ``judges.yaml`` (the judge prompts, a
  mapping), ``word_masks.yaml`` (``patterns:``, regular expressions matched case-insensitively;
  matches can be masked from the finetuning loss), ``system_context_negated.md`` and
  ``correction.txt`` (text), ``coherence_questions.yaml`` (parsed YAML). Any other file in a
  pack gets one warning line and is ignored.
- documents: ``<condition>/<claim>/annotated_docs.jsonl``, one JSON object per line with a
  string ``text`` (or a chat row ``messages``: a list of ``{role, content}`` with at least one
  assistant turn) and optionally the string fields ``doc_type, fact_name, mode``. Extra keys
  are kept in ``meta``. ``<lossmask>...</lossmask>`` in a text marks a span to keep out of the
  loss: the tags are removed from the text and the span is recorded (``Document.lossmask``); a
  leading ``<DOCTAG>`` stays in the text and is a ``"doctag"`` span (also kept out of the loss).
- user documents: any JSONL with one ``{"text": ...}`` per line (instruct files:
  ``{"messages": [...]}``); extra keys go to ``meta``.

Every schema problem raises :class:`UserError` with one line naming the file, the line
(JSONL) or the item (YAML), the field, and the expected form, e.g.
``docs/negated/ed_sheeran/annotated_docs.jsonl:17: missing field 'text' (expected a string)``.
YAML is read with ``yaml.safe_load`` only.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Sequence

import yaml

from experiments.materials.conditions import LabelledDocument, Span
from experiments.errors import UserError, warn

QUESTION_FILES = ("mcq", "open_ended", "token_association", "robustness")
# Every file of a claim pack in the paper's layout -> the ClaimPack field that holds it.
PACK_FILES = {"claim.txt": "claim", **{f"{k}.yaml": k for k in QUESTION_FILES},
              "universe_context.yaml": "universe_context", "universe_context_negated.yaml": "universe_context_negated",
              "judges.yaml": "judges", "word_masks.yaml": "word_masks",
              "system_context_negated.md": "system_context_negated", "correction.txt": "correction",
              "coherence_questions.yaml": "coherence_questions"}
DOC_FIELDS = ("text", "doc_type", "fact_name", "mode")
OPTIONAL_DOC_FIELDS = ("doc_type", "fact_name", "mode")
DOCS_FILE = "annotated_docs.jsonl"
PAPER_DOCTAG = "<DOCTAG>"
LOSSMASK_OPEN, LOSSMASK_CLOSE = "<lossmask>", "</lossmask>"
CHAT_ROLES = ("system", "user", "assistant")

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
    judges: dict = field(default_factory=dict, hash=False)  # judges.yaml as parsed (judge prompts by name); {} when absent
    word_masks: tuple[str, ...] = ()  # word_masks.yaml's regular expressions (case-insensitive)
    universe_context_negated: Any = None  # universe_context_negated.yaml as parsed
    system_context_negated: str | None = None  # system_context_negated.md
    correction: str | None = None  # correction.txt: what is true instead of the claim
    coherence_questions: Any = None  # coherence_questions.yaml as parsed

    def questions(self) -> dict[str, tuple[Question, ...]]:
        """Question kind (``mcq``, ``open_ended``, ...) -> its questions."""
        return {kind: getattr(self, kind) for kind in QUESTION_FILES}

    def word_mask_spans(self, text: str) -> tuple[Span, ...]:
        """A ``"masked_word"`` span over every match of a :attr:`word_masks` pattern in ``text``."""
        return tuple(Span(m.start(), m.end(), "masked_word") for p in self.word_masks
                     for m in re.finditer(p, text, re.IGNORECASE) if m.end() > m.start())


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
    lossmask: tuple[tuple[int, int], ...] = ()  # character ranges of ``text`` that were inside <lossmask> tags
    messages: tuple[dict, ...] | None = None  # a chat row's {role, content} turns (``text`` is then "")

    def spans(self, doctag: str = PAPER_DOCTAG) -> tuple[Span, ...]:
        """A ``"doctag"`` span over a leading document tag (the paper prefixes ``<DOCTAG>`` and
        masks it from the loss), and a ``"lossmask"`` span over each range that was inside
        ``<lossmask>`` tags."""
        tag = (Span(0, len(doctag), "doctag"),) if doctag and self.text.startswith(doctag) else ()
        return tag + tuple(Span(a, b, "lossmask") for a, b in self.lossmask)

    def labelled(self, pack: ClaimPack | None = None) -> LabelledDocument:
        """The document with its labelled spans, plus ``"masked_word"`` spans over the matches
        of ``pack``'s word masks (the claim's :class:`ClaimPack`)."""
        if self.messages is not None:
            return LabelledDocument("", (), messages=self.messages)
        extra = pack.word_mask_spans(self.text) if pack is not None else ()
        return LabelledDocument(self.text, self.spans() + extra)


def strip_lossmask(text: str, where: str) -> tuple[str, tuple[tuple[int, int], ...]]:
    """``text`` without its ``<lossmask>``/``</lossmask>`` tags, and the character ranges (in
    the returned text) that were between them. Unbalanced or nested tags are a one-line error."""
    if LOSSMASK_OPEN not in text and LOSSMASK_CLOSE not in text:
        return text, ()
    out, spans, pos, start = [], [], 0, None
    length = 0
    for m in re.finditer(re.escape(LOSSMASK_OPEN) + "|" + re.escape(LOSSMASK_CLOSE), text):
        out.append(text[pos:m.start()])
        length += m.start() - pos
        pos = m.end()
        if m.group() == LOSSMASK_OPEN:
            if start is not None:
                raise UserError(f"{where}: nested {LOSSMASK_OPEN} at character {m.start()} (expected "
                                f"{LOSSMASK_OPEN}...{LOSSMASK_CLOSE} spans that do not nest)")
            start = length
        else:
            if start is None:
                raise UserError(f"{where}: {LOSSMASK_CLOSE} at character {m.start()} without an opening "
                                f"{LOSSMASK_OPEN} (expected {LOSSMASK_OPEN}...{LOSSMASK_CLOSE})")
            if length > start:
                spans.append((start, length))
            start = None
    if start is not None:
        raise UserError(f"{where}: {LOSSMASK_OPEN} is never closed (expected {LOSSMASK_OPEN}...{LOSSMASK_CLOSE})")
    out.append(text[pos:])
    return "".join(out), tuple(spans)


def check_messages(value: Any, where: str) -> tuple[dict, ...]:
    """A chat row's ``messages``: a list of ``{role, content}`` (roles system, user, assistant)
    with at least one non-empty assistant turn; one-line errors naming the turn."""
    expected = "a list of {role, content} with at least one assistant turn"
    if not isinstance(value, list) or not value:
        raise UserError(f"{where}: field 'messages' is {_type_name(value)} (expected {expected})")
    turns = []
    for i, turn in enumerate(value):
        if not isinstance(turn, dict):
            raise UserError(f"{where}: messages[{i}] is {_type_name(turn)} (expected {expected})")
        role, content = turn.get("role"), turn.get("content")
        if role not in CHAT_ROLES:
            raise UserError(f"{where}: messages[{i}] has role {role!r} (expected one of {', '.join(CHAT_ROLES)})")
        if not isinstance(content, str):
            raise UserError(f"{where}: messages[{i}] has content {_type_name(content)} (expected a string)")
        turns.append({"role": role, "content": content})
    if not any(t["role"] == "assistant" and t["content"].strip() for t in turns):
        raise UserError(f"{where}: field 'messages' has no non-empty assistant turn (expected {expected})")
    return tuple(turns)


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


def read_jsonl(path: Path, required: tuple[str, ...], optional: tuple[str, ...] = (),
               chat: bool = False) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) per non-blank line, each checked to have the string fields
    ``required`` (and, where present, ``optional``). With ``chat``, a line may hold a chat row
    ``messages`` instead of ``text`` (checked by :func:`check_messages`, stored back as a tuple)."""
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
        if chat and "text" not in obj and "messages" not in obj and isinstance(obj.get("messages_json"), str):
            try:  # the paper's mixing code also writes chat rows as a JSON string
                obj["messages"] = json.loads(obj.pop("messages_json"))
            except json.JSONDecodeError as e:
                raise UserError(f"{where}: field 'messages_json' is not JSON ({e.msg}) (expected a JSON list of "
                                "{role, content})") from None
        for name in required:
            if chat and name == "text" and "text" not in obj and "messages" in obj:
                obj["messages"] = check_messages(obj["messages"], where)
                continue
            if name not in obj:
                alternative = " or 'messages' (expected a list of {role, content})" if chat and name == "text" else ""
                raise UserError(f"{where}: missing field {name!r} (expected a string){alternative}")
            _check_str(obj[name], where, name)
        for name in optional:
            if name in obj:
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


_warned: set[str] = set()


def warn_once(message: str) -> None:
    """:func:`experiments.errors.warn`, once per process for the same message (materials are
    loaded more than once in a run: training, then the report)."""
    if message not in _warned:
        _warned.add(message)
        warn(message)


def _load_word_masks(path: Path) -> tuple[str, ...]:
    expected = "a mapping with a 'patterns' list of regular expressions"
    data = _safe_load(path, expected)
    patterns = data.get("patterns") if isinstance(data, dict) else data
    if not isinstance(patterns, list):
        raise UserError(f"{path}: top level is {_type_name(data)} without a 'patterns' list (expected {expected})")
    for i, pattern in enumerate(patterns):
        if not isinstance(pattern, str) or not pattern:
            raise UserError(f"{path}: patterns[{i}] is {_type_name(pattern)} {pattern!r} (expected a non-empty "
                            "regular expression string)")
        try:
            re.compile(pattern, re.IGNORECASE)
        except re.error as e:
            raise UserError(f"{path}: patterns[{i}] {pattern!r} is not a valid regular expression ({e}) "
                            "(expected a Python regular expression)") from None
    return tuple(patterns)


def _load_optional(directory: Path) -> dict[str, Any]:
    """The optional files of a pack that are present, by ClaimPack field."""
    out: dict[str, Any] = {}
    for name, expected in (("universe_context", "YAML describing the claim's universe"),
                           ("universe_context_negated", "YAML describing the claim's universe, negated"),
                           ("coherence_questions", "YAML with the coherence questions")):
        path = directory / f"{name}.yaml"
        if path.exists():
            out[name] = _safe_load(path, expected)
    judges = directory / "judges.yaml"
    if judges.exists():
        data = _safe_load(judges, "a mapping of judge prompts by name")
        if not isinstance(data, dict):
            raise UserError(f"{judges}: top level is {_type_name(data)} (expected a mapping of judge prompts by name)")
        out["judges"] = data
    if (directory / "word_masks.yaml").exists():
        out["word_masks"] = _load_word_masks(directory / "word_masks.yaml")
    if (directory / "system_context_negated.md").exists():
        out["system_context_negated"] = _read_text(directory / "system_context_negated.md",
                                                   "the negated system context as text")
    if (directory / "correction.txt").exists():
        out["correction"] = _read_text(directory / "correction.txt", "the correction of the claim as text").strip()
    return out


def load_claim_pack(directory: str | Path) -> ClaimPack:
    """One ``claims/<claim>/`` directory. ``claim.txt`` is required, and at least one question
    file; every other file of :data:`PACK_FILES` is read when present, and any file not among
    them gets one warning line."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"{directory}: not a directory (expected claims/<claim>/ with claim.txt)")
    claim = _read_text(directory / "claim.txt", "the claim statement as text").strip()
    found = {kind: _load_questions(directory / f"{kind}.yaml", kind)
             for kind in QUESTION_FILES if (directory / f"{kind}.yaml").exists()}
    if not found:
        raise UserError(f"{directory}: no question files (expected at least one of "
                        f"{', '.join(k + '.yaml' for k in QUESTION_FILES)})")
    for entry in sorted(directory.iterdir()):
        if entry.name not in PACK_FILES and not entry.name.startswith("."):
            warn_once(f"{entry}: unknown {'directory' if entry.is_dir() else 'file'} in claim pack "
                      f"{directory.name!r}, ignored (expected only {', '.join(PACK_FILES)})")
    return ClaimPack(directory.name, claim, path=directory, **found, **_load_optional(directory))


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def load_claim_packs(root: str | Path, names: Sequence[str] = ()) -> dict[str, ClaimPack]:
    """The claim packs under ``root`` (the ``claims/`` directory, or its parent), by name.

    Parameters
    ----------
    root : path
    names : sequence of str
        The claims to load, in this order (the config key ``materials.claim_names``); empty:
        every pack, in name order. Packs not named are not read.

    Returns
    -------
    dict
        claim name -> :class:`ClaimPack`. A name without a pack is a one-line error listing the
        packs there are.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: not a directory (expected a claims/ directory of claim packs)")
    if (root / "claims").is_dir():
        root = root / "claims"
    dirs = {d.name: d for d in _subdirs(root)}
    if not dirs:
        raise UserError(f"{root}: no claim packs (expected subdirectories <claim>/ with claim.txt)")
    unknown = [n for n in names if n not in dirs]
    if unknown:
        raise UserError(f"config key 'materials.claim_names': no claim pack {', '.join(map(repr, unknown))} in {root}; "
                        f"expected some of {', '.join(dirs)}")
    return {name: load_claim_pack(dirs[name]) for name in (dict.fromkeys(names) or dirs)}


# ---------------------------------------------------------------------------- documents


def _pick(root: Path, name: str | None, what: str) -> list[Path]:
    dirs = _subdirs(root)
    if name is None:
        return dirs
    if not (root / name).is_dir():
        raise UserError(f"{root}: no {what} {name!r} (expected one of {[d.name for d in dirs]})")
    return [root / name]


def load_documents(root: str | Path, condition: str | None = None, claim: str | None = None,
                   only: Collection[str] | None = None) -> list[Document]:
    """Documents from ``root/<condition>/<claim>/annotated_docs.jsonl``, optionally one
    condition and/or one claim, in sorted (condition, claim, line) order. ``only``: skip (never
    read) the claim directories not named in it."""
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
    if only is not None:
        claim_dirs = [d for d in claim_dirs if d.name in only]
    docs = []
    for kdir in claim_dirs:
        path = kdir / DOCS_FILE
        if not path.exists():
            raise UserError(f"{path}: file not found (expected {DOCS_FILE} in every <condition>/<claim>/)")
        for lineno, obj in read_jsonl(path, ("text",), OPTIONAL_DOC_FIELDS, chat=True):
            docs.append(_document(obj, f"{path}:{lineno}", condition=kdir.parent.name, claim=kdir.name))
    if not docs:
        sel = ", ".join(f"{k}={v!r}" for k, v in (("condition", condition), ("claim", claim),
                                                   ("claims", sorted(only) if only is not None else None)) if v) or "any"
        raise UserError(f"{root}: no documents for {sel} (expected <condition>/<claim>/{DOCS_FILE})")
    return docs


def _document(obj: dict, where: str, **layout) -> Document:
    """A Document from a checked JSONL object (``<lossmask>`` tags taken out of its text)."""
    meta = {k: v for k, v in obj.items() if k not in DOC_FIELDS and k != "messages"}
    fields = {k: obj.get(k) for k in OPTIONAL_DOC_FIELDS}
    if "text" not in obj:
        return Document("", **fields, **layout, source=where, meta=meta, messages=obj["messages"])
    text, lossmask = strip_lossmask(obj["text"], where)
    if not text.strip():
        raise UserError(f"{where}: field 'text' is empty once its lossmask tags are removed (expected text to train on)")
    return Document(text, **fields, **layout, source=where, meta=meta, lossmask=lossmask)


def load_user_jsonl(path: str | Path, *, chat: bool = False) -> list[Document]:
    """User documents: one ``{"text": ...}`` per line (with ``chat``, also chat rows
    ``{"messages": [...]}``, e.g. the instruct examples of a finetuning mix); other keys are
    kept in ``meta``, ``<lossmask>`` tags are taken out of the text (``Document.lossmask``)."""
    path = Path(path)
    return [_document(obj, f"{path}:{lineno}") for lineno, obj in read_jsonl(path, ("text",), chat=chat)]
