"""The edge where a :class:`Config` becomes objects: model (with the task list), loss, dataset description."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from typing import Any

from torch import nn

from tridense.data.base import DenseDataset
from tridense.data.sample import TASKS
from tridense.errors import ConfigError
from tridense.losses.multitask import MultiTaskLoss, build_task_losses
from tridense.losses.registry import EXTRA_LOSSES
from tridense.models import create_model
from tridense.training.config import Config, LossConfig, ModelConfig
from tridense.training.defaults import resolve_loss


def build_model(cfg: ModelConfig, *, tasks: Sequence[str] | None, num_classes: int | None) -> nn.Module:
    """The registered model of ``cfg`` (every variant takes the same keywords)."""
    args: dict[str, Any] = dict(cfg.args)
    tasks = args.pop("tasks", tasks)
    return create_model(
        cfg.name, encoder=cfg.encoder, pretrained=cfg.pretrained, tasks=tasks, num_classes=num_classes, **args
    )


def build_model_and_tasks(cfg: Config, dataset: DenseDataset) -> tuple[nn.Module, tuple[str, ...]]:
    """The model of ``cfg`` for ``dataset`` and the tasks to train and evaluate: the one place where the task
    list is resolved.

    The model is asked for ``model.args.tasks``, else ``data.tasks``, else every task of the dataset; the
    tasks trained are those the built model predicts (``model.tasks``) that the dataset has.
    """
    requested = cfg.model.args.get("tasks") or cfg.data.tasks or list(dataset.tasks)
    model = build_model(cfg.model, tasks=requested, num_classes=dataset.num_classes)
    model_tasks = tuple(getattr(model, "tasks", requested))
    tasks = tuple(t for t in model_tasks if t in dataset.tasks)
    if not tasks:
        raise ConfigError(f"the model predicts {list(model_tasks)} but {dataset.name} has only {list(dataset.tasks)}")
    return model, tasks


def build_loss(cfg: LossConfig, tasks: Sequence[str], *, model_name: str) -> MultiTaskLoss:
    """Task losses, weights, auxiliary stages and the extra terms of ``cfg.extra`` (null ``aux_weights`` and
    ``extra``: the defaults of model ``model_name``). An extra term that owns parameters is refused: the
    optimisers are built from the model's parameters, so they would never be updated."""
    cfg = resolve_loss(cfg, model_name)
    extra = []
    for name, options in (cfg.extra or {}).items():
        if name not in EXTRA_LOSSES:
            raise ConfigError(f"loss.extra.{name}: unknown extra loss; valid: {sorted(EXTRA_LOSSES)}")
        try:
            term = EXTRA_LOSSES[name](tasks, **(options or {}))
        except TypeError as err:
            raise ConfigError(f"loss.extra.{name}: {err}") from err
        owned = [n for n, _ in term.named_parameters()]
        if owned:
            raise ConfigError(
                f"loss.extra.{name}: the term owns parameters {owned[:5]}, which no optimiser would update; "
                "a trainable term belongs in the model (or in a training method with its own optimiser)"
            )
        extra.append(term)
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
