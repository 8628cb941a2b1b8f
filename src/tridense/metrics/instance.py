"""Instance-wise depth and normal metrics (ASM paper, section 4.4, after Ke et al.'s adaptive affinity fields).

Pixel-pooled metrics favour large surfaces (walls, floors). The instance-wise form computes a metric over
the pixels of each instance, averages it over the instances of each class, then over the classes:

    M = 1/|C| Σ_c 1/|I_c| Σ_{i ∈ I_c} m(i)

An instance is a non-zero id of the sample's ``instances`` map **within one image**; its class is the most
frequent ground-truth ``semseg`` label over its pixels (ignored labels do not vote; an instance with no
labelled pixel is skipped), and only its pixels with valid ground truth of the task count (an instance
with none is skipped). Classes without an instance do not enter the mean over classes.

The authors' 2D-3D-S script pools an instance's pixels over *every image* showing it (2D-3D-S instance ids
are global to an area), before the per-class averaging; with per-image ids, as here and in the synthetic
scenes, each view of an object is one instance.

Per-instance metrics: depth ``abs_rel``, ``sq_rel``, ``rmse``, ``rmse_log``, ``log10`` and ``delta<k>`` at
1.25^k (the keys of :mod:`tridense.metrics.accuracy`); normals ``mean``, ``median`` (exact), ``rmse`` and
``within_<T>`` (percent).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from tridense.data.sample import IGNORE_INDEX
from tridense.metrics.accuracy import check_exponents, delta_key, ratio_within
from tridense.metrics.base import StatsMetric
from tridense.metrics.functional import (
    DEFAULT_NORMAL_THRESHOLDS,
    Stats,
    _depth_inputs,
    check_thresholds,
    normal_angles,
    within_key,
)

INSTANCE_TASKS: tuple[str, ...] = ("depth", "normals")
DEPTH_ERROR_KEYS: tuple[str, ...] = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10")
NORMAL_ERROR_KEYS: tuple[str, ...] = ("mean", "median", "rmse")
DEFAULT_EXPONENTS: tuple[float, ...] = (1.0, 2.0, 3.0)


def instance_keys(
    task: str,
    *,
    exponents: Sequence[float] = DEFAULT_EXPONENTS,
    thresholds: Sequence[float] = DEFAULT_NORMAL_THRESHOLDS,
) -> tuple[str, ...]:
    """The per-instance metric keys of ``task``, in the order of the statistics."""
    if task == "depth":
        return DEPTH_ERROR_KEYS + tuple(delta_key(k) for k in check_exponents(exponents))
    if task == "normals":
        return NORMAL_ERROR_KEYS + tuple(within_key(t) for t in check_thresholds(thresholds))
    raise ValueError(f"instance-wise metrics exist for {list(INSTANCE_TASKS)}, got task {task!r}")


def _depth_vector(p: torch.Tensor, g: torch.Tensor, exponents: Sequence[float], inclusive: bool) -> torch.Tensor:
    """Metrics of one instance from its valid (N,) predicted and true depths."""
    diff, log_diff = p - g, torch.log(p) - torch.log(g)
    ratio = torch.maximum(p / g, g / p)
    errors = [
        (diff.abs() / g).mean(),
        (diff.square() / g).mean(),
        diff.square().mean().sqrt(),
        log_diff.square().mean().sqrt(),
        (log_diff.abs() / math.log(10.0)).mean(),
    ]
    deltas = [ratio_within(ratio, 1.25**k, inclusive).to(torch.float64).mean() for k in exponents]
    return torch.stack(errors + deltas)


def _normal_vector(angles: torch.Tensor, thresholds: Sequence[float], inclusive: bool) -> torch.Tensor:
    """Metrics of one instance from its (N,) angular errors in degrees."""
    errors = [angles.mean(), angles.quantile(0.5), angles.square().mean().sqrt()]  # median as np.median
    within = [100.0 * ratio_within(angles, t, inclusive).to(torch.float64).mean() for t in thresholds]
    return torch.stack(errors + within)


def _majority_class(labels: torch.Tensor, num_classes: int, ignore_index: int) -> int | None:
    labels = labels[(labels != ignore_index) & (labels >= 0) & (labels < num_classes)]
    if labels.numel() == 0:
        return None
    return int(torch.bincount(labels, minlength=num_classes).argmax())


def instance_stats(
    task: str,
    pred: Any,
    target: Any,
    instances: Any,
    semseg: Any,
    num_classes: int,
    *,
    exponents: Sequence[float] = DEFAULT_EXPONENTS,
    thresholds: Sequence[float] = DEFAULT_NORMAL_THRESHOLDS,
    inclusive: bool = False,
    min_depth: float = 1e-3,
    max_depth: float = 10.0,
    ignore_index: int = IGNORE_INDEX,
) -> Stats:
    """Summable statistics of :func:`instance_metrics` for a batch.

    Returns:
        ``sums`` float64 (C, K): per class, the sum over its instances of the K per-instance metrics (in the
        order of :func:`instance_keys`); ``count`` float64 (C,): instances per class.
    """
    keys = instance_keys(task, exponents=exponents, thresholds=thresholds)
    instances, semseg = torch.as_tensor(instances), torch.as_tensor(semseg)
    if instances.ndim == 2:
        instances, semseg = instances[None], semseg[None]
    if instances.shape != semseg.shape or instances.ndim != 3:
        raise ValueError(
            f"instances {tuple(instances.shape)} and semseg {tuple(semseg.shape)} must both be (B, H, W) or (H, W)"
        )
    if task == "depth":
        p, g, valid = _depth_inputs(pred, target, min_depth, max_depth, None)  # (B, H, W)
    else:
        pred, target = torch.as_tensor(pred), torch.as_tensor(target)
        if pred.ndim == 3:
            pred, target = pred[None], target[None]
        valid = target.abs().sum(dim=1) > 0  # (B, H, W): validity from the ground truth only
    if valid.shape != instances.shape:
        raise ValueError(f"{task} maps of size {tuple(valid.shape)} do not match instances {tuple(instances.shape)}")
    instances, semseg = instances.to(valid.device), semseg.to(valid.device)
    sums = torch.zeros(num_classes, len(keys), dtype=torch.float64)
    count = torch.zeros(num_classes, dtype=torch.float64)
    for b in range(instances.shape[0]):
        for inst in torch.unique(instances[b]).tolist():
            if inst == 0:
                continue
            region = instances[b] == inst  # (H, W)
            cls = _majority_class(semseg[b][region], num_classes, ignore_index)
            pixels = region & valid[b]
            if cls is None or not pixels.any():
                continue
            if task == "depth":
                vector = _depth_vector(p[b][pixels], g[b][pixels], check_exponents(exponents), inclusive)
            else:
                angles = normal_angles(pred[b : b + 1], target[b : b + 1], pixels[None])  # (N,)
                if angles.numel() == 0:  # zero predictions only
                    continue
                vector = _normal_vector(angles, check_thresholds(thresholds), inclusive)
            sums[cls] += vector.cpu()
            count[cls] += 1
    return {"sums": sums, "count": count}


def instance_from_stats(stats: Mapping[str, torch.Tensor], keys: Sequence[str]) -> dict[str, Any]:
    """Instance-wise metrics from summed :func:`instance_stats`.

    Returns:
        each key: the mean over classes (with an instance) of the class means over instances; ``class_<key>``:
        the per-class list (NaN for a class without instances); ``class_instances``: instances per class.
    """
    sums, count = stats["sums"].to(torch.float64).cpu(), stats["count"].to(torch.float64).cpu()
    present = count > 0
    per_class = torch.where(present[:, None], sums / count.clamp_min(1)[:, None], math.nan)  # (C, K)
    out: dict[str, Any] = {}
    for k, key in enumerate(keys):
        out[key] = float(per_class[present, k].mean()) if present.any() else math.nan
    for k, key in enumerate(keys):
        out[f"class_{key}"] = per_class[:, k].tolist()
    out["class_instances"] = [int(c) for c in count.tolist()]
    return out


def instance_metrics(
    task: str,
    pred: Any,
    target: Any,
    instances: Any,
    semseg: Any,
    num_classes: int,
    *,
    exponents: Sequence[float] = DEFAULT_EXPONENTS,
    thresholds: Sequence[float] = DEFAULT_NORMAL_THRESHOLDS,
    inclusive: bool = False,
    min_depth: float = 1e-3,
    max_depth: float = 10.0,
    ignore_index: int = IGNORE_INDEX,
) -> dict[str, Any]:
    """Instance-wise depth or normal metrics: per instance, averaged within each class, then over classes.

    Args:
        task: ``depth`` or ``normals``.
        pred: the prediction, (B, 1, H, W) depth in metres or (B, 3, H, W) normals.
        target: the ground truth of the same size (0 depth / zero normal = invalid).
        instances: int (B, H, W) instance ids, 0 = none.
        semseg: int (B, H, W) ground-truth classes (the instance's class is its majority label).
        num_classes: C.
        exponents: depth accuracies at 1.25^k.
        thresholds: normal angles T (degrees).
        inclusive: thresholds count equality (<=) instead of <.
        min_depth: depth validity and clamping, as :func:`~tridense.metrics.functional.depth_metrics`.
        max_depth: see ``min_depth``.
        ignore_index: label that does not vote for a class.
    """
    stats = instance_stats(
        task,
        pred,
        target,
        instances,
        semseg,
        num_classes,
        exponents=exponents,
        thresholds=thresholds,
        inclusive=inclusive,
        min_depth=min_depth,
        max_depth=max_depth,
        ignore_index=ignore_index,
    )
    return instance_from_stats(stats, instance_keys(task, exponents=exponents, thresholds=thresholds))


class InstanceMetrics(StatsMetric):
    """Streaming :func:`instance_metrics` (equal to it on the concatenated data: instances live in one image).

    Args:
        task: ``depth`` or ``normals``.
        num_classes: C.
        exponents, thresholds, inclusive, min_depth, max_depth, ignore_index: see :func:`instance_metrics`.
    """

    def __init__(
        self,
        task: str,
        num_classes: int,
        *,
        exponents: Sequence[float] = DEFAULT_EXPONENTS,
        thresholds: Sequence[float] = DEFAULT_NORMAL_THRESHOLDS,
        inclusive: bool = False,
        min_depth: float = 1e-3,
        max_depth: float = 10.0,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        self.keys = instance_keys(task, exponents=exponents, thresholds=thresholds)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.task, self.num_classes = task, num_classes
        self.options = {
            "exponents": tuple(exponents),
            "thresholds": tuple(thresholds),
            "inclusive": inclusive,
            "min_depth": min_depth,
            "max_depth": max_depth,
            "ignore_index": ignore_index,
        }
        self.add_stat("sums", torch.zeros(num_classes, len(self.keys), dtype=torch.float64))
        self.add_stat("count", torch.zeros(num_classes, dtype=torch.float64))

    def update(self, pred: torch.Tensor, target: torch.Tensor, instances: torch.Tensor, semseg: torch.Tensor) -> None:
        """Add a batch: prediction and ground truth of the task, instance ids and ground-truth classes."""
        self.accumulate(
            instance_stats(self.task, pred.detach(), target, instances, semseg, self.num_classes, **self.options)
        )

    def compute(self) -> dict[str, Any]:
        """The instance-wise metrics over everything seen (all processes)."""
        return instance_from_stats(self.stats(), self.keys)
