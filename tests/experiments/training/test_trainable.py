"""finetune.trainable: only the parameters the pattern names are finetuned."""
import re

import pytest
import torch

from experiments.config import load_config
from experiments.errors import UserError
from experiments.training.lora import LoraSettings, add_lora
from experiments.training.loop import OptimConfig, padded_batches, train
from experiments.training.trainable import restrict_trainable
from tests.experiments.training.support import llama, token_docs, tokenizer


def test_only_the_matching_parameters_change():
    tok = tokenizer()
    model = llama(len(tok))
    kept = restrict_trainable(model, r"layers\.0\.mlp")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("model.layers.0.mlp.") for n in trainable)
    assert kept == sum(p.numel() for n, p in model.named_parameters() if n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(model, padded_batches(token_docs(tok), 4, 0, seed=0), OptimConfig(steps=3, lr=1e-2))
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == trainable


def test_with_lora_the_pattern_chooses_among_the_adapters():
    tok = tokenizer()
    torch.manual_seed(0)
    model = add_lora(llama(len(tok)), LoraSettings(rank=2, alpha=4))
    restrict_trainable(model, r"layers\.1\.")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and "layers.1." in n for n in trainable)


def test_an_empty_pattern_trains_everything_and_a_pattern_matching_nothing_is_refused():
    tok = tokenizer()
    model = llama(len(tok))
    assert restrict_trainable(model, "") == sum(p.numel() for p in model.parameters())
    with pytest.raises(UserError, match=re.escape(r"'finetune.trainable' 'layers\.9\.' matches no trainable parameter")):
        restrict_trainable(model, r"layers\.9\.")


def test_the_config_key_is_validated():
    with pytest.raises(UserError, match=re.escape("'finetune.trainable' 'layers.[0' is not a regular expression")):
        load_config("tiny", overrides=['finetune.trainable="layers.[0"'])
    with pytest.raises(UserError, match="not supported with finetune.parallel"):
        load_config("tiny", overrides=['finetune.trainable="mlp"', 'finetune.parallel="fsdp"'])


def test_the_finetuning_stage_freezes_what_the_pattern_leaves_out(tiny_run, tmp_path):
    from transformers import AutoModelForCausalLM

    from experiments.artifacts.rundir import RunDir
    from experiments.materials import load_materials
    from experiments.training import stages

    base = RunDir(tiny_run[0]).base_model
    cfg = load_config("tiny", overrides=['finetune.trainable="layers\\\\.1\\\\."', "finetune.steps=2",
                                         "finetune.n_checkpoints=2"])
    run = RunDir(tmp_path / "run")
    stages.finetune(run, cfg, load_materials(cfg), base, "plain", 0)
    before = AutoModelForCausalLM.from_pretrained(base).state_dict()
    after = AutoModelForCausalLM.from_pretrained(run.checkpoint("plain", 0, 2)).state_dict()
    changed = {n for n in after if not torch.equal(after[n], before[n])}
    assert changed and all(n.startswith("model.layers.1.") for n in changed)
    import json

    mix = json.loads(run.mix_log("plain", 0).read_text())  # what was trained, recorded with the run
    assert mix["trainable"] == "layers\\.1\\."
    assert mix["n_trainable_parameters"] == sum(v.numel() for n, v in after.items() if n.startswith("model.layers.1."))
