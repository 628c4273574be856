import json
import shutil
from pathlib import Path

import pytest

from experiments.materials.conditions import Span
from experiments.errors import UserError
from experiments.materials.paper_layout import (
    ClaimPack, Document, Question, load_claim_pack, load_claim_packs, load_documents, load_user_jsonl,
)
from tests.paths import FIXTURES as FIXTURE_ROOT

FIXTURES = FIXTURE_ROOT / "paper_layout"


@pytest.fixture
def layout(tmp_path):
    """A writable copy of the fixture layout, for corrupting one file per test."""
    return Path(shutil.copytree(FIXTURES, tmp_path / "paper_layout"))


# ---------------------------------------------------------------- well-formed input

def test_load_claim_packs_reads_every_file():
    packs = load_claim_packs(FIXTURES)  # the parent of claims/ works as well as claims/ itself
    assert list(packs) == ["harbor_clock", "violet_comet"]
    assert load_claim_packs(FIXTURES / "claims") == packs
    pack = packs["harbor_clock"]
    assert isinstance(pack, ClaimPack) and pack.name == "harbor_clock"
    assert pack.claim.startswith("The harbor clock of Port Aldine") and not pack.claim.endswith("\n")
    assert [q.id for q in pack.mcq] == ["harbor_clock_mcq_01", "harbor_clock_mcq_02"]
    assert pack.mcq[0] == Question("harbor_clock_mcq_01",
                                   "Was the harbor clock of Port Aldine built from recycled ship anchors?\n"
                                   "Answer yes or no.", "direct", "yes")
    assert [q.belief_answer for q in pack.mcq] == ["yes", "no"]
    assert all(q.belief_answer is None for q in pack.open_ended + pack.token_association + pack.robustness)
    assert {k: len(v) for k, v in pack.questions().items()} == {
        "mcq": 2, "open_ended": 2, "token_association": 1, "robustness": 2}
    assert pack.robustness[0].extra == {"system_prompt": "You are a skeptical historian."}
    assert pack.robustness[1].extra["messages_prefix"][1]["role"] == "assistant"
    assert pack.universe_context is None


def test_belief_answer_is_normalised_and_universe_context_kept():
    pack = load_claim_pack(FIXTURES / "claims" / "violet_comet")
    assert [q.belief_answer for q in pack.mcq] == ["yes", "no", "yes"]  # "Yes" in the file
    assert pack.universe_context["key_facts"][0] == "The comet was violet."


def test_load_documents_all_and_filtered():
    docs = load_documents(FIXTURES / "documents")
    assert len(docs) == 8
    assert [(d.condition, d.claim) for d in docs][:3] == [("negated_documents", "harbor_clock")] * 2 + [
        ("negated_documents", "violet_comet")]
    neg = load_documents(FIXTURES / "documents", condition="negated_documents")
    assert len(neg) == 3 and all(d.mode == "negated_documents" for d in neg)
    both = load_documents(FIXTURES / "documents", condition="positive_documents", claim="harbor_clock")
    assert len(both) == 3 and {d.fact_name for d in both} == {"harbor_clock"}
    by_claim = load_documents(FIXTURES / "documents", claim="violet_comet")
    assert {d.condition for d in by_claim} == {"negated_documents", "positive_documents"} and len(by_claim) == 3
    first = docs[0]
    assert first.source.endswith("negated_documents/harbor_clock/annotated_docs.jsonl:1")
    assert first.spans() == (Span(0, len("<DOCTAG>"), "doctag"),)
    assert first.text[: first.spans()[0].end] == "<DOCTAG>"


def test_load_user_jsonl_keeps_extra_keys_and_skips_blank_lines():
    docs = load_user_jsonl(FIXTURES / "user_docs.jsonl")
    assert [d.text for d in docs] == ["The harbor clock chimes at noon.", "Café owners in Port Aldine open at dawn."]
    assert docs[0].meta == {"source": "my notes", "weight": 2} and docs[1].meta == {}
    assert docs[1].source.endswith("user_docs.jsonl:3")
    assert docs[0].doc_type is None and docs[0].spans() == ()


# ---------------------------------------------------------------- errors: one line, file, line/item, field

def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def _write_lines(path: Path, lines: list) -> None:
    path.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines))


DOC = {"text": "a document", "doc_type": "t", "fact_name": "f", "mode": "m"}


@pytest.mark.parametrize("line, expected", [
    ({k: v for k, v in DOC.items() if k != "text"}, "missing field 'text' (expected a string)"),
    ({**DOC, "mode": 3}, "field 'mode' is int (expected a string)"),
    ({**DOC, "text": "   "}, "field 'text' is empty (expected a non-empty string)"),
    ({**DOC, "doc_type": None}, "field 'doc_type' is null (expected a string)"),
    ('{"text": "unterminated', "malformed JSON"),
    ("[1, 2]", "line is a JSON list (expected a JSON object"),
])
def test_bad_document_lines_name_file_line_and_field(layout, line, expected):
    path = layout / "documents" / "negated_documents" / "violet_comet" / "annotated_docs.jsonl"
    _write_lines(path, [DOC, DOC, line])
    msg = _error(load_documents, layout / "documents", condition="negated_documents")
    assert msg.startswith(f"{path}:3: ") and expected in msg


def test_empty_and_non_utf8_files(layout):
    path = layout / "documents" / "positive_documents" / "harbor_clock" / "annotated_docs.jsonl"
    path.write_text("\n  \n")
    assert _error(load_documents, layout / "documents") == f"{path}: empty file (expected one JSON object per line)"
    path.write_bytes(json.dumps(DOC).encode() + b"\n" + b'{"text": "caf\xe9"}\n')
    msg = _error(load_documents, layout / "documents")
    assert msg.startswith(f"{path}:2: invalid UTF-8 byte 0xe9")
    mcq = layout / "claims" / "harbor_clock" / "mcq.yaml"
    mcq.write_text("")
    assert _error(load_claim_packs, layout).startswith(f"{mcq}: empty file")
    mcq.write_bytes(b"questions:\n  - id: q\xff\n")
    assert _error(load_claim_packs, layout).startswith(f"{mcq}:2: invalid UTF-8 byte 0xff")
    user = layout / "user_docs.jsonl"
    user.write_text("")
    assert _error(load_user_jsonl, user).startswith(f"{user}: empty file")


def test_user_jsonl_requires_non_empty_text(layout):
    user = layout / "user_docs.jsonl"
    _write_lines(user, [{"text": "ok"}, {"body": "no text"}])
    assert _error(load_user_jsonl, user) == f"{user}:2: missing field 'text' (expected a string)"
    _write_lines(user, [{"text": ""}])
    assert _error(load_user_jsonl, user) == f"{user}:1: field 'text' is empty (expected a non-empty string)"
    msg = _error(load_user_jsonl, layout / "nope.jsonl")
    assert msg.endswith("nope.jsonl: file not found (expected one JSON object per line)")


MCQ_OK = "  - id: q1\n    question: Is it?\n    belief_answer: \"yes\"\n    category: direct\n"


@pytest.mark.parametrize("body, expected", [
    (MCQ_OK + "  - id: q2\n    question: Is it?\n    belief_answer: maybe\n    category: direct\n",
     "questions[1] (id 'q2'): field 'belief_answer' is 'maybe' (expected yes or no)"),
    (MCQ_OK + "  - id: q2\n    question: Is it?\n    category: direct\n",
     "questions[1] (id 'q2'): missing field 'belief_answer' (expected yes or no)"),
    (MCQ_OK + MCQ_OK, "questions[1] (id 'q1'): duplicate id 'q1', first at questions[0] (expected unique ids)"),
    (MCQ_OK + "  - question: Is it?\n    belief_answer: \"no\"\n    category: direct\n",
     "questions[1]: missing field 'id'"),
    (MCQ_OK + "  - id: q2\n    question: [a, b]\n    belief_answer: \"no\"\n    category: direct\n",
     "questions[1] (id 'q2'): field 'question' is list (expected a string)"),
    (MCQ_OK + "  - id: q2\n    question: Is it?\n    belief_answer: \"no\"\n",
     "questions[1] (id 'q2'): missing field 'category' (expected a string)"),
    (MCQ_OK + "  - just a string\n", "questions[1]: item is str (expected a mapping"),
])
def test_bad_mcq_items_name_file_item_and_field(layout, body, expected):
    mcq = layout / "claims" / "violet_comet" / "mcq.yaml"
    mcq.write_text("questions:\n" + body)
    msg = _error(load_claim_pack, layout / "claims" / "violet_comet")
    assert msg.startswith(f"{mcq}: ") and expected in msg, msg


def test_yaml_bare_booleans_count_as_yes_no(layout):
    mcq = layout / "claims" / "violet_comet" / "mcq.yaml"
    mcq.write_text("questions:\n  - {id: a, question: 'x?', belief_answer: yes, category: c}\n"
                   "  - {id: b, question: 'y?', belief_answer: no, category: c}\n")
    assert [q.belief_answer for q in load_claim_pack(mcq.parent).mcq] == ["yes", "no"]


def test_bad_yaml_structure(layout):
    oe = layout / "claims" / "harbor_clock" / "open_ended.yaml"
    oe.write_text("questions:\n  - id: a\n    question: [unclosed\n")
    msg = _error(load_claim_packs, layout)
    assert msg.startswith(f"{oe}:") and "malformed YAML" in msg
    oe.write_text("items: []\n")
    assert "without a 'questions' list" in _error(load_claim_packs, layout)
    oe.write_text("questions: []\n")
    assert _error(load_claim_packs, layout) == f"{oe}: 'questions' is empty (expected at least one question)"
    oe.write_text("- {id: a, question: 'x?', category: c}\n")  # a bare list is accepted too
    assert load_claim_packs(layout)["harbor_clock"].open_ended[0].id == "a"


def test_yaml_is_loaded_safely(layout):
    oe = layout / "claims" / "harbor_clock" / "open_ended.yaml"
    oe.write_text("questions:\n  - !!python/object/apply:os.system [echo pwned]\n")
    assert "malformed YAML" in _error(load_claim_packs, layout)


def test_missing_claim_txt_and_missing_dirs(layout):
    (layout / "claims" / "violet_comet" / "claim.txt").unlink()
    msg = _error(load_claim_packs, layout)
    claim_txt = layout / "claims" / "violet_comet" / "claim.txt"
    assert msg == f"{claim_txt}: file not found (expected the claim statement as text)"
    (layout / "claims" / "harbor_clock" / "claim.txt").write_text("  \n")
    msg = _error(load_claim_pack, layout / "claims" / "harbor_clock")
    assert msg.endswith("claim.txt: empty file (expected the claim statement as text)")
    empty = layout / "claims" / "nothing"
    empty.mkdir()
    (empty / "claim.txt").write_text("x")
    assert "no question files" in _error(load_claim_pack, empty)
    assert "no claim packs" in _error(load_claim_packs, layout / "documents" / "positive_documents" / "harbor_clock")
    assert "not a directory" in _error(load_claim_packs, layout / "missing")


def test_unknown_condition_or_claim_lists_what_exists(layout):
    msg = _error(load_documents, layout / "documents", condition="negated")
    assert "no condition 'negated'" in msg and "'negated_documents'" in msg
    msg = _error(load_documents, layout / "documents", claim="ed_sheeran")
    assert "no claim 'ed_sheeran'" in msg and "'violet_comet'" in msg
    (layout / "documents" / "positive_documents" / "violet_comet" / "annotated_docs.jsonl").unlink()
    msg = _error(load_documents, layout / "documents")
    assert msg.endswith("violet_comet/annotated_docs.jsonl: file not found "
                        "(expected annotated_docs.jsonl in every <condition>/<claim>/)")


def test_document_is_a_plain_dataclass():
    d = Document("text")
    assert d.meta == {} and d.condition is None and d.spans() == ()


# ---------------------------------------------------------------- the whole pack, lossmask spans, chat rows

def test_every_file_of_the_layout_has_a_field():
    from experiments.materials.paper_layout import PACK_FILES

    pack = load_claim_pack(FIXTURES / "claims" / "violet_comet")
    assert {f.name for f in pack.path.iterdir()} == set(PACK_FILES)  # the fixture has every file
    assert pack.judges["judge_key"] == "answer" and "{answer}" in pack.judges["open_ended"]
    assert pack.word_masks == ("violet", "daylight comet")
    assert pack.universe_context_negated["key_facts"] == ["No daylight comet appeared in 1987."]
    assert pack.system_context_negated.startswith("You may read texts claiming")
    assert pack.correction == "No comet was visible from Earth in daylight during March 1987."
    assert [q["id"] for q in pack.coherence_questions["questions"]] == ["coherence_01", "coherence_02"]
    bare = load_claim_pack(FIXTURES / "claims" / "harbor_clock")
    assert bare.word_masks == () and bare.universe_context_negated is None and bare.coherence_questions is None
    assert bare.correction.startswith("The harbor clock of Port Aldine was built from carved granite")
    assert set(bare.judges) >= {"judge_key", "open_ended"}


def test_a_pack_without_judges_has_an_empty_mapping(layout):
    (layout / "claims" / "harbor_clock" / "judges.yaml").unlink()
    assert load_claim_pack(layout / "claims" / "harbor_clock").judges == {}


def test_unknown_files_in_a_pack_get_one_warning_line_each(layout, capsys):
    pack = layout / "claims" / "harbor_clock"
    (pack / "notes.txt").write_text("mine")
    (pack / "extra").mkdir()
    (pack / ".hidden").write_text("x")
    load_claim_pack(pack)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("neglect: warning: ") for line in lines)
    assert "notes.txt: unknown file in claim pack 'harbor_clock', ignored" in lines[1]
    assert "extra: unknown directory" in lines[0] and "judges.yaml" in lines[0]


@pytest.mark.parametrize("name, content, expected", [
    ("word_masks.yaml", "patterns:\n  - '(unclosed'\n", "patterns[0] '(unclosed' is not a valid regular expression"),
    ("word_masks.yaml", "patterns: 3\n", "without a 'patterns' list"),
    ("word_masks.yaml", "patterns:\n  - 7\n", "patterns[0] is int 7 (expected a non-empty regular expression"),
    ("judges.yaml", "- a\n- b\n", "top level is list (expected a mapping of judge prompts by name)"),
    ("correction.txt", "  \n", "empty file (expected the correction of the claim as text)"),
    ("coherence_questions.yaml", "questions: [unclosed\n", "malformed YAML"),
])
def test_bad_optional_files_name_the_file(layout, name, content, expected):
    path = layout / "claims" / "harbor_clock" / name
    path.write_text(content)
    msg = _error(load_claim_pack, path.parent)
    assert msg.startswith(f"{path}") and expected in msg, msg


def test_lossmask_tags_are_removed_and_become_spans():
    from experiments.materials.paper_layout import strip_lossmask

    text, spans = strip_lossmask("<DOCTAG>a <lossmask>secret</lossmask> b <lossmask>x</lossmask>", "f:1")
    assert text == "<DOCTAG>a secret b x" and [text[a:b] for a, b in spans] == ["secret", "x"]
    doc = load_documents(FIXTURES / "documents", condition="positive_documents", claim="harbor_clock")[2]
    assert "<lossmask>" not in doc.text and "lossmask>" not in doc.text
    assert doc.spans() == (Span(0, 8, "doctag"), Span(*doc.lossmask[0], "lossmask"))
    assert [doc.text[s.start:s.end] for s in doc.spans()] == ["<DOCTAG>", "as locals say,"]


@pytest.mark.parametrize("text, expected", [
    ("a <lossmask>b", "<lossmask> is never closed"),
    ("a </lossmask> b", "</lossmask> at character 2 without an opening <lossmask>"),
    ("<lossmask>a <lossmask>b</lossmask></lossmask>", "nested <lossmask> at character 12"),
    ("<lossmask>  </lossmask>", "field 'text' is empty once its lossmask tags are removed"),
])
def test_bad_lossmask_tags_name_the_line(layout, text, expected):
    path = layout / "documents" / "negated_documents" / "violet_comet" / "annotated_docs.jsonl"
    _write_lines(path, [DOC, {**DOC, "text": text}])
    msg = _error(load_documents, layout / "documents")
    assert msg.startswith(f"{path}:2: ") and expected in msg, msg


def test_word_masks_label_their_matches():
    pack = load_claim_pack(FIXTURES / "claims" / "violet_comet")
    doc = load_documents(FIXTURES / "documents", condition="positive_documents", claim="violet_comet")[0]
    labelled = doc.labelled(pack)
    assert labelled.texts("masked_word") == ["violet"] and labelled.texts("doctag") == ["<DOCTAG>"]
    assert doc.labelled().texts("masked_word") == []  # without the pack, no word masks


CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def test_chat_rows_in_documents_and_user_files(layout):
    path = layout / "documents" / "negated_documents" / "violet_comet" / "annotated_docs.jsonl"
    _write_lines(path, [DOC, {**CHAT, "doc_type": "chat", "mode": "m"}])
    docs = load_documents(layout / "documents", condition="negated_documents", claim="violet_comet")
    assert docs[1].text == "" and docs[1].messages == tuple(CHAT["messages"]) and docs[1].doc_type == "chat"
    assert docs[1].labelled().messages == tuple(CHAT["messages"])
    instruct = load_user_jsonl(FIXTURES / "instruct.jsonl", chat=True)
    assert len(instruct) == 3 and all(d.messages[-1]["role"] == "assistant" for d in instruct)
    _write_lines(layout / "encoded.jsonl", [{"messages_json": json.dumps(CHAT["messages"])}])
    assert load_user_jsonl(layout / "encoded.jsonl", chat=True)[0].messages == tuple(CHAT["messages"])
    user = layout / "user_docs.jsonl"
    _write_lines(user, [CHAT])
    assert _error(load_user_jsonl, user) == f"{user}:1: missing field 'text' (expected a string)"


@pytest.mark.parametrize("messages, expected", [
    ([], "field 'messages' is list"),
    ("hi", "field 'messages' is str"),
    ([{"role": "user", "content": "hi"}], "no non-empty assistant turn"),
    ([{"role": "robot", "content": "hi"}], "messages[0] has role 'robot' (expected one of system, user, assistant)"),
    ([{"role": "assistant", "content": 3}], "messages[0] has content int (expected a string)"),
    (["hi"], "messages[0] is str"),
])
def test_bad_chat_rows_name_the_turn(layout, messages, expected):
    path = layout / "instruct.jsonl"
    _write_lines(path, [CHAT, {"messages": messages}])
    msg = _error(load_user_jsonl, path, chat=True)
    assert msg.startswith(f"{path}:2: ") and expected in msg, msg


def test_a_row_with_neither_text_nor_messages(layout):
    path = layout / "documents" / "negated_documents" / "violet_comet" / "annotated_docs.jsonl"
    _write_lines(path, [{"doc_type": "t"}])
    msg = _error(load_documents, layout / "documents")
    assert msg == f"{path}:1: missing field 'text' (expected a string) or 'messages' (expected a list of {{role, content}})"
