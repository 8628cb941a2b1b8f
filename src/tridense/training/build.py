"""The edge where a :class:`Config` becomes objects: model, loss, dataset description."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

from torch import nn

from tridense.data.base import DenseDataset
from tridense.data.sample import TASKS
from tridense.errors import ConfigError
from tridense.losses.multitask import MultiTaskLoss, build_task_losses
from tridense.models import create_model
from tridense.training.config import LossConfig, ModelConfig


def build_model(cfg: ModelConfig, *, tasks: Sequence[str] | None, num_classes: int | None) -> nn.Module:
    """The registered model of ``cfg`` (every variant takes the same keywords)."""
    args: dict[str, Any] = dict(cfg.args)
    tasks = args.pop("tasks", tasks)
    return create_model(
        cfg.name, encoder=cfg.encoder, pretrained=cfg.pretrained, tasks=tasks, num_classes=num_classes, **args
    )


def build_loss(cfg: LossConfig, tasks: Sequence[str]) -> MultiTaskLoss:
    """Task losses, weights, auxiliary stages and the method-specific extra terms of ``cfg.extra``."""
    from tridense.losses.pairwise import EXTRA_LOSSES

    extra = []
    for name, options in cfg.extra.items():
        if name not in EXTRA_LOSSES:
            raise ConfigError(f"loss.extra.{name}: unknown extra loss; valid: {sorted(EXTRA_LOSSES)}")
        try:
            extra.append(EXTRA_LOSSES[name](tasks, **(options or {})))
        except TypeError as err:
            raise ConfigError(f"loss.extra.{name}: {err}") from err
    unknown = sorted(set(cfg.weights) - set(TASKS))
    if unknown:
        raise ConfigError(f"loss.weights has unknown tasks {unknown}; valid: {list(TASKS)}")
    losses = build_task_losses(
        tasks, depth=cfg.depth, normals=cfg.normals, semseg=cfg.semseg, focal_gamma=cfg.focal_gamma
    )
    return MultiTaskLoss(losses, weights=cfg.weights, aux_weights=cfg.aux_weights, extra=extra)


def freeze(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Freeze parameters whose names match any fnmatch pattern; return the names of modules left with no
    trainable parameter (their batch-norm statistics are frozen too, see ``FrozenBatchNorm``)."""
    if not patterns:
        return []
    matched = 0
    for name, param in model.named_parameters():
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            param.requires_grad_(False)
            matched += 1
    if matched == 0:
        examples = [n for n, _ in model.named_parameters()][:8]
        raise ConfigError(f"init.freeze patterns {list(patterns)} match no parameter; names look like {examples}")
    frozen = []
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters())
            if params and not any(p.requires_grad for p in params):
                frozen.append(name)
    return frozen


def dataset_info(dataset: DenseDataset) -> dict[str, Any]:
    """Plain description of a dataset that checkpoints keep (classes, palette ids, intrinsics)."""
    K = getattr(dataset, "K", None)
    return {
        "dataset": dataset.name,
        "num_classes": dataset.num_classes,
        "class_names": list(dataset.class_names) if dataset.class_names else None,
        "nyu40_ids": list(getattr(dataset, "nyu40_ids", []) or []) or None,
        "K": None if K is None else [[float(v) for v in row] for row in K],
    }
