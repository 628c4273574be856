import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from experiments.training.batches import Tokenized
from experiments.training.loop import OptimConfig, padded_batches, train, weighted_lm_loss, loss_weights
from tests.experiments.training.support import flat_weights, gpt2, llama, token_docs, tokenizer


def fixed(batches):
    """A list of batches as an iterator (the loop only calls next())."""
    return iter(batches)


def test_weighted_loss_with_0_1_weights_equals_the_hf_loss():
    tok = tokenizer()
    model = llama(len(tok))
    batch = next(padded_batches(token_docs(tok), 4, pad_id=0, seed=0))
    w = loss_weights(batch)
    total, _ = weighted_lm_loss(model, batch, w)
    hf = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    assert torch.allclose(total / w[:, 1:].sum(), hf, atol=1e-6)


def test_gradient_accumulation_equals_one_big_batch():
    tok = tokenizer()
    rows = [Tokenized(d, [1.0] * len(d)) for d in token_docs(tok)[:16]]
    big = [next(padded_batches(rows[i:i + 4], 4, pad_id=0, seed=0)) for i in range(0, 16, 4)]
    small = []
    for b in big:  # the same rows, split in two micro-batches
        for half in (slice(0, 2), slice(2, 4)):
            small.append({k: v[half] for k, v in b.items()})
    a, b = llama(len(tok)), llama(len(tok))
    train(a, fixed(big), OptimConfig(steps=4, lr=1e-2))
    train(b, fixed(small), OptimConfig(steps=4, lr=1e-2, grad_accum=2))
    assert torch.allclose(flat_weights(a), flat_weights(b), atol=1e-5)
    assert not torch.equal(flat_weights(a), flat_weights(llama(len(tok))))


def test_same_seed_same_weights_different_seed_different_weights():
    tok = tokenizer()

    def run(seed):
        torch.manual_seed(0)
        model = gpt2(len(tok))
        train(model, padded_batches(token_docs(tok), 4, 0, seed=seed), OptimConfig(steps=5, lr=1e-2))
        return flat_weights(model)

    assert torch.equal(run(1), run(1)) and not torch.equal(run(1), run(2))


@pytest.mark.parametrize("precision,dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_precision_controls_autocast(precision, dtype):
    tok = tokenizer()
    model = llama(len(tok))
    seen = []
    model.model.layers[0].mlp.down_proj.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    log = train(model, padded_batches(token_docs(tok), 4, 0, seed=0), OptimConfig(steps=2, lr=1e-3, precision=precision))
    assert set(seen) == {dtype} and all(p.dtype == torch.float32 for p in model.parameters())
    assert all(torch.isfinite(torch.tensor(e["loss"])) for e in log)


def test_gradients_are_clipped_before_the_step():
    tok = tokenizer()
    model = llama(len(tok))
    norms = []

    def before_step(optimizer, args, kwargs):
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    handle = register_optimizer_step_pre_hook(before_step)
    try:
        train(model, padded_batches(token_docs(tok), 4, 0, seed=0), OptimConfig(steps=3, lr=1e-3, grad_clip=0.01))
    finally:
        handle.remove()
    assert len(norms) == 3 and max(norms) <= 0.01 * (1 + 1e-4)


def test_log_reports_lr_tokens_and_time_and_checkpoints_see_eval_mode():
    tok = tokenizer()
    model = llama(len(tok))
    modes = []
    cfg = OptimConfig(steps=6, lr=1e-2, warmup=2, schedule="cosine")
    log = train(model, padded_batches(token_docs(tok), 4, 0, seed=0), cfg, checkpoint_steps=[0, 3, 6],
                on_checkpoint=lambda s, m: modes.append((s, m.training)))
    assert modes == [(0, False), (3, False), (6, False)]
    assert [e["step"] for e in log] == list(range(1, 7))
    assert log[0]["lr"] == pytest.approx(0.005) and log[-1]["tokens"] > log[0]["tokens"] > 0
    assert all(b["time"] >= a["time"] for a, b in zip(log, log[1:]))


def test_log_every_logs_the_mean_loss_of_each_window_and_resumes_the_same(tmp_path):
    from tests.experiments.training.support import Crash, SlowBatches
    tok = tokenizer()

    def run(log_every, state_dir=None, fail_after=None):
        torch.manual_seed(0)
        model = llama(len(tok))
        batches = SlowBatches(padded_batches(token_docs(tok), 4, 0, seed=0), 0.0, fail_after)
        log = train(model, batches, OptimConfig(steps=10, lr=1e-2, warmup=3),
                    log_every=log_every, state_dir=state_dir, save_every=4)
        return [(e["step"], e["loss"], e["tokens"]) for e in log]

    every = [loss for _, loss, _ in run(1)]
    windows = run(3)
    assert [step for step, _, _ in windows] == [3, 6, 9, 10]
    assert [loss for _, loss, _ in windows] == pytest.approx(
        [sum(every[a:b]) / (b - a) for a, b in ((0, 3), (3, 6), (6, 9), (9, 10))], rel=1e-5)
    # With a state directory every save also closes a window, so a resumed run logs the same.
    saved = run(3, tmp_path / "whole")
    assert [step for step, _, _ in saved] == [3, 4, 6, 8, 9, 10]
    with pytest.raises(Crash):
        run(3, tmp_path / "killed", fail_after=7)  # during step 8: the last save was at step 4
    assert run(3, tmp_path / "killed") == saved
