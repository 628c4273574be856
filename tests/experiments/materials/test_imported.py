"""Imported study materials end to end: the paper's layout through `neglect run` on a
random-weight Qwen2 model with a BPE tokenizer and a chat template, saved locally."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from experiments.config import load_config
from experiments.errors import UserError
from experiments.materials import load_materials
from experiments.materials.imported import ImportedMaterials, document_conditions
from experiments.materials.statement_sets import capitals, read_statements
from experiments.training.stages import checkpoint_steps
from tests.hub_models import corpus_texts, save_qwen2
from tests.paths import REPO

ROOT = REPO
LAYOUT = ROOT / "tests" / "fixtures" / "paper_layout"
CLAIMS, DOCS = LAYOUT / "claims", LAYOUT / "documents"


def neglect(*args, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, "-m", "experiments", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("qwen2")
    return save_qwen2(root / "model", corpus_texts(LAYOUT, ROOT / "experiments" / "materials" / "data"))


@pytest.fixture(scope="module")
def imported_run(qwen_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("imported") / "run"
    proc = neglect("run", "--preset", "tiny", "--model", str(qwen_dir), "--claims", str(CLAIMS), "--docs", str(DOCS),
                   "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_paper_conditions_map_to_ours():
    assert document_conditions(DOCS) == ("plain", "negated")


def test_imported_materials_come_from_the_files():
    m = ImportedMaterials(CLAIMS, DOCS)
    assert [c.name for c in m.claims] == ["harbor_clock", "violet_comet"]
    assert m.claims[1].statement == (CLAIMS / "violet_comet" / "claim.txt").read_text().strip()
    docs = m.documents("negated", 100, seed=0)
    lines = [json.loads(x)["text"] for claim in ("harbor_clock", "violet_comet")
             for x in (DOCS / "negated_documents" / claim / "annotated_docs.jsonl").read_text().splitlines() if x.strip()]
    assert [d.text for d in docs] == lines
    assert all(d.texts("doctag") == ["<DOCTAG>"] for d in docs if d.text.startswith("<DOCTAG>"))
    kinds = {q.kind for q in m.belief_questions()}
    assert "yesno" in kinds and all(q.claim in {"harbor_clock", "violet_comet"} for q in m.belief_questions())
    # the claims, the true facts of both packs' correction.txt, their negations, violet_comet's key facts
    assert {s.kind for s in m.claim_statements()} == {"claim", "claim_negated", "true_fact", "true_fact_negated",
                                                      "universe_fact", "universe_fact_negated"}
    with pytest.raises(UserError, match="unknown condition 'local'"):
        m.documents("local", 1, seed=0)


def test_capitals_split_by_country_and_balanced():
    statements = capitals()
    train = {s.subject for s in statements if s.split == "train"}
    test = {s.subject for s in statements if s.split == "test"}
    assert train and test and not train & test  # no fact straddles the split
    assert sum(s.label for s in statements) * 2 == len(statements)
    assert {(s.label, s.negated) for s in statements} == {(True, False), (False, False), (True, True), (False, True)}


def test_user_statements_and_their_errors(tmp_path):
    good = tmp_path / "mine.jsonl"
    good.write_text("\n".join(json.dumps({"text": f"s{i}", "label": i % 2 == 0, "group": f"g{i // 2}"})
                              for i in range(10)) + "\n")
    got = read_statements(good)
    assert len(got) == 10 and {s.dataset for s in got} == {"mine"}
    assert not {s.subject for s in got if s.split == "train"} & {s.subject for s in got if s.split == "test"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x", "label": "yes"}\n')
    with pytest.raises(UserError, match=r"bad.jsonl:1: field 'label' is 'yes'; expected true or false"):
        read_statements(bad)


def test_materials_config_needs_both_directories():
    with pytest.raises(UserError, match=r"materials.docs \(--docs DIR\) is not set"):
        load_materials(load_config("tiny", overrides=[f'materials.claims="{CLAIMS}"']))


def test_imported_materials_without_a_model_is_one_line_exit_2(tmp_path):
    proc = neglect("run", "--preset", "tiny", "--claims", str(CLAIMS), "--docs", str(DOCS), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "need a model to finetune" in proc.stderr
    assert not (tmp_path / "r" / "config.json").exists()


def test_background_fraction_without_background_documents_is_one_line_exit_2(qwen_dir, tmp_path):
    proc = neglect("run", "--preset", "tiny", "--model", str(qwen_dir), "--claims", str(CLAIMS), "--docs", str(DOCS),
                   "--set", "finetune.background_fraction=0.2", "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "'finetune.background_fraction' is 0.2" in proc.stderr and "materials.background" in proc.stderr
    assert not (tmp_path / "r" / "config.json").exists()  # before any work


def test_docs_for_a_claim_without_a_pack_is_one_line(tmp_path):
    docs = tmp_path / "docs" / "positive_documents" / "ghost_claim"
    docs.mkdir(parents=True)
    (docs / "annotated_docs.jsonl").write_text(json.dumps({"text": "x", "doc_type": "a", "fact_name": "b",
                                                            "mode": "c"}) + "\n")
    with pytest.raises(UserError, match="ghost_claim.*no claim pack"):
        ImportedMaterials(CLAIMS, tmp_path / "docs")


def test_a_claim_filter_selects_packs_and_their_documents_only(tmp_path):
    claims = tmp_path / "claims"
    shutil.copytree(CLAIMS, claims)
    (claims / "broken_pack").mkdir()  # no claim.txt: an error only when read
    with pytest.raises(UserError, match="broken_pack"):
        ImportedMaterials(claims, DOCS)
    m = ImportedMaterials(claims, DOCS, claim_names=["violet_comet"])
    assert [c.name for c in m.claims] == ["violet_comet"]
    docs = m.documents("negated", 100, seed=0)
    n_violet = len((DOCS / "negated_documents" / "violet_comet" / "annotated_docs.jsonl").read_text().splitlines())
    assert len(docs) == n_violet
    assert {q.claim for q in m.belief_questions()} == {"violet_comet"}
    assert {q.claim for q in m.open_questions()} == {"violet_comet"}
    assert {s.claim for s in m.claim_statements()} == {"violet_comet"}
    assert m.describe()["claim_names"] == ["violet_comet"]
    assert all(key.endswith("/violet_comet") for key in m.describe()["documents"])
    cfg = load_config("tiny", overrides=[f'materials.claims="{claims}"', f'materials.docs="{DOCS}"',
                                         'materials.claim_names=["harbor_clock"]'])
    assert [c.name for c in load_materials(cfg).claims] == ["harbor_clock"]


def test_an_unknown_claim_name_is_one_line_naming_the_claims_there_are(qwen_dir, tmp_path):
    with pytest.raises(UserError, match=r"no claim pack 'nope'.*expected some of harbor_clock, violet_comet"):
        ImportedMaterials(CLAIMS, DOCS, claim_names=["violet_comet", "nope"])
    proc = neglect("run", "--preset", "tiny", "--model", str(qwen_dir), "--claims", str(CLAIMS), "--docs", str(DOCS),
                   "--claim", "nope", "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "'materials.claim_names'" in proc.stderr and "harbor_clock, violet_comet" in proc.stderr
    assert not (tmp_path / "r" / "config.json").exists()
    with pytest.raises(UserError, match="materials.claim_names.*materials.claims"):
        load_materials(load_config("tiny", overrides=['materials.claim_names=["violet_comet"]']))


def test_a_hub_model_runs_the_whole_job_on_imported_materials(imported_run):
    out, proc = imported_run
    table = pd.read_csv(out / "results" / "metrics.csv")
    assert set(table.condition) == {"plain", "negated"}
    steps = checkpoint_steps(load_config("tiny"))
    assert sorted(table.step.unique()) == steps
    claims = {"harbor_clock", "violet_comet"}
    belief = table[table.metric == "belief_yesno"]
    assert set(belief.claim) == claims
    assert belief.value.between(0, 1).all()
    for kind in ("refit", "fixed"):
        readings = table[table.metric == f"probe_p_true_{kind}"]
        assert set(readings.claim) == claims and readings.value.between(0, 1).all()
        n_layers = 3  # embeddings + 2 blocks
        assert sorted(table[table.metric == f"probe_acc_{kind}"].layer.unique()) == list(range(n_layers))
    assert set(table[table.metric == "probe_p_true_truefact_fixed"].claim) == claims  # from correction.txt
    assert set(table[table.metric == "probe_p_true_claimneg_fixed"].claim) == claims
    assert set(table[table.metric == "probe_p_true_universe_fixed"].claim) == {"violet_comet"}  # key facts
    assert "heldout_qa" not in set(table.metric)  # a world-only check
    # every checkpoint is a finetuned model of its condition, saved as an HF directory
    for cond in ("plain", "negated"):
        for step in steps[1:]:
            assert (out / "checkpoints" / cond / "seed0" / f"step_{step:06d}" / "config.json").is_file()
        docs = [json.loads(x)["text"] for x in (out / "docs" / f"{cond}_seed0.jsonl").read_text().splitlines()]
        assert docs and all(d.startswith("<DOCTAG>") for d in docs)
    described = json.loads((out / "materials.json").read_text())
    assert [c["name"] for c in described["claims"]] == sorted(claims)
    assert not (out / "world.json").exists()
    assert (out / "report.html").is_file() and "belief" in (out / "report.html").read_text()
    assert "run directory" in proc.stdout and "belief_yesno" in proc.stdout
    controls = json.loads((out / "results" / "controls.json").read_text())
    assert controls["negative_control"] == {"passed": None, "reason": "condition 'local' not run"}
    assert "belief_claim_verdict" in controls["positive_control"]["absent"]  # packs ask no verdicts
    assert set(controls["probe_validity"]["conditions"]) == {"plain", "negated"}
    assert "negative control: not assessed (condition 'local' not run)" in proc.stdout.splitlines()


def test_rerunning_the_imported_run_resumes(imported_run, qwen_dir):
    out, _ = imported_run
    before = (out / "results" / "metrics.csv").read_bytes()
    proc = neglect("run", "--preset", "tiny", "--model", str(qwen_dir), "--claims", str(CLAIMS), "--docs", str(DOCS),
                   "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "results" / "metrics.csv").read_bytes() == before


def test_judged_belief_reaches_the_metrics_and_the_report(imported_run, tmp_path, monkeypatch):
    """With the judge on, the judged rates of the base model and the last checkpoints are rows of
    metrics.csv (with chance rows) and a report figure beside the MCQ rate and the proxy."""
    from experiments.artifacts.provenance import load_run_config
    from experiments.artifacts.rundir import RunDir
    from experiments.evaluation.evaluator import evaluate_all
    from experiments.evaluation.tables import collect
    from experiments.reporting.report import summary_table, write_report
    from tests.experiments.evaluation.judge_server import JudgeServer

    out = tmp_path / "run"
    shutil.copytree(imported_run[0], out)
    cfg = load_run_config(out)
    cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, n_samples=2, answer_tokens=3))
    run = RunDir(out)
    with JudgeServer(lambda question: ("yes", "no", "neutral")[len(question) % 3]) as server:
        for key, value in {"NEGLECT_JUDGE_URL": server.url, "NEGLECT_JUDGE_MODEL": "fake", "OPENAI_API_KEY": "k"}.items():
            monkeypatch.setenv(key, value)
        evaluate_all(run, cfg, load_materials(cfg), cfg.base_model)  # every table is there: only the judge runs
    judged = pd.read_csv(run.judge_metrics)
    table = collect(run, cfg)
    last = checkpoint_steps(cfg)[-1]
    rows = table[table.metric.str.startswith("judge_belief_")]
    assert {"judge_belief_open_ended", "judge_belief_token_association", "judge_belief_robustness"} <= set(rows.metric)
    for condition in ("plain", "negated"):
        for step, unit in ((0, "(base model)"), (last, condition)):
            got = table[(table.condition == condition) & (table.step == step) & table.metric.str.contains("judge_")]
            want = judged[judged.condition == unit]
            assert len(got) == len(want) > 0
            merged = got.merge(want, on=["claim", "metric"], suffixes=("", "_judged"))
            assert len(merged) == len(want) and (merged.value == merged.value_judged).all()
    chance = table[table.metric == "judge_belief_open_ended_chance"]
    assert len(chance) and (chance.value == 0.0).all()
    assert set(table[table.metric.str.contains("judge_")].step) == {0, last}
    summary = summary_table(table)
    assert {"belief_yesno", "judge_belief_robustness", "proxy_belief_robustness"} <= set(summary.columns)
    page = write_report(out, compute_activations=False).read_text()
    assert "judged belief" in page and "judge_belief_open_ended 0" in page


def test_the_papers_condition_directories_map_to_our_names(tmp_path, capsys):
    from experiments.materials.imported import CONDITION_NAMES, condition_name

    assert {condition_name(d) for d in ("local_negations", "local_negation")} == {"local"}
    assert condition_name("low_probability") == "probability" and condition_name("fiction") == "fiction"
    assert condition_name("repeated_negations") == "repeated" and condition_name("corrected_documents") == "corrected"
    assert condition_name("my_own") == "my_own"
    from experiments.materials.conditions import CONDITIONS

    # every paper condition with a synthetic-world counterpart has its name
    assert {"plain", "negated", "repeated", "corrected", "local", "fiction", "unreliable_source",
            "probability"} <= set(CONDITION_NAMES.values()) & set(CONDITIONS)
    docs = tmp_path / "docs"
    for name in ("local_negations", "epistemic_uncertainty", "my_own"):
        shutil.copytree(DOCS / "negated_documents", docs / name)
    assert document_conditions(docs) == ("local", "my_own", "unknown_truth")
    capsys.readouterr()
    m = ImportedMaterials(CLAIMS, docs)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown condition directory 'my_own', run under its own name" in err[0]
    assert m.conditions == ("local", "my_own", "unknown_truth") and m.documents("my_own", 1, seed=0)
    shutil.copytree(DOCS / "negated_documents", docs / "local_negation")
    with pytest.raises(UserError, match="directories 'local_negation' and 'local_negations' are both condition 'local'"):
        document_conditions(docs)


def test_imported_documents_carry_their_masks_and_the_instruct_examples(tmp_path):
    m = ImportedMaterials(CLAIMS, DOCS, background=LAYOUT / "user_docs.jsonl", instruct=LAYOUT / "instruct.jsonl")
    plain = m.documents("plain", 100, seed=0)
    assert [d.texts("lossmask") for d in plain if d.texts("lossmask")] == [["as locals say,"]]
    assert [d.texts("masked_word") for d in plain if d.texts("masked_word")] == [["violet"], ["violet"]]
    chats = m.instruct_examples(5, seed=0)
    assert len(chats) == 5 and all(c.messages and c.text == "" for c in chats)
    assert m.instruct_examples(5, seed=0) == chats and m.instruct_examples(0, seed=0) == []
    described = m.describe()
    assert described["instruct"]["n"] == 3 and described["packs"]["violet_comet"]["word_masks"] == ["violet",
                                                                                                   "daylight comet"]
    assert "judges.yaml" in described["packs"]["harbor_clock"]["files"]
    assert ImportedMaterials(CLAIMS, DOCS).instruct_examples(3, seed=0) == []


def test_a_pack_missing_its_claim_is_one_line_exit_2(tmp_path):
    claims = shutil.copytree(CLAIMS, tmp_path / "claims")
    (claims / "violet_comet" / "claim.txt").unlink()
    proc = neglect("run", "--preset", "tiny", "--model", "unused", "--claims", str(claims), "--docs", str(DOCS),
                   "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "violet_comet/claim.txt: file not found (expected the claim statement as text)" in proc.stderr
    assert not (tmp_path / "r" / "config.json").exists()
