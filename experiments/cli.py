"""The ``neglect`` command line.

    neglect run [--preset demo] [--config FILE] [--set key=value ...] [--out DIR]
                [--model ID_OR_DIR] [--claims DIR --docs DIR [--claim NAME ...]]
    torchrun --nproc_per_node=N -m experiments finetune [same flags as run]   (then `neglect run` evaluates;
                                          DDP, or FSDP2 with --set finetune.parallel='"fsdp"')
    neglect stability [--preset demo] [--config FILE] [--set stability.anchor='"kl"' ...] [--out DIR]
    neglect report RUN_DIR
    neglect check-base RUN_DIR
    neglect steer RUN_DIR [--layer L ...] [--alpha A ...] [--site statement|last|all] [--probe P] [--base-only] [...]
    neglect patch RUN_DIR [--condition C ...] [--seed S ...] [--step N] [--layer L ...] [--kind yesno|forced_choice|probe]
    neglect pretrain [--preset standard] [--set ...] [--out DIR] [--export DIR]
    neglect docs [--preset demo] [--condition negated] [-n 3]

User errors print one line (``neglect: error: ...``) and exit 2; ``--debug`` shows the traceback.
Errors of the file system are one line too, whatever library met them (every write goes through
``probes._atomic``, which turns them into an ``OSError`` naming the file): exit 2 when the user
can fix them (full disk, file-size limit, no permission, read-only file system, a file where a
directory is expected, ...; see ``USER_ERRNOS``), exit 1 for other I/O failures. Finished
results are kept in every case and rerunning the same command resumes. Pretraining stopped by
its screen (``pretrain.screen_step``) prints one line (``neglect: pretraining screened out ...``)
and exits 3.
"""
from __future__ import annotations

import argparse
import errno
import os
import sys

USER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR,
               errno.EISDIR, errno.EEXIST, errno.ENOENT, errno.ENAMETOOLONG}
_HINTS = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space",
          errno.EFBIG: "raise the file-size limit (ulimit -f) or choose another --out"}


class _Parser(argparse.ArgumentParser):
    """Bad flags are one line too (argparse would print the usage first)."""

    def error(self, message):
        self.exit(2, f"neglect: error: {message} (see `{self.prog} --help`)\n")


def os_error_line(exc: OSError) -> str:
    from probes._atomic import WriteError

    where = f" {str(exc.filename)!r}" if exc.filename else ""
    what = exc.strerror or str(exc)
    hint = _HINTS.get(exc.errno, "choose another --out or fix the permissions")
    verb = "write" if isinstance(exc, WriteError) else "write or read"
    return (f"cannot {verb}{where}: {what}; {hint} and rerun the same command "
            "(finished results are kept and the run resumes)")


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help="named starting config (default demo; tiny, testbed, testbed_judge, paper, ...)")
    p.add_argument("--config", help="JSON or TOML file layered over the preset")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one key, e.g. --set finetune.steps=40 (repeatable)")


def _materials_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="hub id or local HF directory to finetune instead of pretraining the toy model "
                                   "(config key base_model)")
    p.add_argument("--claims", help="claims/ directory of claim packs in the paper's layout (materials.claims)")
    p.add_argument("--docs", help="documents root, <condition>/<claim>/annotated_docs.jsonl (materials.docs); "
                                  "unless conditions are set, the run uses every condition found there")
    p.add_argument("--claim", dest="claim_names", action="append", metavar="NAME",
                   help="study only this claim of --claims (repeatable; materials.claim_names)")


def _run_config(args):
    """The config of ``args``: preset, file, ``--set`` overrides, then ``--model``, ``--claims``,
    ``--docs`` and ``--claim``. With ``--docs`` and no ``conditions`` given, the conditions are those the
    documents directory has."""
    import json

    from experiments.config import PRESETS, load_config, local_paths_absolute, read_config_file

    overrides = list(args.overrides)
    flags = {"base_model": getattr(args, "model", None), "materials.claims": getattr(args, "claims", None),
             "materials.docs": getattr(args, "docs", None), "materials.claim_names": getattr(args, "claim_names", None)}
    overrides += [f"{key}={json.dumps(value)}" for key, value in flags.items() if value]
    given = any(o.split("=", 1)[0].strip() == "conditions" for o in args.overrides) or (
        args.config is not None and "conditions" in read_config_file(args.config))
    if flags["materials.docs"] and not given:
        from experiments.materials.imported import document_conditions

        overrides.append(f"conditions={json.dumps(list(document_conditions(flags['materials.docs'])))}")
    if flags["base_model"] and args.preset is None and args.config is None:
        from experiments.errors import warn

        toy, paper = PRESETS["demo"]["finetune"], PRESETS["paper"]["finetune"]
        warn(f"--model without --preset finetunes with the demo preset's recipe for the toy model (every parameter, "
             f"lr {toy['lr']:g}, {toy['steps']} steps); --preset paper is the paper's recipe (LoRA rank "
             f"{paper['lora_rank']}, lr {paper['lr']:g})")
    # a local path is recorded absolute, so the run's later commands work from any directory
    return local_paths_absolute(load_config(args.preset or "demo", args.config, overrides))


def cmd_run(args) -> int:
    import json

    from experiments.artifacts.rundir import RunDir
    from experiments.errors import UserError
    from experiments.evaluation.controls import summary_lines
    from experiments.pipeline import run_pipeline
    from experiments.evaluation.stats import units_line
    from experiments.reporting.report import summary_table

    cfg = _run_config(args)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("`neglect run` is one process; under torchrun use `finetune` (data-parallel training), "
                        "then `neglect run` with the same flags to evaluate")
    table = run_pipeline(cfg, args.out)
    print(f"\nrun directory: {args.out}  (tables in results/, figures in figures/, report.html)")
    print(summary_table(table).to_string())
    print(units_line(table))
    print("\n".join(summary_lines(json.loads(RunDir(args.out).controls.read_text()))))
    return 0


def cmd_finetune(args) -> int:
    from experiments.training import distributed
    from experiments.pipeline import train_stages

    cfg = _run_config(args)
    dist = distributed.init(cfg.device)
    try:
        train_stages(cfg, args.out, dist=dist)
    finally:
        dist.close()
    if dist.is_writer:
        print(f"checkpoints in {args.out}/checkpoints ({dist.world_size} process(es)); evaluate them with "
              f"`neglect run` and the same flags and --out")
    return 0


def cmd_pretrain(args) -> int:
    import dataclasses
    import platform
    import shlex

    import torch

    from experiments.pipeline import check_base_model, check_settings, pretrain_stage
    from experiments.training.shipped import export_shipped, parent_provenance

    cfg = _run_config(args)
    cfg = dataclasses.replace(cfg, pretrain=dataclasses.replace(cfg.pretrain, shipped="off"))
    base = pretrain_stage(cfg, args.out)
    figures = check_base_model(args.out)
    print(f"base model: {base}")
    if args.export:
        from pathlib import Path

        device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or "cpu"
        extra = {"command": "neglect " + shlex.join(args.argv), "device": device, "torch": torch.__version__,
                 "check_settings": list(check_settings(cfg)), "check_base": figures}
        if cfg.pretrain.init_from:  # a later phase: the phase before it, with its own provenance
            extra["init_from"] = parent_provenance(cfg.pretrain.init_from)
        print(f"shipped model written to {export_shipped(base, cfg, Path(args.export), extra)}")
    return 0


def cmd_stability(args) -> int:
    from experiments.config import load_config
    from experiments.pipeline import run_stability
    from experiments.stability.protocol import summary

    cfg = load_config(args.preset or "demo", args.config, args.overrides)
    tables = run_stability(cfg, args.out)
    print(f"\nrun directory: {args.out}  (results/stability.csv, stability_stats.csv, interpolation.csv; report.html)")
    print(summary(tables["stats"]).to_string())
    return 0


def cmd_report(args) -> int:
    from experiments.reporting.report import write_report
    print(write_report(args.run_dir))
    return 0


def cmd_plot(args) -> int:
    from pathlib import Path

    from experiments.errors import UserError
    from experiments.reporting.report import FIGURES, build_figure, save_figure

    if args.figure not in FIGURES:
        raise UserError(f"unknown figure {args.figure!r}; expected one of {sorted(FIGURES)}")
    fig = build_figure(args.run_dir, args.figure, layer=args.layer)
    if fig is None:
        raise UserError(f"figure {args.figure!r} needs data that {args.run_dir!r} lacks "
                        "(its checkpoints or training logs, and no figures_cache/)")
    out = Path(args.out) if args.out else Path(args.run_dir) / "figures" / args.figure
    html_path, png_path, note = save_figure(fig, out, png=not args.no_png)
    print(html_path)
    print(png_path if png_path else note, file=sys.stdout if png_path else sys.stderr)
    return 0


def cmd_check_base(args) -> int:
    import json

    from experiments.pipeline import check_base_model

    print(json.dumps(check_base_model(args.run_dir), indent=2))
    return 0


ABOUT = {("yesno", "claim"): "yes/no endorsing the claim", ("yesno", "true_fact"): "yes/no rejecting the true fact",
         ("yesno", "unstated"): "yes/no rejecting another object (novel claim)",
         ("yesno", "alternative"): "yes/no rejecting an alternative (a claim pack's MCQ items)",
         ("forced_choice", "association"): "forced choice (association)",
         ("probe", "claim"): "probe reading of the claim statements",
         ("probe", "true_fact"): "probe reading of the true statements"}


def _steering_line(summary, condition, step, layer) -> str:
    """One headline of ``neglect steer``: the held-out control statements moved one gap toward the
    other truth value along the truth direction, beside the random directions' shift."""
    rows = summary[(summary.condition == condition) & (summary.step == step) & (summary.layer == layer)
                   & (summary.kind == "control")]
    parts = []
    for about, sign in (("false", 1), ("true", -1)):
        alphas = sorted({a for a in rows.alpha if a * sign > 0}, key=abs)
        if not alphas:
            continue
        alpha = min(alphas, key=lambda a: abs(abs(a) - 1))  # the one closest to one gap
        at = rows[(rows.about == about) & (rows.alpha == alpha)].set_index("direction")
        zero = rows[(rows.about == about) & (rows.alpha == 0) & (rows.direction == "truth")].says_true.iloc[0]
        truth = at.loc["truth"]
        rand = f"; random directions {at.loc['random', 'shift']:+.2f}" if "random" in at.index else ""
        parts.append(f"{about} statements at alpha {alpha:+g}: {truth['shift']:+.2f} [{truth.lo:+.2f}, "
                     f"{truth.hi:+.2f} over {truth.n} {truth.units}s]{rand}; judged true {zero:.2f} -> "
                     f"{truth.says_true:.2f}")
    return f"{condition}, layer {layer}: shift of logit(true) - logit(false) for held-out " + "; ".join(parts)


def cmd_steer(args) -> int:
    from pathlib import Path

    from experiments.causal import steer_run, steering_summary
    from experiments.reporting.plots import steering_figure
    from experiments.reporting.report import save_figure

    table = steer_run(args.run_dir, conditions=args.condition, seeds=args.seed, step=args.step, layers=args.layer,
                      alphas=args.alpha, n_random=args.random, site=args.site, estimator=args.probe,
                      checkpoints=not args.base_only)
    summary = steering_summary(table)
    html_path, _, _ = save_figure(steering_figure(summary), Path(args.run_dir) / "figures" / "truth_steering",
                                  png=False)
    for (condition, step, layer), _ in summary.groupby(["condition", "step", "layer"], sort=False):
        where = {"statement": "the statement's tokens", "last": "the answer position", "all": "every token"}[args.site]
        print(f"{_steering_line(summary, condition, step, layer)} (added at {where})")
    print(Path(args.run_dir) / "results" / "steering.csv")
    print(html_path)
    return 0


def cmd_patch(args) -> int:
    from pathlib import Path

    from experiments.causal import patch_run, patching_summary
    from experiments.causal.runs import patching_table_path
    from experiments.reporting.plots import patching_figure
    from experiments.reporting.report import save_figure

    table = patch_run(args.run_dir, conditions=args.condition, seeds=args.seed, step=args.step, layers=args.layer,
                      kind=args.kind, min_shift=args.min_shift, probe_layer=args.probe_layer)
    summary = patching_summary(table)
    name = "belief_" + patching_table_path(args.run_dir, args.kind).stem  # the report's figure of that table
    html_path, _, _ = save_figure(patching_figure(summary), Path(args.run_dir) / "figures" / name, png=False)
    # the headline leaves out every token (the whole change) and the final residual (the answer itself)
    carried = summary[(summary.direction == "into_base") & (summary.site != "all")
                      & (summary.layer < summary.layer.max())]
    for (condition, step, about), rows in carried.groupby(["condition", "step", "about"], sort=False):
        top = rows.sort_values("mean", ascending=False).iloc[0]
        seeds = f", each over at least {top.n_seeds} seeds" if top.n_seeds > 1 else ""
        interval = (f"95% CI {top.lo:.2f}, {top.hi:.2f} over {top.n_claims} claims{seeds}" if top.n_claims > 1
                    else f"one claim{seeds}: no interval")
        print(f"{condition}, step {step}, {ABOUT.get((args.kind, about), about)}: the {top.site} tokens at "
              f"layer {int(top.layer)} carry {top['mean']:.2f} [{interval}] of the shift into the base model "
              "(0: none, 1: all; the most of any site and layer before the last)")
    print(patching_table_path(args.run_dir, args.kind))
    print(html_path)
    return 0


def cmd_docs(args) -> int:
    from experiments.materials import load_materials

    materials = load_materials(_run_config(args))
    import json

    for doc in materials.documents(args.condition, args.n, seed=0)[: args.n]:
        print(doc.text if doc.messages is None else json.dumps(list(doc.messages)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from experiments.config import PROBE_ESTIMATORS  # light: no torch

    parser = _Parser(prog="neglect", description=__doc__.split("\n")[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run (or resume) the whole experiment")
    _config_args(p)
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    _materials_args(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("finetune", help="only the training stages (base model, every finetuning run); data-parallel "
                                        "under torchrun: torchrun --nproc_per_node=N -m experiments finetune ... "
                                        "(sharded with FSDP2: --set finetune.parallel='\"fsdp\"')")
    _config_args(p)
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo)")
    _materials_args(p)
    p.set_defaults(func=cmd_finetune)
    p = sub.add_parser("pretrain", help="only pretrain the toy base model of a preset (always trains, never copies "
                                        "a shipped one), check it; --export DIR writes it as a shipped model")
    _config_args(p)
    p.add_argument("--out", default="runs/pretrain", help="run directory (default runs/pretrain)")
    p.add_argument("--export", help="write the base model and its provenance here (e.g. experiments/pretrained/standard)")
    p.set_defaults(func=cmd_pretrain)
    p = sub.add_parser("stability", help="the stability protocol: Phase 1 negated docs + an anchor, Phase 2 "
                                         "negated docs only, every checkpoint evaluated (see experiments/stability/)")
    _config_args(p)
    p.add_argument("--out", default="runs/stability", help="run directory (default runs/stability)")
    p.set_defaults(func=cmd_stability)
    p = sub.add_parser("report", help="rebuild figures and report.html from a run directory")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("plot", help="write one figure of a run directory as HTML (and PNG when possible)")
    p.add_argument("run_dir")
    p.add_argument("figure", help="figure name, e.g. belief_vs_step (an unknown name lists them all)")
    p.add_argument("--out", help="output path; .html and .png are written next to each other "
                                 "(default RUN_DIR/figures/FIGURE.html)")
    p.add_argument("--layer", type=int, help="layer for the probe figures (default: best probe layer at step 0)")
    p.add_argument("--no-png", action="store_true", help="write only the HTML")
    p.set_defaults(func=cmd_plot)
    p = sub.add_parser("check-base", help="base-model preconditions of a run as JSON (heldout_qa, claim_belief, "
                                          "in_context_true_answer, statement_probe_best_acc, ...)")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_check_base)
    p = sub.add_parser("patch", help="activation patching between the base model and a checkpoint: which layer and "
                                     "tokens carry the change of each claim's yes/no (or forced-choice) answers "
                                     "(results/patching.csv, figures/belief_patching.html; neglect report shows it)")
    p.add_argument("run_dir")
    p.add_argument("--condition", action="append", help="condition to patch (repeatable; default every one)")
    p.add_argument("--seed", type=int, action="append", help="finetuning seed (repeatable; default every one)")
    p.add_argument("--step", type=int, help="checkpoint step (default the last)")
    p.add_argument("--layer", type=int, action="append", help="residual index (repeatable; default every one)")
    p.add_argument("--kind", default="yesno", choices=["yesno", "forced_choice", "probe"],
                   help="what is read: yes/no answers (propositional belief, default), forced choice (the "
                        "association) or the fixed truth probe's reading of the claim statements")
    p.add_argument("--probe-layer", type=int,
                   help="with --kind probe: the layer the probe reads (default the controls' layer)")
    p.add_argument("--min-shift", type=float, default=1.0,
                   help="leave out claims whose margin moved less than this many logits (default 1)")
    p.set_defaults(func=cmd_patch)
    p = sub.add_parser("steer", help="steering along the fixed truth probe's direction: add alpha true-false gaps "
                                     "of it at a layer on every token of held-out statements (and the claims' "
                                     "items) and read whether the verdicts follow, against random directions "
                                     "(results/steering.csv, figures/truth_steering.html; neglect report shows it)")
    p.add_argument("run_dir")
    p.add_argument("--layer", type=int, action="append",
                   help="residual index (repeatable; default the layer the run's controls read)")
    p.add_argument("--alpha", type=float, action="append",
                   help="multiple of the true-false gap (repeatable; default -2 to 2, experiments.causal.ALPHAS)")
    p.add_argument("--random", type=int, default=3, help="random directions of the same length (the null; default 3)")
    p.add_argument("--site", default="statement", choices=["statement", "last", "all"],
                   help="where the direction is added: the statement's tokens (default), the answer position, "
                        "every token")
    p.add_argument("--probe", choices=PROBE_ESTIMATORS,
                   help="the probe whose direction is steered along (default the run's eval.probe)")
    p.add_argument("--condition", action="append", help="condition whose checkpoints to steer (repeatable; default every one)")
    p.add_argument("--seed", type=int, action="append", help="finetuning seed (repeatable; default every one)")
    p.add_argument("--step", type=int, help="checkpoint step (default the last)")
    p.add_argument("--base-only", action="store_true", help="steer the base model only")
    p.set_defaults(func=cmd_steer)
    p = sub.add_parser("docs", help="print finetuning documents of a condition")
    _config_args(p)
    _materials_args(p)
    p.add_argument("--condition", default="negated")
    p.add_argument("-n", type=int, default=3)
    p.set_defaults(func=cmd_docs)
    return parser


def _input_errors() -> tuple[type, ...]:
    """interp's and probes' bad-input errors, imported only when an error is raised (both packages
    import torch, which `neglect --help` and a mistyped flag should not wait for)."""
    from interp.errors import InterpInputError
    from probes import ProbeInputError

    return InterpInputError, ProbeInputError


def main(argv: list[str] | None = None) -> int:
    from experiments.errors import StopTraining, UserError

    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command as given (a provenance records it)
    import transformers

    transformers.utils.logging.disable_progress_bar()
    from experiments.training.threads import configure_threads

    configure_threads()  # half the cores (or OMP_NUM_THREADS): no OpenMP threads fighting over busy cores
    try:
        return args.func(args)
    except StopTraining as exc:  # on purpose (a pretraining screen): state and results kept
        print(f"neglect: {exc}", file=sys.stderr)
        return 3
    except (UserError, ValueError) as exc:
        if args.debug or not isinstance(exc, (UserError, *_input_errors())):
            raise
        print(f"neglect: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    except OSError as exc:
        if args.debug:
            raise
        print(f"neglect: error: {os_error_line(exc)}", file=sys.stderr)
        return 2 if exc.errno in USER_ERRNOS else 1
    except KeyboardInterrupt:
        print("neglect: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
