import json

import pytest

from experiments.config import RunConfig, load_config
from experiments.errors import UserError


def test_presets_and_overrides_layer():
    cfg = load_config("tiny", overrides=["finetune.steps=9", 'conditions=["plain"]'])
    assert isinstance(cfg, RunConfig)
    assert cfg.finetune.steps == 9 and cfg.conditions == ("plain",)
    assert cfg.world.n_people == load_config("tiny").world.n_people


def test_config_file_is_layered(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"pretrain": {"lr": 1}}))
    assert load_config("demo", path).pretrain.lr == 1.0


@pytest.mark.parametrize("override, message", [
    ("finetune.stpes=3", "unknown config key 'finetune.stpes'"),
    ("finetune.steps=ten", "config key 'finetune.steps' must be int"),
    ("seeds=3", "config key 'seeds' must be a list"),
    ("nonsense", "must look like section.key=value"),
    ('eval.belief_frames="some"', r"config key 'eval.belief_frames' must be one of \['all', 'judged'\]"),
])
def test_bad_config_is_a_user_error(override, message):
    with pytest.raises(UserError, match=message):
        load_config("demo", overrides=[override])


def test_unknown_preset():
    with pytest.raises(UserError, match="unknown preset 'huge'"):
        load_config("huge")


@pytest.mark.parametrize("name, content, key", [
    ("c.toml", "[pretrain]\nlr = nan\n", "pretrain.lr"),
    ("c.toml", "[finetune]\nlora_alpha = -inf\n", "finetune.lora_alpha"),
    ("c.toml", "[world]\nqa_heldout_fraction = +inf\n", "world.qa_heldout_fraction"),
    ("c.json", '{"eval": {"probe_C": Infinity}}', "eval.probe_C"),
    ("c.json", '{"stability": {"weights": [0.5, NaN]}}', "stability.weights"),
    ("c.json", '{"finetune": {"background_fraction": "nan"}}', "finetune.background_fraction"),
])
def test_non_finite_numbers_in_config_files_are_refused(name, content, key, tmp_path):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(UserError, match=rf"config key '{key}' must be a finite number; got"):
        load_config("tiny", path)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "nan", "inf", "-inf", "1e999"])
def test_non_finite_overrides_are_refused_and_finite_ones_kept(text):
    with pytest.raises(UserError, match="config key 'pretrain.lr' must be a finite number"):
        load_config("tiny", overrides=[f"pretrain.lr={text}"])
    assert load_config("tiny", overrides=["pretrain.lr=2", "stability.weights=[0, 1e-3]"]).pretrain.lr == 2.0


def test_a_run_config_json_with_nan_is_refused_naming_the_key():
    from experiments.config import build_config

    with pytest.raises(UserError, match="'eval.probe_C' must be a finite number"):
        build_config({"eval": {"probe_C": float("nan")}})


def test_finetune_precision_is_validated_and_reaches_the_training_loop(tiny_run, tmp_path, monkeypatch):
    from experiments.artifacts.rundir import RunDir
    from experiments.materials import load_materials
    from experiments.training import stages

    with pytest.raises(UserError, match="finetune.precision"):
        load_config("tiny", overrides=['finetune.precision="fp16"'])
    given = []
    real_train = stages.train
    monkeypatch.setattr(stages, "train", lambda model, batches, optim, **kw: given.append(optim.precision)
                        or real_train(model, batches, optim, **kw))
    for precision in ("fp32", "bf16"):
        cfg = load_config("tiny", overrides=[f'finetune.precision="{precision}"', "finetune.steps=2",
                                             "finetune.n_checkpoints=2"])
        stages.finetune(RunDir(tmp_path / precision), cfg, load_materials(cfg), RunDir(tiny_run[0]).base_model,
                        "plain", 0)
    assert given == ["fp32", "bf16"]


def test_the_testbed_trains_its_fact_layers_and_another_model_every_parameter(tmp_path):
    pattern = load_config("testbed").finetune.trainable
    assert pattern and load_config("demo").finetune.trainable == pattern
    assert load_config("demo", overrides=['base_model="some/model"']).finetune.trainable == ""
    assert load_config("demo", overrides=['base_model="m"', 'finetune.trainable="mlp"']).finetune.trainable == "mlp"
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"base_model": "m", "finetune": {"trainable": "attn"}}))
    assert load_config("demo", path).finetune.trainable == "attn"  # a file's pattern is the run's own too
    assert load_config("demo", overrides=['finetune.trainable=""']).finetune.trainable == ""


def test_control_items_per_cell_reach_the_demo_and_are_range_checked():
    assert load_config("demo").eval.control_per_cell == load_config("testbed").eval.control_per_cell == 64
    assert load_config("demo").eval.max_subjects == 40
    assert load_config("tiny").eval.control_per_cell == 16
    with pytest.raises(UserError, match="eval.control_per_cell"):
        load_config("tiny", overrides=["eval.control_per_cell=0"])
