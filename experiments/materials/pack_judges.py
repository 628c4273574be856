"""A claim pack's judged items: its open-ended, token-association and robustness questions,
each with the judge prompt and verdict key of the pack's ``judges.yaml`` for its kind (the
paper's keys: ``open_ended`` / ``judge_key``, ``token_association`` /
``token_association_judge_key``, ``robustness`` / ``robustness_judge_key``), checked before use.
The judging itself is ``experiments.evaluation.judge``.
"""
from __future__ import annotations

import string

from experiments.errors import UserError, warn
from experiments.materials.base import OpenQuestion
from experiments.materials.questions import Prompt, item_turns

# The judges.yaml key of each judged kind's prompt (the first present wins; the second names are
# those of the paper's authoring guide), and the fields a prompt template may use.
JUDGE_PROMPT_KEYS = {"open_ended": ("open_ended", "belief_probe"),
                     "token_association": ("token_association", "pink_elephant"),
                     "robustness": ("robustness",)}
JUDGE_FIELDS = ("question", "answer")


def check_judge_template(template, where: str) -> str:
    """``template`` if it is a judge prompt that ``str.format(question=..., answer=...)`` fills."""
    if not isinstance(template, str) or not template.strip():
        raise UserError(f"{where} is {type(template).__name__} {template!r:.60} (expected a prompt template with "
                        "{question} and {answer})")
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as e:
        raise UserError(f"{where}: malformed template ({e}; write literal braces as {{{{ and }}}})") from None
    unknown = sorted(names - set(JUDGE_FIELDS))
    if unknown:
        raise UserError(f"{where}: template field {{{unknown[0]}}} (expected only {{question}} and {{answer}}; "
                        "write literal braces as {{ and }})")
    if "answer" not in names:
        raise UserError(f"{where}: template has no {{answer}} field (expected the model's answer in it)")
    return template


def pack_judge(pack, kind: str) -> tuple[str | None, str, str]:
    """``(template, verdict key, source)`` of the pack's judge for ``kind``; template None (the
    built-in judge) when ``judges.yaml`` has none."""
    judges = getattr(pack, "judges", None) or {}
    path = pack.path / "judges.yaml" if pack.path else f"{pack.name}/judges.yaml"
    for key in JUDGE_PROMPT_KEYS[kind]:
        if key in judges:
            template = check_judge_template(judges[key], f"{path}: key {key!r}")
            verdict = judges.get(f"{key}_judge_key") or judges.get("judge_key") or "answer"
            if not isinstance(verdict, str):
                raise UserError(f"{path}: key '{key}_judge_key' is {verdict!r} (expected the name of the JSON field "
                                "holding the verdict, e.g. answer)")
            return template, verdict, f"{path}:{key}"
    return None, "answer", "built-in"


_WARNED: set = set()  # (pack, kind) already warned about in this process


def pack_open_questions(pack, *, warn_missing: bool = True) -> list[OpenQuestion]:
    """The free-text items of a claim pack for the judge: open-ended and token-association
    questions, and robustness prompts, each with its own system prompt and earlier turns, and with
    the pack's judge for its kind (:func:`pack_judge`). A kind with items but no judge prompt
    in ``judges.yaml`` is judged with the built-in prompt, with one warning line (once per
    process)."""
    out = []
    for kind in JUDGE_PROMPT_KEYS:
        items = getattr(pack, kind)
        if not items:
            continue
        template, key, source = pack_judge(pack, kind)
        if template is None and warn_missing and (str(pack.path or pack.name), kind) not in _WARNED:
            _WARNED.add((str(pack.path or pack.name), kind))
            warn(f"claim pack {pack.name!r}: judges.yaml has no {JUDGE_PROMPT_KEYS[kind][0]!r} prompt; its {kind} "
                 "answers are judged with the built-in prompt")
        for q in items:
            system, prefix = item_turns(pack, q, kind)
            out.append(OpenQuestion(pack.name, pack.claim, Prompt(q.question, system, prefix), kind, q.id, template,
                                    key, source))
    return out
