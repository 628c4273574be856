"""Belief patching (experiments/causal/patching.py) on the testbed base model shipped with the
package: margins agree with the belief scoring, and a finetuned stand-in whose change is known
(block 0's MLP only) gives the fractions that change implies."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import interp
from experiments.causal import SITES, belief_patching, patching_summary, probe_patching
from experiments.causal.runs import fixed_probe
from experiments.config import load_config
from experiments.errors import UserError
from experiments.evaluation.belief import score_questions
from experiments.materials import load_materials
from experiments.training import shipped
from tests.experiments.causal.stand_ins import block0_stand_in

CLAIMS = ["claim0_lives_in", "novel1_works_as"]


@pytest.fixture(scope="module")
def setting():
    torch.set_num_threads(1)
    materials = load_materials(load_config("testbed"))
    path = shipped.shipped_models()["testbed"]
    base = interp.load_model(path, device="cpu")
    changed = block0_stand_in(path, 0.05)  # a stand-in for a checkpoint: only block 0's MLP moved
    rows = belief_patching(base, changed, materials, layers=[0, 1, 3, base.n_layers], claims=CLAIMS, min_shift=0.0)
    return materials, base, rows, changed


def test_the_margins_are_the_belief_scorings(setting):
    materials, base, rows, _ = setting
    scored = score_questions(base, [q for q in materials.belief_questions(base.tokenizer)
                                    if q.kind == "yesno" and q.claim in CLAIMS])
    want = scored.groupby("claim").margin.mean()  # believer minus the true option: both options known here
    got = rows.groupby(["claim", "about"]).margin_base.first().groupby("claim").mean()
    assert np.allclose(got[want.index], want, atol=1e-3)
    assert (got < -3).all()  # the base model does not believe either claim


def test_a_change_in_block_0_is_carried_whole_by_every_token_after_it(setting):
    _, base, rows, _ = setting
    assert (rows.margin_shift.abs() > 0.05).all()
    every = rows[rows.site == "all"].set_index(["claim", "layer", "direction"]).fraction
    assert np.allclose(every.xs(0, level="layer"), 0.0, atol=1e-4)  # the embeddings did not change
    for layer in (1, 3, base.n_layers):
        assert np.allclose(every.xs(layer, level="layer"), 1.0, atol=1e-3)
    last = rows[(rows.site == "last") & (rows.layer == base.n_layers)].fraction
    assert np.allclose(last, 1.0, atol=1e-3)  # after the final norm the answer position is the answer


def test_rows_and_summary_cover_every_site_layer_and_direction(setting):
    _, _, rows, _ = setting
    assert set(rows.site) == set(SITES) and set(rows.direction) == {"into_base", "into_finetuned"}
    about = rows.groupby("claim").about.unique().map(sorted).to_dict()
    assert about == {"claim0_lives_in": ["claim", "true_fact"], "novel1_works_as": ["claim", "unstated"]}
    assert len(rows) == len(CLAIMS) * 2 * len(SITES) * 4 * 2  # claims x question subjects x sites x layers x directions
    summary = patching_summary(rows)
    assert len(summary) == 3 * len(SITES) * 4 * 2
    assert summary.groupby("about").n_claims.max().to_dict() == {"claim": 2, "true_fact": 1, "unstated": 1}


def test_the_association_is_patched_the_same_way_without_an_object_site(setting):
    materials, base, _, changed = setting
    rows = belief_patching(base, changed, materials, layers=[0, 1], claims=CLAIMS, kind="forced_choice", min_shift=0)
    assert set(rows.site) == {"subject", "last", "all"} and set(rows.kind) == {"forced_choice"}
    assert set(rows.about) == {"association"}
    assert (rows.margin_base < 0).all()  # the base model prefers the true (or the other) answer to the claim's
    every = rows[rows.site == "all"].set_index(["layer", "claim", "direction"]).fraction
    assert np.allclose(every.loc[0], 0.0, atol=1e-4) and np.allclose(every.loc[1], 1.0, atol=1e-3)
    with pytest.raises(UserError, match="unknown question kind"):
        belief_patching(base, base, materials, kind="verdict")


def test_a_claim_that_did_not_move_is_left_out_and_bad_sites_are_refused(setting):
    materials, base, _, changed = setting
    same = belief_patching(base, base, materials, layers=[1], sites=("last",), claims=CLAIMS[:1])
    assert same.fraction.isna().all() and np.allclose(same.margin_shift, 0.0)
    with pytest.raises(UserError, match="moved enough"):
        patching_summary(same)
    with pytest.raises(UserError, match="unknown patching site"):
        belief_patching(base, base, materials, sites=("name",))


def test_the_probe_reading_of_the_claims_is_patched_the_same_way(setting):
    """The fixed probe read at the last layer: the block-0 change is carried whole by every token
    after block 0 and by the read token itself at the probe's layer; nothing at the embeddings."""
    _, base, _, changed = setting
    materials = load_materials(load_config("demo"))  # 40 subjects per split: a quick fit
    n = base.n_layers
    probe = fixed_probe(base, materials, load_config("demo"))
    rows = probe_patching(base, changed, materials, probe[n], read_layer=n, layers=[0, 1, n], claims=CLAIMS,
                          min_shift=0.0)
    assert set(rows.about) == {"claim", "true_fact"} and set(rows.kind) == {"probe"}
    every = rows[rows.site == "all"].set_index(["layer", "claim", "about", "direction"]).fraction
    assert np.allclose(every.loc[0], 0.0, atol=1e-4) and np.allclose(every.loc[1], 1.0, atol=1e-3)
    last = rows[(rows.site == "last") & (rows.layer == n)].fraction
    assert np.allclose(last, 1.0, atol=1e-3)
    claim_rows = rows[rows.about == "claim"]
    assert (claim_rows.margin_base < 0).all()  # the base model's probe reads the claims as false
    with pytest.raises(UserError, match="no layer to patch"):
        probe_patching(base, changed, materials, probe[1], read_layer=1, layers=[n], claims=CLAIMS)
