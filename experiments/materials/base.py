"""The study-materials interface: everything an experiment takes from its source.

A run needs, for its claims: finetuning documents per condition (with labelled spans: document
tags, warnings, claim sentences, so losses can be masked), belief questions by kind, the claim
statements a probe reads, probe statements (true/false, affirmative/negated, with grouping keys
for splits by entity and by dataset) that no finetuning document touches (the controls), and
background text to mix into finetuning. :class:`Materials` is that contract; the pipeline,
belief scoring, the probe readout and the stability protocol consume only it.

Two providers:

- :class:`experiments.materials.synthetic.WorldMaterials`: the embedded synthetic world, whose
  ground truth is known and whose base model is pretrained here;
- :class:`experiments.materials.imported.ImportedMaterials`: claim packs and documents in the
  paper's published layout (or user JSONL), for any Hugging Face model.

``load_materials(cfg)`` (in ``experiments.materials``) picks the provider from the config.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import NamedTuple

from experiments.errors import UserError
from experiments.materials.conditions import LabelledDocument
from experiments.materials.questions import BeliefQuestion, Prompt
from experiments.materials.statements import ClaimStatement, NeighbourStatement, Statement
from experiments.materials.world import World


@dataclass(frozen=True)
class ClaimInfo:
    """One implanted claim.

    ``statement`` is the claim as a sentence; ``subject`` the entity it is about and
    ``true_statement`` what is true instead, where the source knows them (the synthetic world
    always does; a claim pack has only its ``claim.txt``)."""

    name: str
    statement: str
    subject: str | None = None
    true_statement: str | None = None


class OpenQuestion(NamedTuple):
    """A free-text question about a claim, for an LLM judge (``experiments.evaluation.judge``):
    the claim's name, its statement (what the judge checks the answer against) and the prompt
    (with the item's own system prompt and earlier turns, if any).

    ``kind`` is the question file it comes from ("open_ended", "token_association",
    "robustness"), ``qid`` its id. ``judge_prompt`` is the judge's prompt template, with
    ``{question}`` and ``{answer}`` fields (a claim pack's ``judges.yaml``), and ``judge_key``
    the JSON field of the judge's reply that holds the verdict (yes, no or neutral); without a
    ``judge_prompt`` the judge's built-in prompt is used. ``judge_source`` says where the
    prompt came from."""

    claim: str
    statement: str
    prompt: Prompt
    kind: str = "open_ended"
    qid: str = ""
    judge_prompt: str | None = None
    judge_key: str = "answer"
    judge_source: str = "built-in"


class Materials(ABC):
    """What a run takes from its source (see the module docstring).

    Subclasses set ``kind`` (a short name written to the run directory) and implement the
    abstract methods. ``world`` is the synthetic :class:`World` for the synthetic provider and
    ``None`` otherwise: the few checks that need ground truth beyond the claims (held-out factual
    QA, the in-context control, the stability anchors built from world facts, pretraining the
    toy base model) run only when it is set.

    ``skip_frames`` is the belief-frame screen (``experiments.evaluation.frames``): the
    statement frames whose verdict items and claim statements are left out, ``()`` for none;
    ``None`` until a run has screened the synthetic world's materials (imported materials have
    no frames to screen)."""

    kind: str = "abstract"
    world: World | None = None
    skip_frames: tuple[str, ...] | None = None

    # -- claims and documents -----------------------------------------------------------------
    @property
    @abstractmethod
    def claims(self) -> tuple[ClaimInfo, ...]:
        """The implanted claims, in a fixed order."""

    @property
    @abstractmethod
    def conditions(self) -> tuple[str, ...]:
        """The finetuning conditions this source has documents for."""

    @abstractmethod
    def _documents(self, condition: str, n_per_claim: int, seed: int) -> list[LabelledDocument]:
        """Documents of a known condition (``documents`` checks the arguments first)."""

    def documents(self, condition: str, n_per_claim: int, seed: int) -> list[LabelledDocument]:
        """Finetuning documents of ``condition``: up to ``n_per_claim`` per claim, claim by claim,
        deterministic in ``seed``, each with labelled character spans.

        Parameters
        ----------
        condition : str
            One of :attr:`conditions`.
        n_per_claim : int
            Documents per claim (a source with fewer gives all it has).
        seed : int
            Which documents (synthetic world) or which order (imported documents).

        Returns
        -------
        list of LabelledDocument
        """
        self.check_condition(condition)
        if n_per_claim < 0:
            raise UserError(f"documents per claim must be >= 0, got {n_per_claim}")
        return self._documents(condition, n_per_claim, seed)

    def check_condition(self, condition: str) -> None:
        """One-line error when this source has no documents for ``condition``."""
        if condition not in self.conditions:
            raise UserError(f"unknown condition {condition!r} for the {self.kind} materials; "
                            f"expected one of {list(self.conditions)}")

    # -- questions and statements --------------------------------------------------------------
    @abstractmethod
    def belief_questions(self, tokenizer=None) -> list[BeliefQuestion]:
        """Every judge-free belief question about every claim. With a ``tokenizer``, questions
        whose text it cannot encode (the toy word-level vocabulary) are left out."""

    @abstractmethod
    def probe_statements(self) -> list[Statement]:
        """Labelled true/false statements (affirmative and negated) for fitting and testing
        truth probes, with ``split`` ("train"/"test", by entity), ``subject`` (the grouping key)
        and ``dataset``. None of them is about a claim: they are the controls."""

    @abstractmethod
    def claim_statements(self) -> list[ClaimStatement]:
        """The statements whose probe reading is the claim's reading (``kind`` "claim", and
        "true_fact" where the truth is known), framed as the probe statements are."""

    def neighbour_statements(self) -> list[NeighbourStatement]:
        """Labelled true/false statements about facts near each claim (its subject's other
        facts, its fabricated object's facts; ``kind`` "subject" / "object"), framed as the
        probe statements are, never in the probes' training split: the neighbourhood controls.
        None by default: imported materials know nothing of a claim's neighbourhood."""
        return []

    def open_questions(self) -> list[OpenQuestion]:
        """Free-text questions for a judge; none by default."""
        return []

    # -- data to mix into finetuning -----------------------------------------------------------
    def background_documents(self, n: int, seed: int) -> list[str]:
        """``n`` background texts (pretraining-like) to mix into finetuning; none by default."""
        return []

    def instruct_examples(self, n: int, seed: int) -> list[LabelledDocument]:
        """``n`` instruction-following examples to mix into finetuning, as chat rows
        (``LabelledDocument.messages``; trained on the assistant turns); none by default."""
        return []

    # -- provenance -----------------------------------------------------------------------------
    @abstractmethod
    def describe(self) -> dict:
        """A JSON-able description written to the run directory (what the run was made from)."""
