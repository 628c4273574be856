"""Each anchor kind does what it says, and Phase 2 continues Phase 1 with the optimizer kept
or reset (tiny preset, one seed, Phase 1 only where that suffices)."""
import json
import shutil

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import interp
from experiments import pipeline
from experiments.config import load_config
from experiments.errors import UserError
from experiments.artifacts.rundir import RunDir
from experiments.stability.protocol import Protocol, tag
from experiments.stability.anchors import anchor_prompts, evaluation_prompts, greedy_answers, phase1_training
from experiments.training import stages, state as training_state
from experiments.training.loop import padded_batches
from experiments.materials.world import build_world


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("stab_base")
    cfg = load_config("tiny")
    run = RunDir(out)
    world = pipeline.prepare(run, cfg)
    return str(stages.pretrain(run, cfg, world))


def protocol(base_dir, out, *settings) -> Protocol:
    cfg = load_config("tiny", overrides=[f'base_model="{base_dir}"', "stability.probe_layer=1",
                                         "stability.phase2_steps=3", "stability.n_checkpoints=2", *settings])
    return pipeline.stability_protocol(cfg, out)


def phase1_log(proto: Protocol, weight: float) -> pd.DataFrame:
    return pd.read_csv(proto.log_file(tag(proto.cfg.stability.anchor, weight), 0, 1))


def test_self_distill_trains_on_the_base_models_own_answers_to_held_out_questions(base_dir):
    cfg = load_config("tiny")
    proto_world = build_world(cfg.world)
    related = anchor_prompts(proto_world, "related")
    for claim in proto_world.claims:
        assert not set(evaluation_prompts(claim)) & set(related)  # belief stays measured out of sample
    assert set(evaluation_prompts(proto_world.claims[0])) <= set(anchor_prompts(proto_world, "all"))
    lm = interp.load_model(base_dir)
    batches, aux = phase1_training("self_distill", 3.0, base_lm=lm, base_path=base_dir, world=proto_world,
                                   examples=[[2, 5, 6, 3]] * 4, seed=0, batch_size=8, context=96, fraction=0.5,
                                   prompt_set="related", temperature=1.0, probe_layer=1, probe=None,
                                   claim_texts=[], peft=False, device="cpu")
    assert aux == []
    anchor = batches.sources[1]
    assert anchor.name == "self_distill" and anchor.loss_weight == 3.0 and len(anchor.examples) == len(related)
    answers = greedy_answers(lm, related[:3])
    for prompt, answer, example in zip(related, answers, anchor.examples):
        n_prompt = len(lm.tokenizer(prompt)["input_ids"])
        assert example.ids[:n_prompt] == lm.tokenizer(prompt)["input_ids"]
        assert all(w == 0 for w in example.weights[1:n_prompt])  # the question is not learned (BOS never is)
        assert all(w == 1 for w in example.weights[n_prompt:])  # the base model's answer is
        assert lm.tokenizer.decode(example.ids[n_prompt:], skip_special_tokens=True).strip() == answer
        # greedy: each answer token is the base model's argmax
        ids = torch.tensor([example.ids[:-1]])
        with torch.no_grad():
            logits = lm.model(input_ids=ids).logits[0]
        assert logits[n_prompt - 1:].argmax(-1).tolist()[: len(example.ids) - n_prompt - 1] == \
            example.ids[n_prompt:-1]


def test_debunk_mixes_local_negation_documents_into_the_batches(base_dir):
    world = build_world(load_config("tiny").world)
    lm = interp.load_model(base_dir)
    batches, aux = phase1_training("debunk", 2.0, base_lm=lm, base_path=base_dir, world=world,
                                   examples=[[2, 5, 6, 3]] * 8, seed=0, batch_size=16, context=96, fraction=0.25,
                                   prompt_set="related", temperature=1.0, probe_layer=1, probe=None,
                                   claim_texts=[], peft=False, device="cpu")
    texts = [lm.tokenizer.decode(e.ids, skip_special_tokens=True) for e in batches.sources[1].examples]
    assert texts and all(" not " in t for t in texts)
    rows = [(w == 2.0).any().item() for _ in range(20) for w in next(batches)["loss_weights"]]
    anchor_rows = sum(rows) / len(rows)
    assert 0.1 < anchor_rows < 0.4  # about anchor_fraction of the examples, at twice the loss weight


def test_kl_anchor_starts_at_zero_and_pulls_towards_the_base_model(base_dir, tmp_path):
    proto = protocol(base_dir, tmp_path / "kl", 'stability.anchor="kl"', "stability.weights=[1.0]")
    proto.phase1(1.0, 0)
    log = phase1_log(proto, 1.0)
    assert log.anchor_loss.iloc[0] == pytest.approx(0.0, abs=1e-6)  # the model is the reference before any update
    assert (log.anchor_loss.iloc[1:] > 0).all()


def test_probe_anchor_is_the_fixed_probes_reading_of_the_claims(base_dir, tmp_path):
    proto = protocol(base_dir, tmp_path / "probe", 'stability.anchor="probe"', "stability.weights=[0.7]")
    proto.phase1(0.7, 0)
    log = phase1_log(proto, 0.7)
    # by hand: -log P(false) of the base model's fixed probe at layer 1, last token of each claim statement
    base = interp.load_model(base_dir)
    claims = [c.text for c in proto.evaluator.claim_stmts if c.kind == "claim"]
    acts = interp.residuals(base, claims, layers=[1])[:, 0].numpy()
    probe = proto.evaluator.fixed[1]
    expected = 0.7 * F.softplus(torch.tensor(acts @ probe.coef + probe.intercept)).mean().item()
    assert log.anchor_loss.iloc[0] == pytest.approx(expected, rel=1e-4)
    # and it works against the claim: the reading falls while the anchor is on
    end = interp.load_model(proto.checkpoint(tag("probe", 0.7), 0, 1, proto.cfg.finetune.steps))
    after = interp.residuals(end, claims, layers=[1])[:, 0].numpy()
    assert probe.p_true(after).mean() < probe.p_true(acts).mean()


def _params(path):
    return {k: v.clone() for k, v in interp.load_model(path).model.state_dict().items()}


@pytest.fixture(scope="module")
def phase2_runs(base_dir, tmp_path_factory):
    """Phase 1 then Phase 2 with the optimizer kept and reset: the seeded Phase-2 state and
    the models at the Phase-1 and Phase-2 ends, per mode."""
    out = {}
    for mode in ("keep", "reset"):
        proto = protocol(base_dir, tmp_path_factory.mktemp(mode), 'stability.anchor="debunk"',
                         "stability.weights=[1.0]", f'stability.phase2_optimizer="{mode}"')
        name = tag("debunk", 1.0)
        proto.phase1(1.0, 0)
        _, model = proto.fresh_model()
        proto.seed_phase2_state(name, 0, model, padded_batches([[2, 5, 3]], 4, 0, seed=1))
        seeded = training_state.load_latest(proto.state_dir(name, 0, 2))[0]
        shutil.rmtree(proto.state_dir(name, 0, 2))  # let phase2 seed it with its own batches
        proto.phase2(1.0, 0)
        out[mode] = dict(proto=proto, seeded=seeded, end1=_params(proto.checkpoint(name, 0, 1, proto.cfg.finetune.steps)),
                         end2=_params(proto.checkpoint(name, 0, 2, 3)))
    return out


@pytest.mark.parametrize("mode", ["keep", "reset"])
def test_phase2_starts_at_the_phase1_end_with_the_optimizer_kept_or_reset(phase2_runs, mode):
    run = phase2_runs[mode]
    for key, value in run["seeded"].items():
        if key.startswith("param."):
            assert torch.equal(value, run["end1"][key[len("param."):]])  # Phase 2 starts at the Phase-1 end
    adam_steps = {float(v) for k, v in run["seeded"].items() if k.endswith(".step")}
    moments = [k for k in run["seeded"] if k.endswith("exp_avg")]
    if mode == "keep":  # Phase 1's moments and step counts carry over
        assert adam_steps == {float(run["proto"].cfg.finetune.steps)} and moments
    else:
        assert not adam_steps and not moments
    assert any(not torch.equal(run["end1"][k], run["end2"][k]) for k in run["end1"])  # Phase 2 trained
    proto, name = run["proto"], tag("debunk", 1.0)
    assert not proto.state_dir(name, 0, 1).exists() and not proto.state_dir(name, 0, 2).exists()


def test_kept_and_reset_optimizers_share_phase1_and_differ_after_phase2(phase2_runs):
    keep, reset = phase2_runs["keep"], phase2_runs["reset"]
    assert all(torch.equal(keep["end1"][k], reset["end1"][k]) for k in keep["end1"])
    assert any(not torch.equal(keep["end2"][k], reset["end2"][k]) for k in keep["end2"])


def test_the_phases_train_on_the_finetuning_runs_examples_with_its_masks(base_dir, tmp_path):
    """Stability's rows are the unanchored finetune's (RUN/docs), with its loss masks: here the
    warnings are masked (finetune.loss_mask), so no warning token carries loss in Phase 1 or 2."""
    proto = protocol(base_dir, tmp_path / "masks", 'finetune.loss_mask=["warning"]', 'stability.anchor="debunk"')
    lm = interp.load_model(base_dir)
    rows = proto.training_rows(0)
    stages.finetune(proto.run, proto.cfg, proto.materials, base_dir, "negated", 0)  # the unanchored run
    written = [json.loads(line) for line in proto.run.docs("negated", 0).read_text().splitlines()]
    assert rows == written and all(r.get("loss_mask") for r in rows)
    mix = json.loads(proto.run.mix_log("negated", 0).read_text())
    examples = proto.training_examples(lm, 0)
    assert len(examples) == mix["n_trained_examples"] and mix["context"] == proto.cfg.model.max_len
    def outside(r):
        cuts = [0] + [x for span in r["loss_mask"] for x in span] + [len(r["text"])]
        return " ".join(r["text"][a:b] for a, b in zip(cuts[::2], cuts[1::2]))

    warning_words = {w for r in rows for a, b in r["loss_mask"] for w in r["text"][a:b].split()}
    warning_only = warning_words - {w for r in rows for w in outside(r).split()}  # words only warnings use
    assert warning_only
    for ex in examples:
        learned = lm.tokenizer.decode([i for i, w in zip(ex.ids, ex.weights) if w > 0]).split()
        assert learned and not set(learned) & warning_only
    assert any(w == 0 for ex in examples for w in ex.weights)
    batch = next(proto.batches(lm, 0, 0))
    assert ((batch["labels"] == -100) & (batch["attention_mask"] == 1)).sum() > len(batch["labels"])  # masks reach batches


def test_documents_longer_than_the_context_are_refused_or_split_as_in_finetuning(base_dir, tmp_path):
    lm = interp.load_model(base_dir)
    refuse = protocol(base_dir, tmp_path / "refuse", "finetune.max_len=12")
    with pytest.raises(UserError, match=r"finetuning examples of condition 'negated' are longer than the context of "
                                        r"12 tokens"):
        refuse.training_examples(lm, 0)
    with pytest.raises(UserError, match="longer than the context of 12 tokens"):
        refuse.phase1(refuse.cfg.stability.weights[0], 0)
    split = protocol(base_dir, tmp_path / "split", "finetune.max_len=12", 'finetune.long_documents="split"')
    examples = split.training_examples(lm, 0)
    full = stages.training_examples(split.training_rows(0), lm.tokenizer, 10**6, "refuse", "negated")
    assert max(len(e.ids) for e in examples) <= 12 < max(len(e.ids) for e in full)
    assert sum(len(e.ids) for e in examples) == sum(len(e.ids) for e in full)  # pieces, nothing cut away
