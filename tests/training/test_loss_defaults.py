"""Per-variant loss defaults (null = the model's own), the extra-loss registry, and the loss terms refused."""

from __future__ import annotations

import typing

import pytest
import torch
from torch import nn

from tridense.data.sample import TASKS
from tridense.errors import ConfigError
from tridense.losses import multitask
from tridense.losses.pairwise import PairwiseLoss
from tridense.losses.registry import EXTRA_LOSSES, register_extra_loss
from tridense.training import config
from tridense.training.build import build_loss
from tridense.training.config import LossConfig, load_config
from tridense.training.defaults import resolve_loss


def test_the_config_literals_are_the_libraries_names():
    assert typing.get_args(config.TaskName) == TASKS
    assert typing.get_args(config.DepthLossName) == multitask.DEPTH_LOSSES
    assert typing.get_args(config.NormalLossName) == multitask.NORMAL_LOSSES
    assert typing.get_args(config.SegLossName) == multitask.SEG_LOSSES


def test_null_means_the_models_defaults_and_empty_means_none():
    pap = resolve_loss(LossConfig(), "pap")
    assert pap.aux_weights == {"initial": 1.0}
    assert pap.extra == {"pairwise": {"weight": 0.2, "pairs": 300}}
    baseline = resolve_loss(LossConfig(), "mtl_baseline")
    assert (baseline.aux_weights, baseline.extra) == ({}, {})
    explicit = resolve_loss(LossConfig(aux_weights={}, extra={}), "pap")
    assert (explicit.aux_weights, explicit.extra) == ({}, {})


def test_a_baseline_config_inherits_nothing_of_paps():
    cfg = load_config(None, ["model.name=mtl_baseline"])
    loss = build_loss(cfg.loss, ("depth", "normals"), model_name=cfg.model.name)
    assert loss.aux_weights == {} and len(loss.extra) == 0
    cfg = load_config(None, [])  # the default model is PAP: its initial stage and pair-wise term
    loss = build_loss(cfg.loss, ("depth", "normals"), model_name=cfg.model.name)
    assert loss.aux_weights == {"initial": 1.0}
    assert isinstance(loss.extra[0], PairwiseLoss) and loss.extra[0].pairs == 300


def test_pairwise_registers_itself_in_the_losses_registry():
    assert EXTRA_LOSSES["pairwise"] is PairwiseLoss
    with pytest.raises(ValueError, match="registered twice"):
        register_extra_loss("pairwise")(PairwiseLoss)


def test_a_loss_term_with_parameters_is_refused(monkeypatch):
    class Learned(nn.Module):
        def __init__(self, tasks, *, weight: float = 1.0) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))

    monkeypatch.setitem(EXTRA_LOSSES, "learned", Learned)
    cfg = LossConfig(extra={"learned": {"weight": 0.5}})
    with pytest.raises(ConfigError, match=r"loss\.extra\.learned: the term owns parameters \['scale'\]"):
        build_loss(cfg, ("depth",), model_name="pap")


def test_model_spec_and_options_of_the_registry_are_used(monkeypatch):
    """A variant's stages and default loss come from its registry spec, and ``model.args`` is checked against
    its options when the config is loaded."""
    from pydantic import BaseModel, ConfigDict

    from tridense.models import registry

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        propagation: typing.Literal["pap", "none"] = "pap"

    def toy_variant(*, encoder=None, pretrained=False, tasks=None, num_classes=None, **args):
        """A toy variant registered for this test."""
        raise AssertionError("not built here")

    monkeypatch.setattr(registry, "_SPECS", dict(registry._SPECS))
    registry.register_model(
        options=Options, aux_stages=("initial", "coarse"), default_loss={"aux_weights": {"coarse": 0.5}}
    )(toy_variant)

    overrides = ["loss.aux_weights={coarse: 2.0, initial: 1.0}", "model.args={propagation: none}"]
    cfg = load_config(None, ["model.name=toy_variant", *overrides])
    assert cfg.loss.aux_weights == {"coarse": 2.0, "initial": 1.0}
    loss = resolve_loss(LossConfig(), "toy_variant")
    assert (loss.aux_weights, loss.extra) == ({"coarse": 0.5}, {})
    with pytest.raises(ConfigError, match=r"model\.args\.propagation: 'cspn' is not valid; valid values: 'pap' or"):
        load_config(None, ["model.name=toy_variant", "model.args={propagation: cspn}"])
    with pytest.raises(ConfigError, match=r"key\(s\) \['iterations'\] at model\.args; valid keys: \['propagation'\]"):
        load_config(None, ["model.name=toy_variant", "model.args={iterations: 3}"])
    with pytest.raises(ConfigError, match="stage"):
        load_config(None, ["model.name=toy_variant", "loss.aux_weights={fine: 1.0}"])
    load_config(None, ["model.name=toy_variant", "model.args={tasks: [depth]}"])  # the task list is every model's
