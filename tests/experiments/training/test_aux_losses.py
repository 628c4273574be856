import copy

import torch

from experiments.training.aux_losses import ActivationLoss, KLToReference
from experiments.training.lora import LoraSettings, add_lora
from experiments.training.loop import OptimConfig, padded_batches, train
from tests.experiments.training.support import llama, token_docs, tokenizer


def prompt_batches(tok, n=2):
    stream = padded_batches(token_docs(tok)[-8:], 4, 0, seed=5)
    return [next(stream) for _ in range(n)]


def kl_now(model, reference, prompts):
    model.eval()
    with torch.no_grad():
        return float(KLToReference(prompts, reference=reference)(model, None, None, 0))


def test_kl_anchor_keeps_the_model_near_its_reference():
    tok = tokenizer()
    base = llama(len(tok))
    prompts = prompt_batches(tok)
    assert kl_now(base, copy.deepcopy(base), prompts) < 1e-6

    def finetune(weight):
        model = copy.deepcopy(base)
        aux = [KLToReference(prompts, reference=copy.deepcopy(base), weight=weight)] if weight else []
        log = train(model, padded_batches(token_docs(tok)[:8], 4, 0, seed=0), OptimConfig(steps=15, lr=2e-2),
                    aux_losses=aux)
        return model, log

    free, _ = finetune(0.0)
    anchored, log = finetune(5.0)
    assert "kl_ref" in log[-1] and log[-1]["kl_ref"] >= 0
    assert kl_now(anchored, base, prompts) < 0.5 * kl_now(free, base, prompts)


def test_kl_to_the_model_with_adapters_off():
    tok = tokenizer()
    torch.manual_seed(0)
    model = add_lora(llama(len(tok)), LoraSettings(rank=4, alpha=8))
    prompts = prompt_batches(tok)
    kl = KLToReference(prompts)  # reference=None: the base model under the adapters
    model.eval()
    with torch.no_grad():
        assert float(kl(model, None, None, 0)) < 1e-6  # fresh adapters change nothing
    log = train(model, padded_batches(token_docs(tok)[:8], 4, 0, seed=0), OptimConfig(steps=5, lr=2e-2),
                aux_losses=[kl])
    model.eval()
    with torch.no_grad():
        assert float(kl(model, None, None, 0)) > 1e-4 and log[-1]["kl_ref"] > 0


def test_activation_loss_sees_the_residual_stream_and_shapes_it():
    tok = tokenizer()
    seen = []

    def norm_at_layer_1(hidden_states, batch):
        seen.append(len(hidden_states))
        return hidden_states[1].pow(2).mean()

    def finetune(weight):
        torch.manual_seed(0)
        model = llama(len(tok))
        aux = [ActivationLoss(norm_at_layer_1, weight=weight, name="l1_norm")]
        log = train(model, padded_batches(token_docs(tok), 4, 0, seed=0), OptimConfig(steps=10, lr=2e-2),
                    aux_losses=aux)
        return log[-1]["l1_norm"] / weight

    plain, penalised = finetune(1e-6), finetune(1e3)
    assert set(seen) == {3}  # embeddings + 2 blocks
    assert penalised < 0.5 * plain
