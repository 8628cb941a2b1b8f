"""Task losses as thin modules over :mod:`tridense.losses.functional`, and the weighted multi-task loss.

A task loss reads its ground truth and validity from a collated batch: depth is valid where > 0, normals
where non-zero, labels where != ``IGNORE_INDEX`` (255), and only for samples whose ``has_<task>`` flag is
set, so a batch that mixes datasets (or lacks a task entirely) is handled without special cases.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tridense.data.sample import IGNORE_INDEX
from tridense.losses import functional as LF

DEPTH_LOSSES = ("berhu", "l1", "silog")
NORMAL_LOSSES = ("l1", "cosine")
SEG_LOSSES = ("ce", "focal")


def _has(batch: Mapping[str, Any], task: str, like: torch.Tensor) -> torch.Tensor:
    """(B,) bool: which samples have ground truth for ``task`` (all of them if the flag is absent)."""
    flag = batch.get(f"has_{task}")
    if flag is None:
        return torch.ones(like.shape[0], dtype=torch.bool, device=like.device)
    return flag.to(like.device)


def depth_mask(batch: Mapping[str, Any]) -> torch.Tensor:
    target = batch["depth"]
    return (target > 0) & _has(batch, "depth", target).view(-1, 1, 1, 1)


def normals_mask(batch: Mapping[str, Any]) -> torch.Tensor:
    target = batch["normals"]
    return (target.abs().sum(dim=1, keepdim=True) > 0) & _has(batch, "normals", target).view(-1, 1, 1, 1)


def semseg_target(batch: Mapping[str, Any]) -> torch.Tensor:
    """Labels with samples lacking the task set to ignore."""
    target = batch["semseg"]
    has = _has(batch, "semseg", target).view(-1, 1, 1)
    return torch.where(has, target, torch.full_like(target, IGNORE_INDEX))


class DepthLoss(nn.Module):
    """Depth loss on metres: ``berhu`` (default, PAP/GAD), ``l1`` or ``silog``."""

    def __init__(self, kind: str = "berhu", *, berhu_threshold: float = 0.2, silog_lambda: float = 0.85) -> None:
        super().__init__()
        if kind not in DEPTH_LOSSES:
            raise ValueError(f"unknown depth loss {kind!r}; valid: {list(DEPTH_LOSSES)}")
        self.kind, self.berhu_threshold, self.silog_lambda = kind, berhu_threshold, silog_lambda

    def forward(self, pred: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        target, mask = batch["depth"], depth_mask(batch)
        if self.kind == "berhu":
            return LF.berhu(pred, target, mask, self.berhu_threshold)
        if self.kind == "l1":
            return LF.depth_l1(pred, target, mask)
        return LF.silog(pred, target, mask, self.silog_lambda)


class NormalLoss(nn.Module):
    """Normal loss on unit predictions: ``l1`` (default, PAP) or ``cosine``."""

    def __init__(self, kind: str = "l1") -> None:
        super().__init__()
        if kind not in NORMAL_LOSSES:
            raise ValueError(f"unknown normal loss {kind!r}; valid: {list(NORMAL_LOSSES)}")
        self.kind = kind

    def forward(self, pred: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        target, mask = batch["normals"], normals_mask(batch)
        fn = LF.normal_l1 if self.kind == "l1" else LF.normal_cosine
        return fn(pred, target, mask)


class SegLoss(nn.Module):
    """Segmentation loss: ``ce`` (default) or ``focal`` with ``gamma`` (GAD)."""

    def __init__(self, kind: str = "ce", *, gamma: float = 2.0) -> None:
        super().__init__()
        if kind not in SEG_LOSSES:
            raise ValueError(f"unknown segmentation loss {kind!r}; valid: {list(SEG_LOSSES)}")
        self.kind, self.gamma = kind, gamma

    def forward(self, logits: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        target = semseg_target(batch)
        if self.kind == "focal":
            return LF.focal(logits, target, self.gamma)
        return LF.cross_entropy(logits, target)


def build_task_losses(
    tasks: Sequence[str], *, depth: str = "berhu", normals: str = "l1", semseg: str = "ce", focal_gamma: float = 2.0
) -> dict[str, nn.Module]:
    """One loss module per task, by name."""
    make: dict[str, Callable[[], nn.Module]] = {
        "depth": lambda: DepthLoss(depth),
        "normals": lambda: NormalLoss(normals),
        "semseg": lambda: SegLoss(semseg, gamma=focal_gamma),
    }
    return {task: make[task]() for task in tasks}


class MultiTaskLoss(nn.Module):
    """Weighted sum of task losses on the final outputs, on supervised auxiliary outputs and extra terms.

    Args:
        task_losses: one module per task (see :func:`build_task_losses`).
        weights: weight of each task (default 1).
        aux_weights: for model outputs ``aux[stage]`` that are dicts of task predictions (e.g. PAP's
            ``aux["initial"]``), the weight of that stage; each task inside it uses the task's loss and weight.
        extra: modules ``(outputs, batch) -> {name: weighted term}`` for method-specific terms (e.g. PAP's
            pair-wise loss); their terms are added to the total as they are.

    ``forward`` returns a dict with every named term (unweighted task terms, e.g. ``depth`` and
    ``initial/depth``, and the extra terms) and their weighted ``total``. A task missing from the batch or
    from the outputs contributes nothing.
    """

    def __init__(
        self,
        task_losses: Mapping[str, nn.Module],
        *,
        weights: Mapping[str, float] | None = None,
        aux_weights: Mapping[str, float] | None = None,
        extra: Sequence[nn.Module] = (),
    ) -> None:
        super().__init__()
        self.task_losses = nn.ModuleDict(dict(task_losses))
        self.weights = {t: float((weights or {}).get(t, 1.0)) for t in self.task_losses}
        self.aux_weights = dict(aux_weights or {})
        self.extra = nn.ModuleList(extra)

    def forward(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        total = None

        def add(name: str, value: torch.Tensor, weight: float) -> None:
            nonlocal total
            terms[name] = value
            total = value * weight if total is None else total + value * weight

        for task, loss in self.task_losses.items():
            if task not in batch:
                continue
            if task in outputs:
                add(task, loss(outputs[task], batch), self.weights[task])
            for stage, stage_weight in self.aux_weights.items():
                preds = outputs.get("aux", {}).get(stage)
                if isinstance(preds, Mapping) and task in preds:
                    add(f"{stage}/{task}", loss(preds[task], batch), self.weights[task] * stage_weight)
        for module in self.extra:
            for name, value in module(outputs, batch).items():
                add(name, value, 1.0)
        if total is None:
            raise ValueError(
                f"no loss term: the batch has none of the tasks {list(self.task_losses)} "
                f"(batch keys {sorted(k for k in batch if not k.startswith('has_'))})"
            )
        terms["total"] = total
        return terms
