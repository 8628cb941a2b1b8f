"""Config: defaults, files with a base, overrides, and errors that list what is valid."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tridense.errors import ConfigError
from tridense.training.config import Config, dump_config, load_config, parse_overrides

REPO = Path(__file__).resolve().parents[2]


def test_default_yaml_is_the_builtin_default():
    """configs/default.yaml documents exactly what `tridense train` uses without arguments."""
    on_disk = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    assert on_disk == Config().to_dict()


def test_overrides_parse_yaml_values():
    cfg = load_config(None, ["trainer.max_steps=12", "data.size=[32,48]", "model.pretrained=false", "optim.lr=2e-3"])
    assert cfg.trainer.max_steps == 12
    assert cfg.data.size == [32, 48]
    assert cfg.model.pretrained is False
    assert cfg.optim.lr == pytest.approx(2e-3)
    assert parse_overrides(["a.b.c=x"]) == {"a": {"b": {"c": "x"}}}


def test_base_file_and_one_level_only(tmp_path):
    (tmp_path / "base.yaml").write_text("trainer:\n  max_steps: 5\noptim:\n  lr: 0.5\n")
    (tmp_path / "exp.yaml").write_text("_base_: base.yaml\noptim:\n  lr: 0.1\n")
    cfg = load_config(tmp_path / "exp.yaml")
    assert cfg.trainer.max_steps == 5 and cfg.optim.lr == pytest.approx(0.1)
    (tmp_path / "deep.yaml").write_text("_base_: exp.yaml\n")
    with pytest.raises(ConfigError, match="one level"):
        load_config(tmp_path / "deep.yaml")


def test_unknown_keys_list_the_valid_ones():
    with pytest.raises(ConfigError, match=r"valid keys: \[.*max_steps"):
        load_config(None, ["trainer.max_stepz=3"])
    with pytest.raises(ConfigError, match="unknown config key"):
        load_config(None, ["nonsense=1"])


def test_wrong_types_are_named():
    with pytest.raises(ConfigError, match=r"trainer\.max_steps"):
        load_config(None, ["trainer.max_steps=many"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["trainer.max_steps"])
    with pytest.raises(ConfigError, match="not found"):
        load_config("/no/such/config.yaml")


def test_dump_round_trip(tmp_path):
    cfg = load_config(None, ["seed=7", "data.augment.rotation=4.5"])
    (tmp_path / "c.yaml").write_text(dump_config(cfg))
    assert load_config(tmp_path / "c.yaml") == cfg
