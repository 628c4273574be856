"""Patching on imported materials (the paper's claim packs) on a random-weight Qwen2 saved
locally with a real BPE tokenizer and a ChatML template: MCQ items are read as the belief scoring
asks them (chat template, MCQ instruction, each option written as its reply) at the token where
the two replies first differ; a stand-in checkpoint whose change is known gives the fractions it
implies; `neglect patch` runs on an imported run (yes/no and probe), and what cannot be patched
is refused in one line."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import interp
from experiments.causal import belief_patching, default_sites, probe_patching
from experiments.errors import UserError
from experiments.evaluation.belief import score_questions
from experiments.evaluation.scoring import McqFormat, render
from experiments.materials.imported import ImportedMaterials
from interp.logprobs import prompt_ids
from tests.hub_models import corpus_texts, save_qwen2
from tests.experiments.causal.stand_ins import block0_stand_in
from tests.paths import FIXTURES, REPO

LAYOUT = FIXTURES / "paper_layout"
CLAIMS, DOCS = LAYOUT / "claims", LAYOUT / "documents"


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("imported_patch")
    path = save_qwen2(root / "qwen", corpus_texts(LAYOUT, REPO / "experiments" / "materials" / "data"), context=256)
    base = interp.load_model(path, device="cpu")
    changed = block0_stand_in(path, 0.5)  # a stand-in for a checkpoint: only block 0's MLP moved
    return path, ImportedMaterials(CLAIMS, DOCS), base, changed


def mcq_items(materials, base):
    return [q for q in materials.belief_questions(base.tokenizer) if q.kind == "yesno"]


def test_mcq_margins_are_read_where_the_replies_first_differ(setting):
    """The margin is logit(believer's reply token) - logit(the other's) after the chat-rendered
    prompt and the replies' shared start ``{"answer": "``, as a plain forward pass reads it."""
    _, materials, base, changed = setting
    rows = belief_patching(base, changed, materials, layers=[0], min_shift=0.0)
    assert set(rows.site) == {"last", "all"} == set(default_sites(materials))
    assert set(rows.about) == {"claim", "alternative"}
    mcq, tok = McqFormat(), base.tokenizer
    want = {}
    for q in mcq_items(materials, base):
        yes, no = tok([mcq.reply("yes"), mcq.reply("no")], add_special_tokens=False)["input_ids"]
        k = next(i for i, (a, b) in enumerate(zip(yes, no)) if a != b)
        assert k > 0 and yes[:k] == no[:k]  # the replies share a start, so it is read after it
        ids = prompt_ids(tok, [render(tok, mcq.prompt(q.prompt))])[0] + yes[:k]
        with torch.no_grad():
            logits = base.model(input_ids=torch.tensor([ids])).logits[0, -1]
        margin = float(logits[yes[k]] - logits[no[k]]) * (1 if q.believer == 0 else -1)
        want.setdefault((q.claim, q.about), []).append(margin)
    got = rows.groupby(["claim", "about"]).margin_base.first()
    assert len(want) == len(got) == 4
    for key, margins in want.items():
        assert got[key] == pytest.approx(np.mean(margins), abs=1e-4)


def test_one_token_replies_give_the_belief_scorings_margin(setting):
    """With replies that are the options themselves (one token each), the margin at the deciding
    token is the scoring's log-probability difference of the two options."""
    _, materials, base, changed = setting
    mcq = McqFormat(answer="{option}")
    rows = belief_patching(base, changed, materials, layers=[0], min_shift=0.0, mcq=mcq)
    scored = score_questions(base, mcq_items(materials, base), mcq=mcq)
    scored["margin"] = np.where(scored.believer == 0, scored.lead, -scored.lead)
    want = scored.groupby(["claim", "about"]).margin.mean()
    got = rows.groupby(["claim", "about"]).margin_base.first()
    assert np.allclose(got[want.index], want, atol=1e-3)


def test_a_change_in_block_0_is_carried_by_every_token_after_it(setting):
    _, materials, base, changed = setting
    n = base.n_layers
    rows = belief_patching(base, changed, materials, min_shift=0.0)
    assert (rows.margin_shift.abs() > 1e-3).all()
    every = rows[rows.site == "all"].set_index(["claim", "about", "layer", "direction"]).fraction
    assert np.allclose(every.xs(0, level="layer"), 0.0, atol=1e-3)  # the embeddings did not change
    for layer in range(1, n + 1):
        assert np.allclose(every.xs(layer, level="layer"), 1.0, atol=1e-3)
    last = rows[rows.site == "last"].set_index(["claim", "about", "layer", "direction"]).fraction
    assert np.allclose(last.xs(n, level="layer"), 1.0, atol=1e-3)  # after the final norm: the answer
    assert np.allclose(last.xs(0, level="layer"), 0.0, atol=1e-3)
    assert not np.allclose(last.xs(1, level="layer"), 1.0, atol=1e-2)  # one token after block 0 is not all of it


def test_the_probe_reads_the_claim_packs_statements(setting):
    _, materials, base, changed = setting
    from experiments.evaluation.readout import fit_probes

    statements = materials.probe_statements()
    acts = interp.residuals(base, [s.text for s in statements]).numpy()
    probe = fit_probes(acts, statements)[1]
    rows = probe_patching(base, changed, materials, probe, read_layer=1, min_shift=0.0)
    assert set(rows.about) == {"claim", "true_fact"} and set(rows.site) == {"last", "all"}
    assert set(rows.layer) == {0, 1}
    every = rows[rows.site == "all"].set_index(["claim", "about", "layer", "direction"]).fraction
    assert np.allclose(every.xs(0, level="layer"), 0.0, atol=1e-3)
    assert np.allclose(every.xs(1, level="layer"), 1.0, atol=1e-3)


def test_what_a_claim_pack_cannot_patch_is_one_line(setting):
    _, materials, base, changed = setting
    with pytest.raises(UserError, match="site 'subject' needs claims whose subject is known"):
        belief_patching(base, changed, materials, layers=[1], sites=("subject",), min_shift=0.0)
    with pytest.raises(UserError, match="no forced_choice or token_association belief questions"):
        belief_patching(base, changed, materials, layers=[1], kind="forced_choice")
    same = McqFormat(answer='{"answer": "maybe"}{option}')  # replies that differ only after a shared start
    rows = belief_patching(base, changed, materials, layers=[1], min_shift=0.0, mcq=same)
    assert len(rows) and set(rows.about) == {"claim", "alternative"}
    with pytest.raises(UserError, match="their two answers never differ"):
        belief_patching(base, changed, materials, layers=[1], mcq=McqFormat(answer="always"))


def neglect(*args, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, "-m", "experiments", *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=cwd)


def test_neglect_patch_on_an_imported_run(setting, tmp_path):
    path = setting[0]
    out = tmp_path / "run"
    ran = neglect("run", "--preset", "tiny", "--model", str(path), "--claims", str(CLAIMS), "--docs", str(DOCS),
                  "--set", 'conditions=["plain", "negated"]', "--set", "finetune.lr=0.05", "--out", str(out))
    assert ran.returncode == 0, ran.stderr[-2000:]
    patched = neglect("patch", str(out), "--min-shift", "0")
    assert patched.returncode == 0, patched.stderr[-2000:]
    table = pd.read_csv(out / "results" / "patching.csv")
    n = int(table.layer.max())
    assert set(table.condition) == {"plain", "negated"} and set(table.site) == {"last", "all"}
    assert set(table.about) == {"claim", "alternative"} and set(table.claim) == {"harbor_clock", "violet_comet"}
    assert len(table) == 2 * 2 * 2 * 2 * (n + 1) * 2  # conditions x claims x about x sites x layers x directions
    assert "plain, step 6, yes/no rejecting an alternative (a claim pack's MCQ items): the last tokens" in patched.stdout
    assert (out / "figures" / "belief_patching.html").is_file()
    probe = neglect("patch", str(out), "--min-shift", "0", "--kind", "probe", "--condition", "plain")
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert set(pd.read_csv(out / "results" / "patching_probe.csv").about) == {"claim", "true_fact"}
    refused = neglect("patch", str(out), "--kind", "forced_choice")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "neglect: error: the materials have no forced_choice or token_association belief questions to patch"]


def test_steering_a_claim_packs_items_edits_their_statement_or_question(setting):
    """Control statements asked as MCQ yes/no items and the packs' MCQ items: the steered tokens are
    the statement's (or the question's) own, inside the chat-rendered prompt; rows for both kinds."""
    from experiments.causal import steering_summary, truth_steering
    from experiments.causal.reading import read_question, token_span
    from experiments.materials.questions import control_questions

    _, materials, base, _ = setting
    tok, mcq = base.tokenizer, McqFormat()
    held_out = [s for s in materials.probe_statements() if s.split == "test"]
    questions = control_questions(held_out, None, per_cell=3) + mcq_items(materials, base)
    for q in questions:
        reading = read_question(tok, q, 0, 1, mcq)
        span = token_span(tok, reading.text, q.statement or q.prompt.user)
        assert tok.decode([reading.ids[i] for i in span]).strip() == (q.statement or q.prompt.user).strip()
    rows = truth_steering(base, materials, np.ones(base.d_model, dtype=np.float32), layer=1, alphas=(1.0,),
                          n_random=1)
    assert set(rows.kind) == {"control", "claim"} and set(rows[rows.kind == "claim"].about) == {"claim", "alternative"}
    summary = steering_summary(rows)
    assert set(summary[summary.kind == "claim"].units) == {"claim"}


def test_relative_paths_are_recorded_absolute_and_old_runs_resume(setting, tmp_path):
    """`--model`, `--claims` and `--docs` given relative to where `neglect run` starts are recorded
    absolute, so the run's later commands work from another directory; a run that recorded them
    relative (before) resumes from where it was started."""
    import json
    import shutil

    here = tmp_path / "here"
    shutil.copytree(setting[0], here / "qwen")
    shutil.copytree(LAYOUT, here / "layout")
    args = ["run", "--preset", "tiny", "--model", "qwen", "--claims", "layout/claims", "--docs", "layout/documents",
            "--set", 'conditions=["plain"]', "--set", "finetune.steps=2", "--set", "finetune.n_checkpoints=2",
            "--out", "run"]
    ran = neglect(*args, cwd=here)
    assert ran.returncode == 0, ran.stderr[-2000:]
    config = json.loads((here / "run" / "config.json").read_text())
    assert config["base_model"] == str(here / "qwen")
    assert config["materials"]["claims"] == str(here / "layout" / "claims")
    elsewhere = neglect("patch", str(here / "run"), "--min-shift", "0", cwd=tmp_path)
    assert elsewhere.returncode == 0, elsewhere.stderr[-2000:]
    config.update(base_model="qwen", materials={**config["materials"], "claims": "layout/claims",
                                                "docs": "layout/documents"})
    (here / "run" / "config.json").write_text(json.dumps(config))  # as an older `neglect run` recorded it
    resumed = neglect(*args, cwd=here)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    moved = neglect(*[a if a != "qwen" else str(setting[0]) for a in args], cwd=here)  # another model: refused
    assert moved.returncode == 2 and "holds a run with a different config" in moved.stderr
