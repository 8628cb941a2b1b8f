"""Optimisers, parameter groups by name pattern, schedules and clipping for any set of named parameters."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tridense.errors import ConfigError, TridenseError
from tridense.training.config import GroupConfig, OptimConfig, from_dict
from tridense.training.optim import build_optimizer, build_scheduler, clip_grad_norm, lr_factor, parameter_groups


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(2, 2)
        self.heads = nn.ModuleDict({"depth": nn.Linear(2, 1), "semseg": nn.Linear(2, 3)})
        self.fuse = nn.Linear(2, 2)


def _groups(net: nn.Module, **optim) -> dict[str, dict]:
    cfg = from_dict(OptimConfig, optim)
    return {g["name"]: g for g in parameter_groups(net.named_parameters(), cfg)}


def _count(group: dict) -> int:
    return sum(p.numel() for p in group["params"])


def test_default_groups_are_the_encoder_and_the_rest():
    net = Net()
    groups = _groups(net)
    assert list(groups) == ["encoder", "rest"]
    assert groups["encoder"]["lr"] == groups["rest"]["lr"] == pytest.approx(2e-3)
    assert _count(groups["encoder"]) == 6
    assert _count(groups["rest"]) == 3 + 9 + 6
    groups = _groups(net, encoder_lr=1e-4)  # the sugar of existing configs
    assert groups["encoder"]["lr"] == pytest.approx(1e-4)


def test_groups_by_pattern_first_match_wins():
    net = Net()
    groups = _groups(
        net,
        groups={
            "depth": {"pattern": "heads.depth.*", "lr": 1e-2, "weight_decay": 0.0},
            "heads": {"pattern": ["heads.*", "fuse.weight"], "lr": 1e-3},
        },
    )
    assert list(groups) == ["encoder", "depth", "heads", "rest"]
    assert (_count(groups["depth"]), groups["depth"]["lr"], groups["depth"]["weight_decay"]) == (3, 1e-2, 0.0)
    assert (_count(groups["heads"]), groups["heads"]["lr"]) == (9 + 4, 1e-3)
    assert "weight_decay" not in groups["heads"]  # the optimiser's default applies
    assert _count(groups["rest"]) == 2  # fuse.bias
    groups = _groups(net, groups={"encoder": {"pattern": "encoder.weight", "lr": 0.5}})  # redefines the encoder
    assert (_count(groups["encoder"]), groups["encoder"]["lr"]) == (4, 0.5)
    # A method's own groups replace the config's.
    opt = build_optimizer(
        net.named_parameters(), from_dict(OptimConfig, {"groups": {"x": {"pattern": "nothing"}}}),
        groups={"fuse": GroupConfig(pattern="fuse.*", lr=0.25)},
    )
    assert [(g["name"], g["lr"]) for g in opt.param_groups] == [("encoder", 2e-3), ("fuse", 0.25), ("rest", 2e-3)]


def test_group_errors_are_plain():
    net = Net()
    with pytest.raises(ConfigError, match=r"optim.groups \['decoder'\] match no parameter; names look like"):
        _groups(net, groups={"decoder": {"pattern": "decoder.*"}})
    with pytest.raises(ConfigError, match="keep one"):
        _groups(net, encoder_lr=1e-4, groups={"encoder": {"pattern": "encoder.*", "lr": 1e-3}})
    with pytest.raises(ConfigError, match="'rest' is the name"):
        _groups(net, groups={"rest": {"pattern": "fuse.*"}})
    for p in net.parameters():
        p.requires_grad_(False)
    with pytest.raises(TridenseError, match="every parameter is frozen"):
        _groups(net)


def test_frozen_parameters_are_left_out():
    net = Net()
    net.encoder.requires_grad_(False)
    assert list(_groups(net)) == ["rest"]


@pytest.mark.parametrize(("name", "cls"), [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam)])
def test_adam_is_fused_except_under_fp16(name, cls):
    cfg = OptimConfig(optimizer=name)
    opt = build_optimizer(Net().named_parameters(), cfg, precision="bf16-mixed")
    assert isinstance(opt, cls) and opt.defaults["fused"] is True
    assert not build_optimizer(Net().named_parameters(), cfg, precision="16-mixed").defaults["fused"]
    sgd = build_optimizer(Net().named_parameters(), OptimConfig(optimizer="sgd", momentum=0.5))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.5


def test_scheduler_counts_its_own_steps_and_decays_on_the_clock_without_a_step_limit():
    cfg = OptimConfig(warmup_steps=0, schedule="poly", poly_power=1.0, lr=1.0)
    opt = build_optimizer(Net().named_parameters(), cfg)
    clock = {"t": 0.0}
    sched = build_scheduler(opt, cfg, 10, lambda: clock["t"])
    for _ in range(5):
        opt.step()
        sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(0.5)
    opt = build_optimizer(Net().named_parameters(), cfg)
    sched = build_scheduler(opt, cfg, math.inf, lambda: clock["t"])  # no step limit: only time decays
    clock["t"] = 0.25
    opt.step()
    sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(0.75)
    assert lr_factor(10**6, math.inf, cfg) == pytest.approx(1.0)


def test_clip_grad_norm_clips_the_optimisers_parameters_only():
    net = Net()
    opt = torch.optim.SGD(net.encoder.parameters(), lr=0.1)
    for p in net.parameters():
        p.grad = torch.full_like(p, 3.0)
    before = clip_grad_norm(opt, 1.0)
    assert float(before) == pytest.approx(3.0 * math.sqrt(6))
    assert float(torch.cat([p.grad.flatten() for p in net.encoder.parameters()]).norm()) == pytest.approx(1.0)
    assert torch.all(net.fuse.weight.grad == 3.0)  # another optimiser's parameters are untouched
    assert clip_grad_norm(opt, None) is None
