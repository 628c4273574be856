"""Where finetuning wrote a belief: activation patching between a base model and a finetuned
checkpoint, at every layer and at a few token sites of each claim's yes/no questions.

Each yes/no question about a claim (``Materials.belief_questions``, kind ``yesno``: "does S live
in C?", asked about the claim and about what is true instead) is read by its *believer margin*
``m = logit(believer's answer) - logit(the other answer)`` at the answer position (the options'
first tokens; the same as the log-probability difference). ``kind="forced_choice"`` reads the
association instead ("where does S live?": the claim's answer against the true one). With the base model B and the
finetuned model F, at one site (a layer of ``interp.residuals``' index and a set of tokens):

- ``into_base``: B run with F's residual stream at the site. ``fraction`` = (m_patched - m_B) /
  (m_F - m_B): the share of finetuning's shift that the site alone carries into the base model
  (0: none, 1: all of it; sufficiency).
- ``into_finetuned``: F run with B's residual stream at the site. ``fraction`` = (m_F - m_patched)
  / (m_F - m_B): the share of the shift lost when the site is put back (necessity).

Questions are kept apart by what they ask about (``about``): the claim ("does S live in C_claim?",
a believer says yes: *endorsing* the claim), the true fact (a believer says no: *rejecting* the
truth; ``unstated`` for a novel claim's other object) and, for forced choice, ``association``.
Margins are averaged over a claim's questions of one ``about`` before the division; a claim whose shift |m_F -
m_B| is below ``min_shift`` is left out (nothing to localise; listed in the rows with
``fraction`` NaN). Sites: ``subject`` (the claim subject's tokens), ``object`` (the asked object's
tokens: the claim's object, or what is true instead), ``last`` (the answer position) and ``all``
(every token; from the first layer on the whole model's change, fraction 1 when only blocks
changed; at layer 0 only the embeddings are swapped). ``subject`` and ``object`` need the
synthetic world's claims.

A claim pack's MCQ items (imported materials: the paper's experiment) are yes/no questions asked
as the belief scoring asks them (chat template, MCQ instruction, each option written as its reply,
e.g. ``{"answer": "yes"}``); the model reads the prompt and the replies' shared start, and the
margin is read at the first token where the replies differ. Their sites are ``last`` and ``all``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from experiments.errors import UserError
from experiments.causal.reading import read_question, token_margins
from experiments.evaluation.scoring import McqFormat
from experiments.evaluation.stats import summarise
from interp import LoadedModel, Patch, Span, residuals_under
from interp.residuals import check_layers

SITES = ("subject", "object", "last", "all")
KINDS = ("yesno", "forced_choice")  # yes/no: propositional belief; forced choice: the association
DIRECTIONS = ("into_base", "into_finetuned")


QUESTION_KINDS = {"yesno": ("yesno",), "forced_choice": ("forced_choice", "token_association")}


def default_sites(materials) -> tuple[str, ...]:
    """Every site ``materials`` allow: the word sites (``subject``, ``object``) need the synthetic
    world's claims; imported materials get ``last`` and ``all``."""
    return SITES if getattr(materials, "world", None) is not None else ("last", "all")


def _items(lm: LoadedModel, materials, claims, kind: str, mcq: McqFormat) -> pd.DataFrame:
    """One row per question of ``kind`` about the chosen claims (``QUESTION_KINDS``: a claim pack's
    MCQ items are yes/no questions, its token-association items forced choices): claim, subject,
    asked object (yes/no questions of the synthetic world; else None), ``input`` (what the model
    reads) and the token ids of the believer's answer and of the answer it is read against (the
    true one where known, else the other), at the first token where the two answers differ.

    A question is read as its belief scoring asks it (``experiments.evaluation.scoring``; MCQ items
    under ``mcq``, each option written as its reply). Where the two replies share their first
    tokens (``{"answer": "yes"}`` against ``{"answer": "no"}``), ``input`` is the prompt's token
    ids followed by that shared start, and the margin is read at the token that decides. A world
    question is read from its text (its subject's and object's words are sites) and left out
    when its answers share a first token; so is any question whose answers never differ."""
    subjects = {c.name: c.subject for c in materials.claims}
    world = getattr(materials, "world", None)
    tok = lm.tokenizer
    rows, asked_kind = [], 0
    for q in materials.belief_questions(tok):
        if q.kind not in QUESTION_KINDS[kind] or (claims is not None and q.claim not in claims):
            continue
        asked_kind += 1
        against = q.truth if q.truth is not None and q.truth != q.believer else int(q.believer == 0)
        reading = read_question(tok, q, q.believer, against, mcq)
        subject = subjects.get(q.claim)
        if reading is None or (subject is not None and reading.shared):
            continue
        obj = None
        if world is not None and kind == "yesno":
            claim = world.claim(q.claim)
            obj = claim.fact.obj if q.about == "claim" else claim.contrast_obj
        rows.append({"claim": q.claim, "about": q.about or "association", "subject": subject, "object": obj,
                     "input": reading.text if subject is not None else list(reading.ids),
                     "believer": reading.first, "other": reading.second})
    if not asked_kind:
        raise UserError(f"the materials have no {' or '.join(QUESTION_KINDS[kind])} belief questions to patch")
    if not rows:
        raise UserError(f"none of the {asked_kind} {kind} belief questions can be patched: their two answers never "
                        "differ in a token (or, in the synthetic world, share their first token)")
    return pd.DataFrame(rows)


def _margins(lm: LoadedModel, items: pd.DataFrame, patches, batch_size) -> np.ndarray:
    """Each question's believer margin (logits at its last token) under ``patches``."""
    return token_margins(lm, items.input.tolist(), items.believer.tolist(), items.other.tolist(), patches, batch_size)


def _probe_reader(probe, layer: int, position):
    """A reader of each statement's probe logit at ``layer`` (its ``position`` token) under patches."""
    def read(lm: LoadedModel, items: pd.DataFrame, patches, batch_size) -> np.ndarray:
        acts = residuals_under(lm, items.input.tolist(), patches, layers=[layer], read=position, batch_size=batch_size)
        return np.asarray(probe.logits(acts[:, 0].numpy().astype(np.float64)), dtype=float).reshape(-1)
    return read


def _site_position(site: str, item) -> object:
    """The tokens of ``site`` in one question (a selector for ``interp.Patch``)."""
    if site in ("subject", "object"):
        words = getattr(item, site)
        if not words:
            raise UserError(f"site {site!r} needs claims whose {site} is known (the synthetic world's)")
        return Span(words)
    return {"last": "last", "all": "all"}[site]


def _patched(read, run: LoadedModel, donor: LoadedModel, items: pd.DataFrame, site: str, layer: int,
             batch_size) -> np.ndarray:
    """``read`` of ``items`` with ``donor``'s residual stream at ``site`` and ``layer``: one pass per
    distinct set of tokens (a claim's subject, each asked object)."""
    positions = [_site_position(site, item) for item in items.itertuples(index=False)]
    out = np.empty(len(items))
    for position in dict.fromkeys(positions):
        rows = [i for i, p in enumerate(positions) if p == position]
        out[rows] = read(run, items.iloc[rows], [Patch(donor, layers=layer, position=position)], batch_size)
    return out


def _site_rows(read, base, finetuned, items: pd.DataFrame, sites, layers, min_shift, batch_size) -> list[dict]:
    """For each claim and question subject (``about``) of ``items``: the mean reading of the base
    model, the finetuned one and each patched one, and the share of the shift each site carries."""
    r_base, r_ft = read(base, items, [], batch_size), read(finetuned, items, [], batch_size)
    rows = []
    for (claim, about), grp in items.groupby(["claim", "about"], sort=True):
        sub = grp.reset_index(drop=True)
        mb, mf = float(r_base[grp.index].mean()), float(r_ft[grp.index].mean())
        shift = mf - mb
        for site in sites:
            for layer in layers:
                for direction, (run, donor) in zip(DIRECTIONS, ((base, finetuned), (finetuned, base))):
                    mp = float(_patched(read, run, donor, sub, site, layer, batch_size).mean())
                    moved = mp - mb if direction == "into_base" else mf - mp
                    rows.append({"claim": claim, "about": about, "site": site, "layer": layer,
                                 "direction": direction, "margin_base": mb, "margin_finetuned": mf,
                                 "margin_patched": mp, "margin_shift": shift,
                                 "fraction": moved / shift if shift and abs(shift) >= min_shift else np.nan})
    return rows


def _check_sites(sites) -> None:
    unknown = [s for s in sites if s not in SITES]
    if unknown or not sites:
        raise UserError(f"unknown patching site(s) {unknown or list(sites)}; expected some of {list(SITES)}")


def belief_patching(base: LoadedModel, finetuned: LoadedModel, materials, *, layers=None,
                    sites: tuple[str, ...] | None = None, claims=None, kind: str = "yesno", min_shift: float = 1.0,
                    mcq: McqFormat | None = None, batch_size: int | None = None) -> pd.DataFrame:
    """Patch each site of ``finetuned`` into ``base`` and back, and read each claim's margin.

    Parameters
    ----------
    base, finetuned : LoadedModel
        The model before finetuning and a finetuned checkpoint of it (same tokenizer and shape).
    materials : experiments.materials.base.Materials
        The run's materials (``experiments.materials.load_materials(cfg)``): its claims and their
        yes/no questions (a claim pack's MCQ items, asked under ``mcq``).
    layers : int or list of int, optional
        Residual-stream indices (0 = embeddings, i + 1 = output of block i); default every one.
    sites : tuple of str, optional
        Among :data:`SITES`; default every one the materials allow (:func:`default_sites`).
    claims : list of str, optional
        Claim names; default every claim.
    kind : str
        Which questions: "yesno" (propositional belief: the believer's yes or no against the other)
        or "forced_choice" (the association: "where does S live?", the claim's answer against the
        true one; a claim pack's token-association items; no ``object`` site, the prompt names
        none).
    min_shift : float
        A claim whose mean margin moves less than this (in logits) over finetuning gets NaN
        fractions.
    mcq : McqFormat, optional
        How MCQ items are asked (the run's ``eval.mcq_instruction`` and ``eval.mcq_answer``:
        ``McqFormat.from_config(cfg.eval)``); default :class:`McqFormat`'s.
    batch_size : int, optional
        Texts per forward pass.

    Returns
    -------
    DataFrame
        One row per claim x question subject x site x layer x direction: ``kind, claim, about,
        site, layer, direction, margin_base, margin_finetuned, margin_patched, margin_shift,
        fraction`` (see the module docstring; ``fraction``: 0 = the site carries none of the
        shift, the null of a site finetuning did not touch; 1 = all of it).
    """
    sites = default_sites(materials) if sites is None else tuple(sites)
    _check_sites(sites)
    if kind not in KINDS:
        raise UserError(f"unknown question kind {kind!r} for patching; expected one of {list(KINDS)}")
    if kind != "yesno":
        sites = tuple(s for s in sites if s != "object")
    items = _items(base, materials, claims, kind, mcq or McqFormat())
    rows = _site_rows(_margins, base, finetuned, items, sites, check_layers(layers, base.n_layers), min_shift,
                      batch_size)
    return pd.DataFrame(rows).assign(kind=kind)[["kind", *rows[0]]]


def probe_patching(base: LoadedModel, finetuned: LoadedModel, materials, probe, *, read_layer: int,
                   layers=None, sites: tuple[str, ...] | None = None, claims=None, position="last",
                   min_shift: float = 1.0, batch_size: int | None = None) -> pd.DataFrame:
    """Patch each site of ``finetuned`` into ``base`` and back, and read each claim statement with a
    truth probe: which sites carry the change of the probe's reading of the claims.

    Parameters
    ----------
    base, finetuned : LoadedModel
    materials : experiments.materials.base.Materials
        Its claim statements (``claim_statements``: the claim, and the true fact instead where
        it is known) are read, as the evaluation reads them (the synthetic world's statement
        frames; a claim pack's ``claim.txt`` and ``correction.txt``).
    probe :
        A probe with ``logits(acts [n, d])`` for ``read_layer``, e.g. the fixed probe,
        ``experiments.evaluation.readout.fit_probes(base activations, statements)[read_layer]``
        (positive logit: true).
    read_layer : int
        The residual index the probe reads; sites are patched at ``layers`` up to it.
    layers : int or list of int, optional
        Default every layer up to ``read_layer``.
    sites, claims, min_shift, batch_size :
        As for :func:`belief_patching` (``min_shift`` in probe logits).
    position : selector, default "last"
        The token the probe reads (``eval.position``).

    Returns
    -------
    DataFrame
        :func:`belief_patching`'s columns with ``kind`` "probe" and ``about`` "claim" or
        "true_fact"; margins are the probe's logits (a believer's reading of a true fact is low:
        its shift is negative, the fraction reads the same way).
    """
    sites = default_sites(materials) if sites is None else tuple(sites)
    _check_sites(sites)
    world = getattr(materials, "world", None)
    layers = [l for l in check_layers(layers, base.n_layers) if l <= read_layer]
    if not layers:
        raise UserError(f"no layer to patch at or before the probe's layer {read_layer}")
    rows = []
    for st in materials.claim_statements():
        if (claims is not None and st.claim not in claims) or st.kind not in ("claim", "true_fact"):
            continue
        subject = obj = None
        if world is not None:
            claim = world.claim(st.claim)
            subject, obj = claim.fact.subject, claim.fact.obj if st.kind == "claim" else claim.true_obj
        rows.append({"claim": st.claim, "about": st.kind, "subject": subject, "object": obj, "input": st.text})
    if not rows:
        raise UserError("no claim statements to patch")
    items = pd.DataFrame(rows)
    out = _site_rows(_probe_reader(probe, read_layer, position), base, finetuned, items, sites, layers, min_shift,
                     batch_size)
    return pd.DataFrame(out).assign(kind="probe", read_layer=read_layer)[["kind", "read_layer", *out[0]]]


def patching_summary(rows: pd.DataFrame, *, ci: str = "t") -> pd.DataFrame:
    """Mean ``fraction`` per site x layer x direction (and kind, condition, step and ``about``, where
    the rows have them) with an interval over claims, nested in seeds where there are several (claims
    with too small a shift left out).

    Parameters
    ----------
    rows : DataFrame
        :func:`belief_patching`'s output (several checkpoints or seeds may be stacked, with
        ``seed`` / ``world`` columns: they become nested units).
    ci : "t" or "bootstrap"

    Returns
    -------
    DataFrame ``[kind, condition, step, about, site, layer, direction, mean, lo, hi, n, units, ...]``
    (``units`` names them).
    """
    kept = rows.dropna(subset=["fraction"]).rename(columns={"fraction": "value"})
    if kept.empty:
        raise UserError("no claim's yes/no margin moved enough over finetuning to localise (every fraction is NaN; "
                        "a lower min_shift keeps smaller moves)")
    by = [c for c in ("kind", "condition", "step", "about") if c in kept.columns] + ["site", "layer", "direction"]
    return summarise(kept, by, ci=ci)
