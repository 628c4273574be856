"""Pretrain toy models with several settings and print check_base figures (GPU sweep).

    PYTHONPATH=. python benchmarks/pretrain_sweep.py DEVICE [preset=NAME] [section.key=value ...]
"""
import json, sys, time, dataclasses
from experiments.config import load_config
from experiments.materials.world import build_world
from experiments.materials.corpus import CorpusSampler, all_words
from experiments.materials.conditions import template_words
from experiments.training.toymodel import build_model, build_tokenizer
from experiments.training.loop import OptimConfig, packed_batches, tokenize_documents, train
from experiments.evaluation.checks import check_base
import interp
args = sys.argv[2:]
preset = next((a.split("=", 1)[1] for a in args if a.startswith("preset=")), "demo")
cfg = load_config(preset, None, [a for a in args if not a.startswith("preset=")])
dev = sys.argv[1]
world = build_world(cfg.world)
tok = build_tokenizer(all_words(world) | template_words())
model = build_model(cfg.model, len(tok), 0).to(dev)
p = cfg.pretrain
docs = CorpusSampler(world, 0, mix=dataclasses.asdict(cfg.corpus)).documents(max(2000, p.steps * p.batch_size * p.seq_len // 20))
t0 = time.time()
out = {"args": sys.argv[2:], "params": sum(x.numel() for x in model.parameters())}
def ck(step, m):
    if step == 0: return
    lm = interp.load_model(m, tokenizer=tok)
    r = check_base(lm, world)
    out[step] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items() if k != "probe_acc_by_layer"}
    out[step]["profile"] = [round(x, 3) for x in r["probe_acc_by_layer"]]
    out["time"] = round(time.time() - t0, 1)
    print(json.dumps(out), flush=True)
    m.train()
train(model, packed_batches(tokenize_documents(tok, docs, 128), p.batch_size, p.seq_len, 0),
      OptimConfig(p.steps, p.lr, p.warmup, p.weight_decay, p.grad_clip), checkpoint_steps=[p.steps // 3, 2 * p.steps // 3, p.steps], on_checkpoint=ck)
