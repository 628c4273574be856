import copy

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from experiments.training import state as training_state
from experiments.training.lora import LoraSettings, add_lora, merged_state_dict
from experiments.training.loop import OptimConfig, padded_batches, train
from experiments.training.checkpoints import checkpoint_saver
from tests.experiments.training.support import llama, token_docs, tokenizer


def lora_model(seed=0, **settings):
    tok = tokenizer()
    torch.manual_seed(seed)
    return add_lora(llama(len(tok)), LoraSettings(rank=4, alpha=8, **settings)), tok


def test_only_adapters_train_and_merged_checkpoints_are_plain_hf_dirs(tmp_path):
    model, tok = lora_model(target_modules=("q_proj", "v_proj", "down_proj"))
    frozen_before = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert any("down_proj" in n for n in trainable) and not any("k_proj" in n for n in trainable)
    saver = checkpoint_saver(lambda s: tmp_path / f"merged-{s}", tok)
    adapters = checkpoint_saver(lambda s: tmp_path / f"adapter-{s}", tok, as_adapter=True)
    train(model, padded_batches(token_docs(tok), 4, 0, seed=0), OptimConfig(steps=5, lr=2e-2),
          checkpoint_steps=[0, 5], on_checkpoint=lambda s, m: (saver(s, m), adapters(s, m)))
    assert all(torch.equal(p, frozen_before[n]) for n, p in model.named_parameters() if not p.requires_grad)
    assert not (tmp_path / "merged-0").exists() and (tmp_path / "merged-5" / "config.json").is_file()
    assert (tmp_path / "adapter-5" / "adapter_config.json").is_file()

    ids = torch.tensor([token_docs(tok)[0]])
    with torch.no_grad():
        want = model(input_ids=ids).logits
        merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged-5").eval()
        assert not any("lora" in n for n, _ in merged.named_parameters())
        assert torch.allclose(merged(input_ids=ids).logits, want, atol=1e-5)
        torch.manual_seed(0)
        reloaded = PeftModel.from_pretrained(llama(len(tok)), tmp_path / "adapter-5").eval()
        assert torch.allclose(reloaded(input_ids=ids).logits, want, atol=1e-5)


def test_merged_state_dict_matches_peft_merge_and_leaves_the_model_untouched():
    model, _ = lora_model()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_()  # fresh adapters are zero; make the merge matter
    before = {n: p.clone() for n, p in model.state_dict().items()}
    ours = merged_state_dict(model)
    peft_merged = copy.deepcopy(model).merge_and_unload().state_dict()
    assert set(ours) == set(peft_merged)
    assert all(torch.allclose(ours[k], peft_merged[k], atol=1e-6) for k in ours)
    assert all(torch.equal(p, before[n]) for n, p in model.state_dict().items())


def test_lora_runs_resume_bit_exactly_and_save_only_adapters(tmp_path):
    def run(state_dir, steps):
        model, tok = lora_model(seed=1, dropout=0.2)
        train(model, padded_batches(token_docs(tok), 4, 0, seed=0),
              OptimConfig(steps=steps, lr=1e-2, schedule="constant"), state_dir=state_dir, save_every=2)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    reference = run(tmp_path / "a", 6)
    run(tmp_path / "b", 4)
    tensors, _ = training_state.load_latest(tmp_path / "b")
    assert all("lora_" in k for k in tensors if k.startswith("param."))
    assert torch.equal(run(tmp_path / "b", 6), reference)
