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
])
def test_bad_config_is_a_user_error(override, message):
    with pytest.raises(UserError, match=message):
        load_config("demo", overrides=[override])


def test_unknown_preset():
    with pytest.raises(UserError, match="unknown preset 'huge'"):
        load_config("huge")
