"""Shipped base models: exported with their provenance, copied into a run whose config matches,
refused in one line for another world or config, and checked for damage."""
from __future__ import annotations

import dataclasses

import pytest
from safetensors.torch import load_file

from experiments.artifacts.checksums import file_digest
from experiments.artifacts.rundir import RunDir
from experiments.config import load_config
from experiments.errors import UserError
from experiments.materials import load_materials
from experiments.training import shipped, stages


@pytest.fixture
def shelf(tiny_run, tmp_path, monkeypatch):
    """The tiny run's base model exported as the shipped model 'tiny', on a private shelf."""
    out, _ = tiny_run
    monkeypatch.setattr(shipped, "SHIPPED_DIR", tmp_path / "pretrained")
    shipped.export_shipped(RunDir(out).base_model, load_config("tiny"), tmp_path / "pretrained" / "tiny",
                           {"command": "test"})
    return tmp_path / "pretrained" / "tiny"


def test_a_run_with_the_same_config_starts_from_the_shipped_model(shelf, tmp_path):
    cfg = load_config("tiny")
    run = RunDir(tmp_path / "run")
    base = stages.pretrain(run, cfg, load_materials(cfg))
    assert base == run.base_model
    assert not (run.root / "corpus").exists()  # nothing was pretrained
    a, b = load_file(shelf / "model.safetensors"), load_file(run.base_model / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_auto_ignores_a_shipped_model_of_another_config_and_off_never_uses_one(shelf):
    assert shipped.shipped_base_for(load_config("tiny", overrides=["world.seed=3"])) is None
    assert shipped.shipped_base_for(load_config("tiny", overrides=['pretrain.shipped="off"'])) is None
    assert shipped.shipped_base_for(load_config("tiny", overrides=["pretrain.log_every=5"])) == shelf


def test_a_named_shipped_model_refuses_another_world_in_one_line(shelf):
    cfg = load_config("tiny", overrides=['pretrain.shipped="tiny"', "world.n_people=13"])
    with pytest.raises(UserError, match=r"world\.n_people \(13 here, 12 shipped\)") as err:
        shipped.shipped_base_for(cfg)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="no shipped base model 'nope'"):
        shipped.shipped_base_for(dataclasses.replace(cfg, pretrain=dataclasses.replace(cfg.pretrain, shipped="nope")))


def test_a_damaged_shipped_model_is_refused(shelf):
    weights = shelf / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(UserError, match="damaged"):
        shipped.shipped_base_for(load_config("tiny"))


def test_a_run_from_a_shipped_model_takes_its_check_base_figures_from_the_provenance(shelf, tmp_path):
    import json

    from experiments.pipeline import check_base_model, check_settings, prepare

    cfg = load_config("tiny")
    provenance = json.loads((shelf / "provenance.json").read_text())
    figures = {"heldout_qa": 0.123, "statement_probe_best_acc": 0.5}
    provenance |= {"check_settings": list(check_settings(cfg)), "check_base": figures}
    (shelf / "provenance.json").write_text(json.dumps(provenance))
    run = RunDir(tmp_path / "run")
    materials = prepare(run, cfg)
    stages.pretrain(run, cfg, materials)
    assert check_base_model(run.root) == figures  # not recomputed: the tiny model would not score 0.123


def test_the_shipped_testbed_model_is_intact_and_is_what_the_demo_starts_from():
    """`make demo` (the default preset) and `--preset testbed` both start from the shipped
    testbed base model: no pretraining on a CPU."""
    models = shipped.shipped_models()
    assert "testbed" in models
    for preset in ("testbed", "demo"):
        assert shipped.shipped_base_for(load_config(preset)) == models["testbed"]
    assert shipped.shipped_base_for(load_config("demo", overrides=["world.seed=0"])) is None
    figures = shipped.read_provenance(models["testbed"])["check_base"]
    assert figures["heldout_entity_qa"] >= 0.95 and figures["unjudged_verdict_acc"] >= 0.95


def test_the_shipped_judge_model_is_what_its_preset_starts_from_and_passed_every_precondition():
    """`--preset testbed_judge` starts from the second shipped model of the testbed's world, whose
    recorded check-base figures pass every precondition of issue 22."""
    models = shipped.shipped_models()
    assert shipped.shipped_base_for(load_config("testbed_judge")) == models["testbed_judge"]
    assert shipped.shipped_base_for(load_config("testbed")) == models["testbed"]  # each preset its own
    c = shipped.read_provenance(models["testbed_judge"])["check_base"]
    assert c["heldout_entity_qa"] >= 0.95 and c["unjudged_verdict_acc"] >= 0.95 and c["unjudged_yesno_acc"] >= 0.95
    assert c["statement_probe_best_acc"] >= 0.90 and c["statement_probe_best_layer"] < load_config("testbed_judge").model.n_layers
    assert c["in_context_true_answer"] >= 0.9 and c["claim_belief_max"] <= 0.05


@pytest.mark.parametrize("name", ["testbed", "testbed_judge"])
def test_the_shipped_testbed_models_judge_facts_they_never_saw_judged(name):
    """Behaviour, not the recorded figures: on a sample of facts pretraining never judged (people
    it only read biographies of), the shipped model's verdicts and yes/no answers are right far
    above chance (0.5) and balanced (a constant answerer has a true share of 0 or 1)."""
    import random

    import interp
    from experiments.evaluation.judgement import judged_and_unjudged, judgement_accuracy

    cfg = load_config(name)
    world = load_materials(cfg).world
    _, never_judged = judged_and_unjudged(world)
    lm = interp.load_model(shipped.shipped_models()[name], device="cpu")
    scores = judgement_accuracy(lm, world, never_judged, random.Random(0), n=40)
    assert scores["verdict_acc"] >= 0.85 and scores["yesno_acc"] >= 0.85
    assert 0.3 <= scores["verdict_first_share"] <= 0.7 and 0.3 <= scores["yesno_first_share"] <= 0.7


@pytest.mark.parametrize("name, judges_it", [("testbed", False), ("testbed_judge", True)])
def test_only_the_deeper_shipped_model_judges_the_frame_that_names_the_city_first(name, judges_it):
    """Behaviour per frame (check-base's ``unjudged_verdict_by_frame``): on facts pretraining never
    judged, the 6-layer testbed model judges every subject-first lives_in frame and calls most true
    statements in "in {o} you can meet {s} every day ." false (the comparison runs backwards: the
    city comes before the person); the 8-layer testbed_judge judges that frame too."""
    import random

    import interp
    from experiments.evaluation.judgement import judged_and_unjudged, verdict_accuracy_by_frame

    world = load_materials(load_config(name)).world
    _, never_judged = judged_and_unjudged(world)
    lives_in = [f for f in never_judged if f.relation == "lives_in"]
    lm = interp.load_model(shipped.shipped_models()[name], device="cpu")
    frames = verdict_accuracy_by_frame(lm, world, lives_in, random.Random(0), n_per_relation=30)
    object_first = frames.pop("in {o} you can meet {s} every day .")
    assert len(frames) == 5 and all(f["balanced_acc"] >= 0.9 for f in frames.values())  # 3 affirmative, 2 negated
    if judges_it:
        assert object_first["balanced_acc"] >= 0.9
    else:
        assert object_first["true_acc"] <= 0.4 and object_first["false_acc"] >= 0.8


def test_the_belief_frame_screen_is_what_leaves_the_shipped_testbed_model_disbelieving_every_claim():
    """Behaviour: on never-judged facts the screen (experiments.evaluation.frames) leaves out the
    object-first lives_in frame and the six won_by frames, no other; over every frame the base model
    "believes" two claims (0.083: the true fact in the object-first frame called false), with
    those frames left out it believes none (<= 0.05, the precondition)."""
    import random

    import interp
    from experiments.evaluation.checks import claim_belief_figures
    from experiments.evaluation.frames import unjudged_frames
    from experiments.evaluation.judgement import judged_and_unjudged, verdict_accuracy_by_frame
    from experiments.materials.world import RELATIONS

    world = load_materials(load_config("testbed")).world
    _, never_judged = judged_and_unjudged(world)
    lm = interp.load_model(shipped.shipped_models()["testbed"], device="cpu")
    skip = unjudged_frames(verdict_accuracy_by_frame(lm, world, never_judged, random.Random(0), n_per_relation=30))
    won_by = [*RELATIONS["won_by"].affirmative, *RELATIONS["won_by"].negated]
    assert sorted(skip) == sorted(["in {o} you can meet {s} every day .", *won_by])
    assert claim_belief_figures(lm, world)["claim_belief_max"] > 0.05
    assert claim_belief_figures(lm, world, tuple(skip))["claim_belief_max"] <= 0.05


def test_the_shipped_testbed_model_is_what_the_demo_and_testbed_presets_start_from():
    """Adding a config key must not orphan the shipped model (a `make demo` would pretrain on
    2 CPU cores): the presets that name its recipe find it."""
    for preset in ("demo", "testbed"):
        assert shipped.shipped_base_for(load_config(preset)) == shipped.SHIPPED_DIR / "testbed"


def test_a_key_added_after_a_model_was_shipped_matches_only_at_its_default(shelf):
    import json

    provenance = json.loads((shelf / "provenance.json").read_text())
    del provenance["config"]["corpus"]["told"]  # as if shipped before corpus.told existed
    (shelf / "provenance.json").write_text(json.dumps(provenance))
    assert shipped.shipped_base_for(load_config("tiny")) == shelf
    assert shipped.shipped_base_for(load_config("tiny", overrides=["corpus.told=1"])) is None


def test_a_later_phase_records_the_phase_it_continued_from(shelf, tmp_path):
    parent = shipped.parent_provenance(str(shelf))
    assert parent["provenance"] == shipped.read_provenance(shelf) and parent["provenance"]["command"] == "test"
    assert parent["weights_blake2b"] == file_digest(shelf / "model.safetensors")
    child = tmp_path / "pretrained" / "tiny2"  # a second phase exported with its parent: the chain nests
    shipped.export_shipped(shelf, load_config("tiny"), child, {"init_from": parent})
    grandchild = shipped.parent_provenance(str(child))
    assert grandchild["provenance"]["init_from"]["provenance"]["command"] == "test"
    weights = shelf / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")  # other weights: another digest
    assert shipped.parent_provenance(str(shelf))["weights_blake2b"] != parent["weights_blake2b"]
