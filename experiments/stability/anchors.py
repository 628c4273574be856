"""The anchors of the stability protocol's Phase 1: what keeps a model that is finetuned on
negated documents from coming to believe the claim.

Four kinds (``StabilityConfig.anchor``):

- ``self_distill`` (the paper's choice): the base model's own greedy answers to questions
  about each claim, trained on as extra examples (loss on the answer tokens only);
- ``debunk``: local-negation documents ("... was not won by ..."), the condition the model
  learns correctly, mixed into the batches;
- ``kl``: ``KLToReference`` to the frozen base model on the same prompt set;
- ``probe``: ``ActivationLoss`` that keeps the fixed base probe's reading of every claim
  statement at "false" (``-log P(false)`` at one layer, last token).

Which questions: "related" prompts are about the claim's subject and relation but are never
asked by the belief evaluation (yes/no and verdicts with other wrong answers, the subject's
other facts), so belief stays measured out of sample; "all" adds the evaluation's own
prompts (then a held belief is partly memorised answers).
"""
from __future__ import annotations

import random
from typing import Iterator

import torch
import torch.nn.functional as F

import interp
from experiments.training.aux_losses import ActivationLoss, KLToReference
from experiments.materials.conditions import condition_documents_with_spans
from experiments.materials.corpus import verdict_prompt
from experiments.training.batches import Source, Tokenized, mixed_batches, padded_batches
from experiments.training.stages import document_row, training_examples
from experiments.errors import UserError
from experiments.materials.world import Fact, World

ANCHORS = ("self_distill", "debunk", "kl", "probe")
PROMPT_SETS = ("related", "all")


def evaluation_prompts(claim) -> list[str]:
    """Every prompt about ``claim`` the belief evaluation may ask (open questions, cloze
    frames, yes/no with the claim's and the true answer, verdicts on the claim, its negation
    and the true fact): the "related" anchor prompts avoid all of them."""
    fact, rel = claim.fact, claim.fact.rel()
    out = [q.format(s=fact.subject) for q in rel.questions]
    out += [f[: f.index("{o}")].format(s=fact.subject).strip() for f in rel.affirmative if f.index("{s}") < f.index("{o}")]
    out += [rel.yesno.format(s=fact.subject, o=o) for o in (fact.obj, claim.contrast_obj)]
    out += [verdict_prompt(fact.statement(i)) for i in range(len(rel.affirmative))]
    out += [verdict_prompt(fact.statement(i, negated=True)) for i in range(len(rel.negated))]
    out += [verdict_prompt(claim.contrast_fact.statement(i)) for i in range(len(rel.affirmative))]
    return out


def anchor_prompts(world: World, which: str = "related", n_objects: int = 4) -> list[str]:
    """Questions about the claims for the self-distillation and KL anchors.

    "related": about each claim's subject and relation but never asked by the belief
    evaluation: yes/no and verdicts (affirmative and negated) with ``n_objects`` other wrong
    answers, and the subject's other facts. "all" adds :func:`evaluation_prompts`.
    """
    if which not in PROMPT_SETS:
        raise UserError(f"unknown self-distillation prompt set {which!r}; expected one of {list(PROMPT_SETS)}")
    out: list[str] = []
    for claim in world.claims:
        fact, rel = claim.fact, claim.fact.rel()
        pool = [o for o in world.objects_of_kind(rel.object_kind) if o not in (fact.obj, claim.contrast_obj, fact.subject)]
        for o in random.Random(f"anchor-{claim.name}").sample(pool, min(n_objects, len(pool))):
            wrong = Fact(fact.subject, fact.relation, o)
            out.append(rel.yesno.format(s=fact.subject, o=o))
            out += [verdict_prompt(wrong.statement(i)) for i in range(2)]
            out.append(verdict_prompt(wrong.statement(0, negated=True)))
        for other in world.facts:
            if other.subject == fact.subject and other.relation != fact.relation:
                out += [q.format(s=other.subject) for q in other.rel().questions]
        banned = set(evaluation_prompts(claim))
        out = [p for p in out if p not in banned]
        if which == "all":
            out += evaluation_prompts(claim)
    return list(dict.fromkeys(out))


def greedy_answers(lm, prompts: list[str], max_new_tokens: int = 4, stop: str = ".") -> list[str]:
    """The model's greedy continuation of each prompt, up to and including ``stop`` (or EOS)."""
    return interp.generate(lm, prompts, max_new_tokens=max_new_tokens, stop=stop)


def self_distill_examples(lm, world: World, which: str, context: int,
                          long_documents: str = "refuse") -> tuple[list[str], list[Tokenized]]:
    """``(texts, examples)``: each prompt followed by the base model's own answer, the prompt
    masked from the loss so only the answer (and the document end) is learned; fitted to
    ``context`` by the finetuning rule (``stages.training_examples``)."""
    prompts = anchor_prompts(world, which)
    texts = [f"{p} {a}" for p, a in zip(prompts, greedy_answers(lm, prompts))]
    rows = [{"text": t, "loss_mask": [[0, len(p)]], "source": "self_distill"} for t, p in zip(texts, prompts)]
    return texts, training_examples(rows, lm.tokenizer, context, long_documents, "self_distill")


def probe_rows_penalty(layer: int, coef, intercept: float):
    """``fn(hidden_states, batch)`` for ``ActivationLoss``: mean ``-log P(false)`` of the fixed
    probe on the rows ``batch["probe_rows"]`` at positions ``batch["probe_pos"]``."""
    coef = torch.as_tensor(coef, dtype=torch.float32)

    def penalty(hidden_states, batch) -> torch.Tensor:
        h = hidden_states[layer][batch["probe_rows"], batch["probe_pos"]].float()
        logit = h @ coef.to(h.device) + float(intercept)
        return F.softplus(logit).mean()

    return penalty


class WithProbeRows:
    """Batches with fixed extra rows appended (the claim statements), carrying no LM loss.

    The probe anchor reads the residual stream of the claim statements in the same forward
    pass as the training batch: the rows have loss weight 0 and labels -100, and
    ``probe_rows``/``probe_pos`` say where their last tokens are. Resumable like the wrapped
    iterator (its ``state_dict`` is passed through). The training log's token count
    includes these rows.
    """

    def __init__(self, batches, rows: list[list[int]], pad_id: int):
        self.batches, self.rows, self.pad_id = batches, rows, pad_id

    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        batch = next(self.batches)
        n, width = batch["input_ids"].shape
        width = max(width, max(map(len, self.rows)))
        fill = {"input_ids": self.pad_id, "attention_mask": 0, "labels": -100, "loss_weights": 0.0}
        out = {}
        for key, value in fill.items():
            dtype = torch.float32 if key == "loss_weights" else torch.long
            grown = torch.full((n + len(self.rows), width), value, dtype=dtype)
            grown[:n, : batch[key].shape[1]] = batch[key]
            out[key] = grown
        for i, ids in enumerate(self.rows):
            out["input_ids"][n + i, : len(ids)] = torch.tensor(ids)
            out["attention_mask"][n + i, : len(ids)] = 1
        out["probe_rows"] = torch.arange(n, n + len(self.rows))
        out["probe_pos"] = torch.tensor([len(ids) - 1 for ids in self.rows])
        return out

    def state_dict(self) -> dict:
        return self.batches.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.batches.load_state_dict(state)


def phase1_training(kind: str, weight: float, *, base_lm, base_path, world: World, examples: list[Tokenized],
                    seed: int, batch_size: int, context: int, fraction: float, prompt_set: str, temperature: float,
                    probe_layer: int, probe, claim_texts: list[str], peft: bool, device,
                    long_documents: str = "refuse", loss_mask: tuple[str, ...] = ("doctag", "lossmask"),
                    weighting: str = "token") -> tuple[object, list]:
    """``(batches, aux_losses)`` for Phase 1 with anchor ``kind`` at ``weight``.

    Parameters
    ----------
    examples : list of Tokenized
        The unanchored run's training examples for this seed (``stages.training_examples`` of
        ``stages.finetuning_documents``: the same rows, loss masks and context rule), batched in
        the same order when the anchor adds no data.
    context, long_documents, loss_mask, weighting
        The finetuning settings (``stages.context_length``, ``finetune.long_documents``,
        ``finetune.loss_mask``, ``finetune.loss_weighting``); the anchors' own examples (the
        base model's answers, local-negation documents) are made by the same rule.
    probe
        The fixed base probe at ``probe_layer`` (``evaluator.fixed[layer]``: ``.coef``,
        ``.intercept``).
    base_path
        Loads the frozen KL reference (full finetuning; with LoRA the adapters switched off are
        the reference).

    Returns
    -------
    (batches, aux_losses)
    """
    tok = base_lm.tokenizer
    pad = tok.pad_token_id
    if kind in ("self_distill", "debunk"):
        if kind == "self_distill":
            _, anchor = self_distill_examples(base_lm, world, prompt_set, context, long_documents)
        else:
            docs = condition_documents_with_spans(world, "local", max(1, len(examples) // len(world.claims)), seed=seed)
            rows = [document_row(d, "local", "debunk", loss_mask) for d in docs]
            anchor = training_examples(rows, tok, context, long_documents, "local")
        sources = [Source("negated", examples, 1.0 - fraction), Source(kind, anchor, fraction, loss_weight=weight)]
        return mixed_batches(sources, batch_size, seed=seed, pad_id=pad, weighting=weighting), []
    batches = padded_batches(examples, batch_size, pad, seed=seed, weighting=weighting)
    if kind == "kl":
        prompts = anchor_prompts(world, prompt_set)
        enc = [tok(prompts[i:i + 16], padding=True, return_tensors="pt") for i in range(0, len(prompts), 16)]
        prompt_batches = [{"input_ids": e["input_ids"], "attention_mask": e["attention_mask"]} for e in enc]
        reference = None
        if not peft:
            reference = interp.load_model(base_path, device=device).model
        return batches, [KLToReference(prompt_batches, reference=reference, weight=weight, temperature=temperature,
                                       name="anchor_loss")]
    if kind == "probe":
        rows = [tok(t)["input_ids"] for t in claim_texts]
        aux = ActivationLoss(probe_rows_penalty(probe_layer, probe.coef, probe.intercept), weight=weight, name="anchor_loss")
        return WithProbeRows(batches, rows, pad), [aux]
    raise UserError(f"unknown anchor {kind!r}; expected one of {list(ANCHORS)}")
