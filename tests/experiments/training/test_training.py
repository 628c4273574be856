import torch

from experiments.config import ModelConfig
from experiments.training.toymodel import build_model, build_tokenizer
from experiments.training.loop import OptimConfig, log_spaced_steps, packed_batches, padded_batches, tokenize_documents, train


def test_log_spaced_steps_include_both_ends():
    steps = log_spaced_steps(625, 15)
    assert steps[0] == 0 and steps[-1] == 625 and steps == sorted(set(steps))
    assert len(steps) >= 12
    assert steps[1] < 10  # dense early, like the paper's schedule


def test_padded_batches_mask_padding_from_the_loss():
    batch = next(padded_batches([[5, 6, 7], [8]], batch_size=2, pad_id=0, seed=0))
    assert batch["labels"].tolist().count([8, -100, -100]) + batch["labels"].tolist().count([5, 6, 7]) == 2
    assert (batch["attention_mask"].sum(1).sort().values == torch.tensor([1, 3])).all()


def test_training_lowers_loss_and_calls_checkpoints():
    tok = build_tokenizer({"a", "b", "c", "."})
    docs = tokenize_documents(tok, ["a b c ."] * 20, 16)
    model = build_model(ModelConfig(d_model=16, n_layers=1, n_heads=2, d_mlp=32, max_len=32), len(tok), seed=0)
    seen, log = [], []
    train(model, packed_batches(docs, 4, 12, seed=0), OptimConfig(steps=30, lr=1e-2, warmup=2),
          checkpoint_steps=[0, 10, 30], on_checkpoint=lambda s, m: seen.append(s), log=log)
    assert seen == [0, 10, 30]
    assert log[-1]["loss"] < log[0]["loss"] / 2
