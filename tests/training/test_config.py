"""Config: defaults, files with a base, overrides, and errors that list what is valid."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tridense.errors import ConfigError
from tridense.training.config import Config, dump_config, load_config, parse_overrides

REPO = Path(__file__).resolve().parents[2]


def test_default_yaml_is_the_builtin_default():
    """configs/default.yaml documents exactly what `tridense train` uses without arguments (loss.aux_weights
    and loss.extra null: the model's own defaults)."""
    on_disk = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    assert on_disk == Config().to_dict()
    assert load_config(REPO / "configs" / "default.yaml") == Config()


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


@pytest.mark.parametrize(
    ("override", "key", "valid"),
    [
        ("optim.optimizer=adamm", "optim.optimizer", "'adam', 'adamw' or 'sgd'"),
        ("optim.schedule=linear", "optim.schedule", "'constant', 'poly', 'step' or 'cosine'"),
        ("loss.depth=l2", "loss.depth", "'berhu', 'l1' or 'silog'"),
        ("loss.normals=l2", "loss.normals", "'l1' or 'cosine'"),
        ("loss.semseg=dice", "loss.semseg", "'ce' or 'focal'"),
        ("eval.reduction=mean", "eval.reduction", "'image' or 'pixel'"),
        ("trainer.precision=bf16", "trainer.precision", "'auto', '32-true'"),
        ("checkpoint.mode=maximum", "checkpoint.mode", "'min' or 'max'"),
        ("data.tasks=[depth,normal]", r"data.tasks\[1\]", "'depth', 'normals' or 'semseg'"),
    ],
)
def test_enumerated_values_are_checked_at_load_time(override, key, valid):
    with pytest.raises(ConfigError, match=rf"{key}: .* is not valid; valid values: {valid}"):
        load_config(None, [override])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.name=papp", r"model\.name: 'papp' is not valid; valid values: \[.*'mtl_baseline'"),
        ("data.dataset=nyu", r"data\.dataset: 'nyu' is not valid; valid values: \[.*'nyuv2_labeled'"),
        ("eval.crop=eigen", r"eval\.crop: 'eigen' is not valid; valid values: \[.*'eigen_nyu'"),
        ("loss.extra={pairwize: {}}", r"loss\.extra: 'pairwize' is not valid; valid values: \['pairwise'"),
        ("loss.extra={pairwise: {pears: 3}}", r"loss\.extra\.pairwise: .*pears"),
        ("loss.aux_weights={final: 1.0}", r"model 'pap' has no auxiliary stage 'final'; its stages: \['initial'\]"),
        ("trainer.strategy=dpp", r"trainer\.strategy: 'dpp' is not valid; valid values: \[.*'ddp'"),
        ("model.args={tasks: [depht]}", r"model\.args\.tasks: 'depht' is not valid"),
        ("trainer.max_time=1", r"trainer\.max_time: got the number 1; quote it"),
        ("trainer.max_time='00:01:00'", r"trainer\.max_time: '00:01:00' is not of the form DD:HH:MM:SS"),
        ("trainer.max_time=1:00:00", r"got the number 3600; quote it"),
    ],
)
def test_registered_names_are_checked_at_load_time(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_baseline_has_no_auxiliary_stage():
    with pytest.raises(ConfigError, match="model 'mtl_baseline' has no auxiliary stage 'initial'; its stages: \\[\\]"):
        load_config(None, ["model.name=mtl_baseline", "loss.aux_weights={initial: 1.0}"])


def test_optional_nested_sections_are_validated_like_required_ones():
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['patern'\] at optim\.groups\.heads; valid keys"):
        load_config(None, ["optim.groups={heads: {patern: 'heads.*'}}"])
    with pytest.raises(ConfigError, match=r"optim\.groups\.heads\.lr: input should be a valid number"):
        load_config(None, ["optim.groups={heads: {pattern: 'heads.*', lr: fast}}"])
    with pytest.raises(ConfigError, match=r"data\.augment\.scale: list should have at least 2 items"):
        load_config(None, ["data.augment.scale=[1.5]"])
    with pytest.raises(ConfigError, match=r"loss\.weights\.depth: input should be a valid number"):
        load_config(None, ["loss.weights={depth: heavy}"])
    with pytest.raises(ConfigError, match=r"trainer\.max_steps: input should be a valid integer.*got True"):
        load_config(None, ["trainer.max_steps=true"])
    assert load_config(None, ["data.augment=null"]).data.augment.flip is True  # null section: its defaults


def test_yaml_floats_nulls_and_empty_mappings(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "optim:\n  lr: 1e-3\n  encoder_lr: 1E-4\ndata:\n  split_args: {train: {length: 3}}\n"
        "loss:\n  extra: {pairwise: {pairs: 5}}\n  aux_weights: {initial: 0.5}\n"
    )
    (tmp_path / "exp.yaml").write_text("_base_: base.yaml\ndata:\n  split_args: null\nloss:\n  extra: {}\n")
    cfg = load_config(tmp_path / "exp.yaml")
    assert cfg.optim.lr == pytest.approx(1e-3) and isinstance(cfg.optim.lr, float)  # YAML 1.1 read a string
    assert cfg.optim.encoder_lr == pytest.approx(1e-4)
    assert cfg.data.split_args == {}  # null clears the base's mapping
    assert cfg.loss.extra == {}  # so does {}: "no extra term"
    assert cfg.loss.aux_weights == {"initial": 0.5}
    cfg = load_config(tmp_path / "exp.yaml", ["loss.aux_weights=null", "loss.extra=null"])
    assert (cfg.loss.aux_weights, cfg.loss.extra) == (None, None)  # the model's defaults


def test_cli_exit_status_two_for_a_bad_value(capsys):
    from tridense.cli import main

    assert main(["train", "optim.optimizer=adamm"]) == 2
    err = capsys.readouterr().err
    assert "optim.optimizer: 'adamm' is not valid; valid values: 'adam', 'adamw' or 'sgd'" in err
    assert "Traceback" not in err
