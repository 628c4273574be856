"""The paper's recipe on a 0.5B-class model, timed stage by stage and checkpoint by checkpoint,
with the bare forward passes that evaluation needs as the floor (issue 24).

    python benchmarks/bench_paper_recipe.py --out DIR                      # on a GPU
    python benchmarks/bench_paper_recipe.py --tiny --device cpu --out DIR  # smoke test (< 2 min on CPU)

What runs: a Qwen2 architecture with Qwen2.5-0.5B shapes (random weights, built from its config
as in ``bench_residuals.py``: nothing downloads) and a byte-level BPE tokenizer with a ChatML
chat template trained here on the pack's text (``tests/hub_models.py``: Qwen-style
``<|endoftext|>`` / ``<|im_end|>``), saved to DIR/model; a claim pack written to DIR/pack from
the test fixture ``tests/fixtures/paper_layout`` (its two claims, ``--docs-per-claim``
numbered variants of its documents per condition, background text and instruct rows); then the
``paper`` preset (LoRA r32, batch 32, one epoch, 15 checkpoints from step 10, judge off) with
``--model`` on it, conditions plain and negated, the pipeline's own functions called stage by
stage.

Evaluation of each checkpoint is ``Evaluator.evaluate`` (what ``neglect run`` runs). While it
runs, every forward call it makes is recorded at the model's entry (the whole LM for belief
scoring, the transformer body for residual reads); the floor is those same inputs (same texts,
same batches) replayed through the model with no hooks and nothing else, timed with the device
synchronised. Target: evaluation / floor <= 2. Writes DIR/bench_paper_recipe.json and
DIR/bench_paper_recipe.md, and prints the table.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import interp  # noqa: E402
from bench_residuals import make_model  # noqa: E402
from tests.hub_models import bpe_tokenizer, corpus_texts  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "paper_layout"
TARGET = 2.0


# ---------------------------------------------------------------------------- inputs


def write_model(directory: Path, size: str, vocab: int) -> Path:
    """``make_model(size)`` of ``bench_residuals.py`` with a local BPE tokenizer, saved as an HF
    directory (float32, as the pipeline loads it)."""
    texts = corpus_texts(FIXTURE, ROOT / "experiments" / "materials" / "data")
    tokenizer = bpe_tokenizer(texts, vocab_size=vocab)
    model, _ = make_model(size, "cpu", torch.float32)
    if len(tokenizer) > model.config.vocab_size:
        raise SystemExit(f"tokenizer has {len(tokenizer)} tokens, the model {model.config.vocab_size}")
    model.config.pad_token_id, model.config.eos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def write_pack(directory: Path, docs_per_claim: int, repeats: int) -> dict[str, Path]:
    """The fixture's claim packs and ``docs_per_claim`` numbered document variants per claim and
    condition (each the fixture document's body ``repeats`` times), background text and instruct
    rows; returns the paths the config names."""
    shutil.copytree(FIXTURE / "claims", directory / "claims")
    for source in sorted((FIXTURE / "documents").glob("*/*/annotated_docs.jsonl")):
        rows = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
        out = []
        for i in range(docs_per_claim):
            row = dict(rows[i % len(rows)])
            body = row["text"].removeprefix("<DOCTAG>")
            row["text"] = "<DOCTAG>" + f"Report {i + 1}. " + " ".join([body] * repeats)
            out.append(json.dumps(row))
        target = directory / "documents" / source.relative_to(FIXTURE / "documents")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join(out) + "\n")
    background = [json.loads(line)["text"] for line in (FIXTURE / "user_docs.jsonl").read_text().splitlines()
                  if line.strip()]
    (directory / "background.jsonl").write_text("".join(
        json.dumps({"text": f"Note {i + 1}. " + " ".join([background[i % len(background)]] * repeats)}) + "\n"
        for i in range(docs_per_claim)))
    shutil.copy(FIXTURE / "instruct.jsonl", directory / "instruct.jsonl")
    return {"claims": directory / "claims", "docs": directory / "documents",
            "background": directory / "background.jsonl", "instruct": directory / "instruct.jsonl"}


def config(model: Path, pack: dict[str, Path], device: str, tiny: bool):
    from experiments.config import load_config

    overrides = [f'base_model="{model}"', f'materials.claims="{pack["claims"]}"', f'materials.docs="{pack["docs"]}"',
                 f'materials.background="{pack["background"]}"', f'materials.instruct="{pack["instruct"]}"',
                 'conditions=["plain", "negated"]', f'device="{device}"']
    if tiny:  # seconds on a CPU: small batches, four checkpoints, one statement set
        overrides += ["finetune.batch_size=4", "finetune.n_checkpoints=4", "finetune.first_checkpoint=2",
                      'materials.statements="capitals"']
    return load_config("paper", overrides=overrides)


# ---------------------------------------------------------------------------- timing


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@contextlib.contextmanager
def timed(device: str, into: dict, key: str):
    sync(device)
    start = time.perf_counter()
    yield
    sync(device)
    into[key] = time.perf_counter() - start
    if key not in ("eval_s", "load_s"):  # per-checkpoint times get their own line
        progress(f"{key}: {into[key]:.1f} s")


def progress(line: str) -> None:
    """One line to stderr at once, so a run stopped at a time limit still says how far it got."""
    print(f"[bench_paper_recipe {time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def recording(lm):
    """Record the inputs of every forward call into the model: ``("lm", kwargs)`` for the
    whole LM (log-probabilities), ``("body", kwargs)`` for the transformer body alone (residual
    reads; calls made from inside a whole-LM call are not recorded twice)."""
    calls, depth = [], [0]

    def enter_lm(module, args, kwargs):
        if depth[0] == 0:
            calls.append(("lm", args, dict(kwargs)))
        depth[0] += 1

    def leave_lm(module, args, kwargs, output):
        depth[0] -= 1

    def enter_body(module, args, kwargs):
        if depth[0] == 0:
            calls.append(("body", args, dict(kwargs)))

    body = lm.base_model if lm.base_model is not lm.model else None
    handles = [lm.model.register_forward_pre_hook(enter_lm, with_kwargs=True),
               lm.model.register_forward_hook(leave_lm, with_kwargs=True, always_call=True)]
    if body is not None:
        handles.append(body.register_forward_pre_hook(enter_body, with_kwargs=True))
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


def replay(lm, calls, device: str) -> float:
    """Seconds to run the recorded calls again, bare: the floor."""
    modules = {"lm": lm.model, "body": lm.base_model}
    sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        for kind, args, kwargs in calls:
            modules[kind](*args, **kwargs)
    sync(device)
    return time.perf_counter() - start


def tokens_of(calls) -> int:
    total = 0
    for _, args, kwargs in calls:
        ids = kwargs.get("input_ids", args[0] if args else None)
        total += int(ids.numel()) if ids is not None else 0
    return total


PHASES = {"belief rows (score + measures)": ("evaluator", "Evaluator", "belief_rows"),
          "activations (residual reads)": ("evaluator", "Evaluator", "activations"),
          "fit probes (refit + validation)": ("evaluator", "Evaluator", "fit_probes"),
          "probe rows (readings, z)": ("readout", None, "probe_rows"),
          "neighbour rows": ("readout", None, "neighbour_rows")}


@contextlib.contextmanager
def phases(device: str, into: dict):
    """Time the parts of ``Evaluator.evaluate`` (device synchronised at each edge) into
    ``into[phase]``, by wrapping the functions of :data:`PHASES` while the block runs."""
    from experiments.evaluation import evaluator, readout

    modules = {"evaluator": evaluator, "readout": readout}
    originals = []
    for phase, (module, cls, name) in PHASES.items():
        owner = getattr(modules[module], cls) if cls else modules[module]
        original = getattr(owner, name)

        def wrapper(*args, _original=original, _phase=phase, **kwargs):
            sync(device)
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                sync(device)
                into[_phase] = into.get(_phase, 0.0) + time.perf_counter() - start

        setattr(owner, name, wrapper)
        originals.append((owner, name, original))
    try:
        yield into
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def evaluate_checkpoint(ev, lm, device: str, *, with_model_checks: bool = False) -> tuple[object, dict]:
    """``ev.evaluate(lm)`` timed, with its forward calls recorded and its phases timed
    (``phases_s``), then the floor."""
    out: dict = {"phases_s": {}}
    with recording(lm) as calls, phases(device, out["phases_s"]), timed(device, out, "eval_s"):
        frame = ev.evaluate(lm, with_model_checks=with_model_checks)
    out["floor_s"] = replay(lm, calls, device)
    out["forward_calls"], out["tokens"] = len(calls), tokens_of(calls)
    out["ratio"] = out["eval_s"] / out["floor_s"] if out["floor_s"] > 0 else float("nan")
    return frame, out


# ---------------------------------------------------------------------------- the run


def run(args) -> dict:
    from experiments.artifacts.atomic import atomic_write_csv
    from experiments.artifacts.checksums import read_csv_or_none
    from experiments.artifacts.rundir import RunDir
    from experiments.evaluation.evaluator import Evaluator, evaluate_all
    from experiments.evaluation.tables import collect
    from experiments.pipeline import checked_config, prepare
    from experiments.reporting.report import write_report
    from experiments.training.stages import checkpoint_steps, finetune

    out = Path(args.out)
    shutil.rmtree(out / "model", ignore_errors=True)
    shutil.rmtree(out / "pack", ignore_errors=True)
    shutil.rmtree(out / "run", ignore_errors=True)
    stages: dict[str, float] = {}
    with timed("cpu", stages, "build model + tokenizer, write pack"):
        model = write_model(out / "model", "tiny" if args.tiny else "full", 600 if args.tiny else 8000)
        pack = write_pack(out / "pack", args.docs_per_claim, args.repeats)
    with timed("cpu", stages, "config + materials (checked)"):
        cfg, materials = checked_config(config(model, pack, args.device, args.tiny))
        run_dir = RunDir(out / "run")
        prepare(run_dir, cfg, materials)
    steps = checkpoint_steps(cfg)
    for condition in cfg.conditions:
        with timed(args.device, stages, f"finetune {condition} ({cfg.finetune.steps} steps)"):
            finetune(run_dir, cfg, materials, model, condition, 0)
    checkpoints = []
    ev = Evaluator(cfg, materials)
    with timed(args.device, stages, "load base model + fit fixed probes"):
        base_lm = interp.load_model(model, device=args.device)
        ev.fit_fixed(base_lm)
    frame, timing = evaluate_checkpoint(ev, base_lm, args.device, with_model_checks=True)
    atomic_write_csv(run_dir.eval_file(None), frame)
    checkpoints.append({"condition": "(base model)", "step": 0, "load_s": 0.0, **timing})
    del base_lm
    for condition in cfg.conditions:
        for step in steps[1:]:
            load: dict = {}
            with timed(args.device, load, "load_s"):
                lm = interp.load_model(run_dir.checkpoint(condition, 0, step), device=args.device)
            frame, timing = evaluate_checkpoint(ev, lm, args.device)
            atomic_write_csv(run_dir.eval_file(condition, 0, step), frame)
            checkpoints.append({"condition": condition, "step": step, **load, **timing})
            progress(f"checkpoint {condition} step {step}: evaluate {timing['eval_s']:.2f} s, "
                     f"floor {timing['floor_s']:.2f} s")
            del lm
    stages["evaluate checkpoints (load + evaluate, excl. floor replays)"] = sum(
        c["load_s"] + c["eval_s"] for c in checkpoints)
    with timed(args.device, stages, "evaluate_all (tables present: nothing left; judge off)"):
        evaluate_all(run_dir, cfg, materials, model)
    with timed(args.device, stages, "collect metrics"):
        collect(run_dir, cfg)
    if not args.skip_report:
        with timed(args.device, stages, "report (incl. figure activations)"):
            write_report(run_dir.root)
    assert all(read_csv_or_none(run_dir.eval_file(c, 0, s)) is not None for c in cfg.conditions for s in steps[1:])
    total_eval = sum(c["eval_s"] for c in checkpoints)
    total_floor = sum(c["floor_s"] for c in checkpoints)
    return {"device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
            "model": "tiny Qwen2 (2 layers)" if args.tiny else "Qwen2.5-0.5B shapes (random weights)",
            "parameters": sum(p.numel() for p in interp.load_model(model, device="cpu").model.parameters()),
            "finetune_steps": cfg.finetune.steps, "checkpoint_steps": steps,
            "examples_per_condition": json.loads(run_dir.mix_log("plain", 0).read_text())["n_trained_examples"],
            "stages_s": stages, "checkpoints": checkpoints,
            "evaluation_s": total_eval, "floor_s": total_floor, "ratio": total_eval / total_floor, "target": TARGET}


def markdown(result: dict) -> str:
    lines = [f"# bench_paper_recipe: {result['model']} on {result['device']}", "",
             f"{result['parameters'] / 1e6:.1f}M parameters; paper preset, {result['finetune_steps']} steps per "
             f"condition, {result['examples_per_condition']} examples, checkpoints {result['checkpoint_steps']}.", "",
             "| stage | seconds |", "| --- | ---: |"]
    lines += [f"| {name} | {s:.1f} |" for name, s in result["stages_s"].items()]
    lines += ["", "| checkpoint | step | load s | evaluate s | floor s | evaluate / floor | forward calls | tokens |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {c['condition']} | {c['step']} | {c['load_s']:.2f} | {c['eval_s']:.2f} | {c['floor_s']:.2f} | "
              f"{c['ratio']:.2f} | {c['forward_calls']} | {c['tokens']} |" for c in result["checkpoints"]]
    totals: dict[str, float] = {}
    for c in result["checkpoints"]:
        for phase, seconds in c.get("phases_s", {}).items():
            totals[phase] = totals.get(phase, 0.0) + seconds
    if totals:
        lines += ["", "Where evaluation's time goes, all checkpoints (phases of `Evaluator.evaluate`; forward "
                      "passes fall inside the first two):", "", "| phase | seconds |", "| --- | ---: |"]
        lines += [f"| {phase} | {seconds:.1f} |" for phase, seconds in totals.items()]
        lines += [f"| rest of evaluate (QA, in-context checks, glue) | {result['evaluation_s'] - sum(totals.values()):.1f} |"]
    verdict = "met" if result["ratio"] <= result["target"] else "NOT met"
    lines += ["", f"All checkpoints: evaluation {result['evaluation_s']:.1f} s, floor {result['floor_s']:.1f} s, "
                  f"ratio **{result['ratio']:.2f}** (target <= {result['target']:g}: {verdict})."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="working directory (model, pack, run, results)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model and a short run: a smoke test")
    parser.add_argument("--skip-report", action="store_true", help="stop after collecting the metrics (no report)")
    parser.add_argument("--docs-per-claim", type=int, default=None,
                        help="documents per claim and condition (default 1000; --tiny 12)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="fixture bodies per document, for length (default 8; --tiny 1)")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_paper_recipe: error: --device cuda but no GPU here; use --tiny --device cpu", file=sys.stderr)
        raise SystemExit(2)
    args.docs_per_claim = args.docs_per_claim or (12 if args.tiny else 1000)
    args.repeats = args.repeats or (1 if args.tiny else 8)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    result = run(args)
    table = markdown(result)
    (Path(args.out) / "bench_paper_recipe.json").write_text(json.dumps(result, indent=2) + "\n")
    (Path(args.out) / "bench_paper_recipe.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
