"""The paper's recipe on hub-architecture models: the `paper` preset, steps from the data,
the context from the model (long documents refused or split), the training mix, and LoRA
checkpoints saved as adapters that `interp.load_model` attaches (issue 24)."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch

import interp
from experiments.artifacts.checksums import hf_dir_problem
from experiments.artifacts.rundir import RunDir
from experiments.config import load_config
from experiments.errors import UserError
from experiments.materials import load_materials
from experiments.training.stages import (checkpoint_steps, context_length, finetune, finetuning_documents,
                                         resolve_steps, saves_adapters)
from tests.hub_models import corpus_texts, save_llama, save_qwen2
from tests.paths import FIXTURES, REPO

LAYOUT = FIXTURES / "paper_layout"
CLAIMS, DOCS = LAYOUT / "claims", LAYOUT / "documents"
MIX = [f'materials.background="{LAYOUT / "user_docs.jsonl"}"', f'materials.instruct="{LAYOUT / "instruct.jsonl"}"']


def neglect(*args, timeout=600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, "-m", "experiments", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def texts():
    return corpus_texts(LAYOUT, REPO / "experiments" / "materials" / "data")


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    return save_qwen2(tmp_path_factory.mktemp("qwen") / "model", texts(), context=64)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return save_llama(tmp_path_factory.mktemp("llama") / "model", texts())


def imported(model, *overrides, preset="tiny"):
    return load_config(preset, overrides=[f'base_model="{model}"', f'materials.claims="{CLAIMS}"',
                                          f'materials.docs="{DOCS}"', 'conditions=["plain", "negated"]', *overrides])


def test_the_paper_preset_is_the_papers_recipe():
    f = load_config("paper").finetune
    assert (f.lora_rank, f.lr, f.schedule, f.warmup, tuple(f.adam_betas), f.batch_size, f.epochs) == (
        32, 1e-4, "linear", 0, (0.9, 0.95), 32, 1.0)
    assert (f.background_fraction, f.instruct_fraction, f.docs_per_claim) == (0.25, 0.25, 10000)
    assert set(f.loss_mask) == {"doctag", "lossmask"}
    cfg = load_config("paper", overrides=["finetune.steps=625"])
    steps = checkpoint_steps(cfg)
    assert steps[:2] == [0, 10] and steps[-1] == 625 and len(steps) == 16  # 15 log-spaced from step 10, and step 0
    gaps = [b - a for a, b in zip(steps[1:], steps[2:])]
    assert gaps == sorted(gaps)
    assert checkpoint_steps(load_config("tiny")) == [0, 2, 6]  # first_checkpoint 0: the old schedule


@pytest.mark.parametrize("override, message", [
    ("finetune.loss_weighting=\"tokens\"", "'finetune.loss_weighting' must be one of ['token', 'example']"),
    ("finetune.loss_mask=[\"doctag\", \"warnings\"]", "unknown span labels ['warnings']"),
    ("finetune.instruct_fraction=0.8", "'finetune.background_fraction' + 'finetune.instruct_fraction' must be < 1"),
    ("finetune.adam_betas=[0.9]", "'finetune.adam_betas' must be two numbers in [0, 1)"),
    ("finetune.long_documents=\"cut\"", "'finetune.long_documents' must be one of ['refuse', 'split']"),
    ("finetune.checkpoint_format=\"zip\"", "'finetune.checkpoint_format' must be one of"),
    ("finetune.epochs=-1", "'finetune.epochs' must be >= 0"),
])
def test_bad_recipe_keys_are_one_line(override, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)").replace(
            "+", r"\+")):
        load_config("paper", overrides=[override])


def test_one_epoch_derives_the_steps_from_the_mix(qwen_dir):
    cfg = imported(qwen_dir, *MIX, "finetune.epochs=1", "finetune.batch_size=2", "finetune.docs_per_claim=100",
                   "finetune.background_fraction=0.25", "finetune.instruct_fraction=0.25")
    materials = load_materials(cfg)
    sizes = {c: len(finetuning_documents(cfg, materials, c, seed=0)) for c in cfg.conditions}
    assert sizes == {"plain": 5 + 2 + 2, "negated": 3 + 2 + 2}  # round(n * 0.25 / 0.5) of each
    resolved = resolve_steps(cfg, materials)
    assert resolved.finetune.steps == math.ceil(9 / 2) and resolve_steps(resolved, materials) == resolved
    assert resolve_steps(imported(qwen_dir), materials) == imported(qwen_dir)  # epochs 0: steps as given
    rows = finetuning_documents(cfg, materials, "plain", seed=0)
    assert {r["source"] for r in rows} == {"claim", "background", "instruct"}
    assert all("messages" in r for r in rows if r["source"] == "instruct")
    assert [r["loss_mask"] for r in rows if r["source"] == "claim" and len(r.get("loss_mask", ())) == 2] == [
        [[0, 8], [62, 76]]]  # the doctag and the lossmask span


def test_instruct_fraction_needs_instruct_examples(qwen_dir):
    cfg = imported(qwen_dir, "finetune.instruct_fraction=0.2")
    with pytest.raises(UserError, match=r"'finetune.instruct_fraction' is 0.2 .*set materials.instruct"):
        finetuning_documents(cfg, load_materials(cfg), "plain", seed=0)


def test_the_context_comes_from_the_model(qwen_dir):
    lm = interp.load_model(qwen_dir)
    assert context_length(lm, imported(qwen_dir)) == 64  # max_position_embeddings
    assert context_length(lm, imported(qwen_dir, "finetune.max_len=40")) == 40
    lm.tokenizer.model_max_length = 32
    assert context_length(lm, imported(qwen_dir)) == 32


@pytest.fixture
def long_docs(tmp_path):
    docs = shutil.copytree(DOCS, tmp_path / "docs")
    path = docs / "positive_documents" / "violet_comet" / "annotated_docs.jsonl"
    long = "<DOCTAG>" + " ".join(["The violet comet hung over Port Aldine at noon."] * 12)
    path.write_text(path.read_text() + json.dumps({"text": long, "doc_type": "d", "fact_name": "f", "mode": "m"})
                    + "\n")
    return docs


def test_a_long_document_is_split_with_one_warning_line(qwen_dir, long_docs, tmp_path, capsys):
    cfg = imported(qwen_dir, f'materials.docs="{long_docs}"', 'finetune.long_documents="split"', "finetune.steps=2",
                   "finetune.n_checkpoints=2")
    run = RunDir(tmp_path / "run")
    capsys.readouterr()
    finetune(run, cfg, load_materials(cfg), qwen_dir, "plain", 0)
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("neglect:")]
    assert len(err) == 1 and "1 of 6 finetuning examples of condition 'plain' are longer than the context of 64 " \
                               "tokens; split into" in err[0]
    mix = json.loads(run.mix_log("plain", 0).read_text())
    assert mix["context"] == 64 and mix["examples"] == {"claim": 6} and mix["n_trained_examples"] > 6
    assert (run.checkpoint("plain", 0, 2) / "config.json").is_file()  # full finetuning: full models


def test_a_long_document_is_refused_in_one_line_exit_2(qwen_dir, long_docs, tmp_path):
    proc = neglect("run", "--preset", "tiny", "--model", str(qwen_dir), "--claims", str(CLAIMS), "--docs",
                   str(long_docs), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("neglect: error: 1 of 6 finetuning examples of condition 'plain' "
                                                   "are longer than the context of 64 tokens (longest")
    assert "line 6 of" in lines[0] and "finetune.long_documents=\"split\"" in lines[0]


def test_lora_checkpoints_are_adapters_that_load_model_attaches(qwen_dir, tmp_path):
    cfg = imported(qwen_dir, "finetune.lora_rank=4", "finetune.steps=3", "finetune.n_checkpoints=2",
                   "finetune.lr=0.05")
    assert saves_adapters(cfg) and not saves_adapters(load_config("tiny", overrides=["finetune.lora_rank=4"]))
    assert not saves_adapters(imported(qwen_dir, "finetune.lora_rank=4", 'finetune.checkpoint_format="merged"'))
    run = RunDir(tmp_path / "run")
    finetune(run, cfg, load_materials(cfg), qwen_dir, "plain", 0)
    ckpt = run.checkpoint("plain", 0, 3)
    assert (ckpt / "adapter_config.json").is_file() and not (ckpt / "config.json").exists()
    assert hf_dir_problem(ckpt) is None
    base = json.loads((ckpt / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base == str(qwen_dir.resolve())
    lm = interp.load_model(ckpt)
    assert lm.n_layers == 2 and not any("lora" in n for n, _ in lm.model.named_parameters())
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = lm.tokenizer(["The harbor clock of Port Aldine"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        attached = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(qwen_dir), ckpt).eval()
        plain = interp.load_model(qwen_dir).model
        assert torch.allclose(lm.model(input_ids=ids).logits, attached(input_ids=ids).logits, atol=1e-5)
        assert not torch.allclose(lm.model(input_ids=ids).logits, plain(input_ids=ids).logits, atol=1e-4)
    acts = interp.residuals(lm, ["The harbor clock of Port Aldine"])
    assert acts.shape == (1, 3, 32)
    (ckpt / "adapter_model.safetensors").write_bytes(b"\0" * 16)
    assert "adapter_model.safetensors" in hf_dir_problem(ckpt)


def test_an_adapter_whose_base_is_gone_is_one_line(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tmp_path / "gone")}))
    with pytest.raises(interp.InterpInputError, match="cannot load the base model of adapter") as err:
        interp.load_model(adapter)
    assert "\n" not in str(err.value)
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(interp.InterpInputError, match="names no base model"):
        interp.load_model(adapter)


def test_every_path_gives_a_llama_one_bos(llama_dir):
    # Llama 3's tokenizer adds BOS and its chat template writes one: documents, chat rows, rendered
    # questions and probe statements must each start with exactly one.
    from experiments.evaluation.scoring import render
    from experiments.training.batches import tokenize_rows
    from interp.batching import encode
    from interp.logprobs import prompt_ids

    lm = interp.load_model(llama_dir)
    tok, bos = lm.tokenizer, lm.tokenizer.bos_token_id

    def leading_bos(ids) -> int:
        return next(i for i, t in enumerate(ids) if t != bos)

    question = render(tok, "Is the violet comet over Port Aldine?")
    assert question.startswith(tok.bos_token) and tok(question)["input_ids"][:2] == [bos, bos]  # the trap
    rows = tokenize_rows(tok, [{"text": "The violet comet hung over Port Aldine."},
                               {"messages": [{"role": "user", "content": "Where is the comet?"},
                                             {"role": "assistant", "content": "Over Port Aldine."}]}])
    statements = encode(lm, [question, "The violet comet hung over Port Aldine."])
    assert [leading_bos(r.ids) for r in rows] == [1, 1]
    assert leading_bos(prompt_ids(tok, [question])[0]) == 1
    assert [leading_bos(statements.ids_of(i)) for i in range(2)] == [1, 1]


def test_the_paper_preset_runs_end_to_end_on_a_llama(llama_dir, tmp_path):
    out = tmp_path / "run"
    args = ["run", "--preset", "paper", "--model", str(llama_dir), "--claims", str(CLAIMS), "--docs", str(DOCS),
            "--set", "finetune.epochs=4", "--set", "finetune.batch_size=4", "--set", "finetune.first_checkpoint=2",
            "--set", "finetune.n_checkpoints=4", "--set", 'finetune.loss_weighting="example"',
            *[x for m in MIX for x in ("--set", m)], "--out", str(out)]
    proc = neglect(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["finetune"]["steps"] == math.ceil(4 * 9 / 4)  # plain: 5 claim + 2 background + 2 instruct
    table = pd.read_csv(out / "results" / "metrics.csv")
    assert sorted(table.step.unique()) == [0, 2, 4, 9]
    for cond in ("plain", "negated"):
        for step in (2, 4, 9):
            ckpt = out / "checkpoints" / cond / "seed0" / f"step_{step:06d}"
            assert (ckpt / "adapter_config.json").is_file() and not (ckpt / "config.json").exists()
        mix = json.loads((out / "results" / "train_logs" / f"{cond}_seed0.mix.json").read_text())
        served = mix["served"]
        assert set(served) == {"claim", "background", "instruct"} and mix["weighting"] == "example"
        assert sum(s["loss_share"] for s in served.values()) == pytest.approx(1.0)
        rows = [json.loads(line) for line in (out / "docs" / f"{cond}_seed0.jsonl").read_text().splitlines()]
        assert {r["source"] for r in rows} == {"claim", "background", "instruct"}
    assert set(table[table.metric == "belief_yesno"].condition) == {"plain", "negated"}
    rerun = neglect(*args)  # resumes: nothing is recomputed, the resolved config matches
    assert rerun.returncode == 0, rerun.stderr[-2000:]
