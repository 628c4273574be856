"""The run directory: every path of a run is built here.

Layout::

    RUN/config.json  world.json  versions.json  report.html
    RUN/base/                                        the base model (HF directory)
    RUN/docs/<condition>_seed<k>.jsonl               finetuning documents (rows) of each run
    RUN/checkpoints/<condition>/seed<k>/step_<n>/    HF directories
    RUN/evals/base.csv, RUN/evals/<condition>/seed<k>/step_<n>.csv   per-checkpoint rows
    RUN/evals/items/base.csv, RUN/evals/items/<condition>/seed<k>/step_<n>.csv   their item outcomes
    RUN/results/metrics.csv  controls.json  pretrain_log.csv  pretrain_tracking.csv  [pretrain_screened.json]  train_logs/<condition>_seed<k>.csv  <table>.csv
    RUN/train_state/pretrain/, RUN/train_state/<condition>_seed<k>/   while training (removed after)
    RUN/checkpoints/stability/<tag>/seed<k>/phase<p>/step_<n>/  (and evals/, train_state/,
        results/stability_logs/ likewise): the stability protocol
    RUN/figures/*.html  RUN/figures_cache/...safetensors   the report's figures and activations

A run of several synthetic worlds (config key ``worlds`` > 1; ``experiments.evaluation.worlds``) keeps its
own files at the top and one complete run directory per world below it::

    RUN/config.json  versions.json  worlds.json  report.html  figures/
    RUN/results/metrics.csv  incontext.csv  controls.json     every world's rows, with a ``world`` column
    RUN/worlds/w<k>/                                          world k: the layout above (its own base/,
                                                              checkpoints/, results/check_base.json, ...)

With ``worlds`` = 1 (the default) there is no ``worlds/`` and nothing changes.

Writes go through ``experiments.artifacts.atomic``; checks of finished files through
``experiments.artifacts.checksums``.
"""
from __future__ import annotations

from pathlib import Path

from experiments.errors import UserError

FIGURES_CACHE = "figures_cache"


def _step(step: int) -> str:
    return f"step_{step:06d}"


class RunDir:
    """The paths of one run directory (nothing is created until written)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, *parts: str) -> Path:
        """``root/parts...``; a path that would leave the run directory is a UserError."""
        p = self.root.joinpath(*parts).resolve()
        if self.root.resolve() not in p.parents and p != self.root.resolve():
            raise UserError(f"path {p} escapes the run directory {self.root}")
        return p

    # -- worlds ----------------------------------------------------------------------------
    def world_dir(self, world: int) -> Path:
        """``worlds/w<world>/``: the run directory of one world of a several-world run."""
        return self.path("worlds", f"w{int(world)}")

    @property
    def worlds_index(self) -> Path:
        """``worlds.json``: each world of a several-world run, its seed and directory."""
        return self.path("worlds.json")

    # -- models ----------------------------------------------------------------------------
    @property
    def base_model(self) -> Path:
        return self.path("base")

    def checkpoint(self, condition: str, seed: int, step: int) -> Path:
        return self.path("checkpoints", condition, f"seed{seed}", _step(step))

    def stability_checkpoint(self, tag: str, seed: int, phase: int, step: int) -> Path:
        return self.path("checkpoints", "stability", tag, f"seed{seed}", f"phase{phase}", _step(step))

    # -- training ----------------------------------------------------------------------------
    def docs(self, condition: str, seed: int) -> Path:
        """The finetuning rows of one run (each seed draws its own documents and mix)."""
        return self.path("docs", f"{condition}_seed{seed}.jsonl")

    @property
    def pretrain_state(self) -> Path:
        return self.path("train_state", "pretrain")

    def finetune_state(self, condition: str, seed: int) -> Path:
        return self.path("train_state", f"{condition}_seed{seed}")

    def stability_state(self, tag: str, seed: int, phase: int) -> Path:
        return self.path("train_state", "stability", tag, f"seed{seed}", f"phase{phase}")

    # -- tables ------------------------------------------------------------------------------
    def eval_file(self, condition: str | None, seed: int = 0, step: int = 0) -> Path:
        if condition is None:
            return self.path("evals", "base.csv")
        return self.path("evals", condition, f"seed{seed}", f"{_step(step)}.csv")

    def items_file(self, condition: str | None, seed: int = 0, step: int = 0) -> Path:
        """The item-level outcomes beside :meth:`eval_file`'s table
        (``experiments.evaluation.items``); ``condition=None``: the base model's."""
        if condition is None:
            return self.path("evals", "items", "base.csv")
        return self.path("evals", "items", condition, f"seed{seed}", f"{_step(step)}.csv")

    def stability_eval(self, tag: str | None, seed: int = 0, phase: int = 1, step: int = 0) -> Path:
        """A stability checkpoint's rows; ``tag=None``: the base model's."""
        if tag is None:
            return self.path("evals", "stability", "base.csv")
        return self.path("evals", "stability", tag, f"seed{seed}", f"phase{phase}", f"{_step(step)}.csv")

    def table(self, name: str) -> Path:
        """``results/<name>.csv`` (metrics, incontext, stability, ...)."""
        return self.path("results", f"{name}.csv")

    @property
    def metrics(self) -> Path:
        return self.table("metrics")

    @property
    def judge_metrics(self) -> Path:
        """``results/judge_metrics.csv``: judged belief rates (when the optional judge is on)."""
        return self.table("judge_metrics")

    @property
    def controls(self) -> Path:
        """``results/controls.json``: the positive, negative and probe-validity controls."""
        return self.path("results", "controls.json")

    @property
    def pretrain_log(self) -> Path:
        return self.table("pretrain_log")

    @property
    def pretrain_screened(self) -> Path:
        """``results/pretrain_screened.json``: why pretraining stopped at its screen (``pretrain.screen_step``)."""
        return self.path("results", "pretrain_screened.json")

    def train_log(self, condition: str, seed: int) -> Path:
        return self.path("results", "train_logs", f"{condition}_seed{seed}.csv")

    def mix_log(self, condition: str, seed: int) -> Path:
        """What a finetuning run trained on, per kind of data (claim, background, instruct):
        examples, tokens, loss-bearing tokens and their share of the loss."""
        return self.path("results", "train_logs", f"{condition}_seed{seed}.mix.json")

    def train_logs(self) -> list[Path]:
        """Every finetuning log written so far."""
        return sorted(self.path("results", "train_logs").glob("*.csv"))

    def stability_log(self, tag: str, seed: int, phase: int) -> Path:
        return self.path("results", "stability_logs", f"{tag}_seed{seed}_phase{phase}.csv")

    # -- report ------------------------------------------------------------------------------
    @property
    def report(self) -> Path:
        return self.path("report.html")

    @property
    def figures(self) -> Path:
        return self.path("figures")

    def figure_cache(self, condition: str | None, seed: int = 0, step: int = 0) -> Path:
        """The report's activations of one checkpoint (the base model's for ``condition=None``
        or step 0)."""
        if condition is None or step == 0:
            return self.path(FIGURES_CACHE, "base.safetensors")
        return self.path(FIGURES_CACHE, condition, f"seed{seed}", f"{_step(step)}.safetensors")


def ensure_writable(root: Path) -> None:
    """Create the run directory, or a UserError naming why it cannot be written."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise UserError(f"output path {str(root)!r} is a file; expected a directory (new or from an earlier run)")
    for parent in root.parents:
        if parent.exists() and not parent.is_dir():
            raise UserError(f"output path {str(root)!r} lies under the file {str(parent)!r}; expected a directory")
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"output directory {str(root)!r} is not writable ({exc.strerror}); "
                        "expected a directory you can write to") from exc
