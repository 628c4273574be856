import torch

import interp
from experiments.config import ModelConfig
from interp import continuation_logprobs
from experiments.training.toymodel import build_model, build_tokenizer


def test_continuation_logprobs_match_a_manual_forward():
    tok = build_tokenizer({"a", "b", "c", "d"})
    model = build_model(ModelConfig(d_model=16, n_layers=1, n_heads=2, d_mlp=32, max_len=32), len(tok), seed=0)
    lm = interp.load_model(model, tokenizer=tok)
    got = continuation_logprobs(lm, ["a b", "a b c d"], ["c d", "a"])
    for prompt, cont, value in zip(["a b", "a b c d"], ["c d", "a"], got):
        ids = tok(f"{prompt} {cont}", return_tensors="pt")["input_ids"]
        n_prompt = len(tok(prompt)["input_ids"])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0], -1)
        manual = sum(logp[i - 1, ids[0, i]] for i in range(n_prompt, ids.shape[1]))
        assert abs(float(manual) - float(value)) < 1e-5
