"""Optimisers, learning-rate schedules and gradient clipping for any set of named parameters.

Every training method builds its optimisers here, one per set of parameters it trains (a dense model: one;
a generator and a critic: two). Parameters are split into groups by name pattern (fnmatch, first match
wins): ``optim.groups`` names them (``{encoder: {pattern: "encoder.*", lr: 2e-4}}``), ``optim.encoder_lr`` is
sugar for that encoder group, and the parameters no pattern matches form the group ``rest`` at ``optim.lr``.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from tridense.errors import ConfigError, TridenseError
from tridense.training.config import GroupConfig, OptimConfig

#: The encoder group that ``optim.encoder_lr`` configures (and that exists, at ``lr``, without it).
ENCODER_PATTERN = "encoder.*"


def group_specs(cfg: OptimConfig) -> dict[str, GroupConfig]:
    """The parameter groups of ``cfg`` in matching order: the encoder group, then ``cfg.groups``."""
    specs = {"encoder": GroupConfig(pattern=ENCODER_PATTERN, lr=cfg.encoder_lr)}
    for name, group in cfg.groups.items():
        if name == "encoder" and cfg.encoder_lr is not None and group.lr is not None:
            raise ConfigError("optim.encoder_lr and optim.groups.encoder.lr both set the encoder's rate; keep one")
        if name == "encoder" and group.lr is None:
            group = group.model_copy(update={"lr": cfg.encoder_lr})
        specs[name] = group
    if "rest" in specs:
        raise ConfigError("optim.groups: 'rest' is the name of the unmatched parameters; choose another name")
    return specs


def parameter_groups(
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    cfg: OptimConfig,
    groups: Mapping[str, GroupConfig] | None = None,
) -> list[dict[str, Any]]:
    """Trainable parameters split into named groups (see the module docstring); empty groups are left out.

    ``groups`` (e.g. a method's own) replaces ``cfg.groups``. A configured group whose patterns match no
    parameter at all is a ``ConfigError`` (a typo would otherwise train everything at the default rate).
    """
    if groups is not None:
        cfg = cfg.model_copy(update={"groups": dict(groups)})
    specs = group_specs(cfg)
    named = list(named_parameters)
    members: dict[str, list[nn.Parameter]] = {name: [] for name in [*specs, "rest"]}
    matched: set[str] = set()
    for pname, param in named:
        group = next((g for g, spec in specs.items() if _matches(pname, spec.patterns)), "rest")
        matched.add(group)
        if param.requires_grad:
            members[group].append(param)
    unmatched = [g for g in cfg.groups if g not in matched]
    if unmatched:
        examples = [n for n, _ in named][:8]
        raise ConfigError(f"optim.groups {unmatched} match no parameter; names look like {examples}")
    out = []
    for name, params in members.items():
        if not params:
            continue
        spec = specs.get(name)
        group: dict[str, Any] = {"params": params, "name": name, "lr": cfg.lr}
        if spec is not None and spec.lr is not None:
            group["lr"] = spec.lr
        if spec is not None and spec.weight_decay is not None:
            group["weight_decay"] = spec.weight_decay
        if spec is not None and spec.grad_clip is not None:
            group["grad_clip"] = spec.grad_clip
        out.append(group)
    if not out:
        raise TridenseError("every parameter is frozen: nothing to train (check init.freeze)")
    return out


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def build_optimizer(
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    cfg: OptimConfig,
    *,
    groups: Mapping[str, GroupConfig] | None = None,
    precision: str = "32-true",
) -> torch.optim.Optimizer:
    """The optimiser of ``cfg`` over the trainable ``named_parameters``, in groups by name pattern
    (``groups``, when given, replaces ``cfg.groups``).

    Adam and AdamW use the fused kernels (CPU and CUDA: every parameter updated in one pass, ~10 % of a CPU
    step) except under ``16-mixed``, whose grad scaler would unscale inside them, after clipping.
    """
    param_groups = parameter_groups(named_parameters, cfg, groups)
    fused = precision != "16-mixed" and all(p.device.type in ("cpu", "cuda") for g in param_groups for p in g["params"])
    if cfg.optimizer == "adam":
        return torch.optim.Adam(param_groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(param_groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
    return torch.optim.SGD(param_groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def lr_factor(step: int, total: float, cfg: OptimConfig, clock: float = 0.0) -> float:
    """Learning-rate multiplier at optimisation ``step`` of ``total``: linear warm-up, then the schedule.

    ``clock`` is the fraction of the time budget spent (0 when there is none); the decay's progress is the
    larger of it and the step fraction (``OptimConfig.anneal_by_time``). ``total`` may be infinite (no step
    limit): then only the clock decays.
    """
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "step":
        return cfg.gamma ** ((step - cfg.warmup_steps) // max(cfg.step_every, 1))
    span = max(total - cfg.warmup_steps, 1)
    progress = min(max((step - cfg.warmup_steps) / span, clock, 0.0), 1.0)
    floor = cfg.min_lr_ratio
    if cfg.schedule == "poly":
        return floor + (1 - floor) * (1 - progress) ** cfg.poly_power
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))  # cosine


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: float, clock: Callable[[], float]
) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up then ``cfg.schedule`` per call of ``scheduler.step()`` (one per optimisation step of this
    optimiser; its count is the scheduler's own, saved with it), decaying over ``total_steps`` and ``clock()``
    (fraction of the time budget spent)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, cfg, clock()))


def clip_grad_norm(optimizer: torch.optim.Optimizer, max_norm: float | None) -> torch.Tensor | None:
    """Clip the gradients of ``optimizer``'s parameters to a global L2 norm of ``max_norm`` (None: off).

    A parameter group with its own ``grad_clip`` (``optim.groups.NAME.grad_clip``) is clipped by its own norm
    and left out of the global one. Returns the global norm before clipping (None when nothing is clipped
    globally). Called by every training method right before each optimiser step
    (:meth:`tridense.training.base.MethodModule.on_before_optimizer_step`), under automatic and manual
    optimisation alike, after a grad scaler has unscaled the gradients.
    """
    rest = []
    for group in optimizer.param_groups:
        params = [p for p in group["params"] if p.grad is not None]
        if group.get("grad_clip") is None:
            rest.extend(params)
        elif params:
            torch.nn.utils.clip_grad_norm_(params, group["grad_clip"])
    if not max_norm or not rest:
        return None
    return torch.nn.utils.clip_grad_norm_(rest, max_norm)

