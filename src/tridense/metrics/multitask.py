"""Multi-task evaluation: a collection that routes each task of a batch to its metric, and the Δ_MTL score."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any

import torch
from torch import nn

from tridense.data.sample import IGNORE_INDEX, TASKS
from tridense.errors import ConfigError
from tridense.metrics.depth import DepthMetrics, KittiMetrics
from tridense.metrics.functional import DEFAULT_NORMAL_THRESHOLDS, CropArg
from tridense.metrics.normals import NormalMetrics
from tridense.metrics.segmentation import SegmentationMetrics

#: Direction of every scalar metric of the library: True where lower is better. ``within_<T>`` and
#: ``delta<k>`` keys not listed here are higher-is-better (see :func:`is_lower_better`).
LOWER_IS_BETTER: dict[str, bool] = {
    # depth and KITTI
    "abs_rel": True,
    "sq_rel": True,
    "rmse": True,
    "rmse_log": True,
    "log10": True,
    "silog": True,
    "irmse": True,
    "delta1": False,
    "delta2": False,
    "delta3": False,
    # normals
    "mean": True,
    "median": True,
    # segmentation
    "pixel_acc": False,
    "mean_acc": False,
    "miou": False,
}


def is_lower_better(metric: str, table: Mapping[str, bool] | None = None, task: str | None = None) -> bool:
    """Whether a lower value of ``metric`` is better.

    Looks up ``"task/metric"`` then ``metric`` in ``table`` (merged over :data:`LOWER_IS_BETTER`);
    ``within_*`` and ``delta*`` keys are higher-is-better.
    """
    merged = {**LOWER_IS_BETTER, **(table or {})}
    if task is not None and f"{task}/{metric}" in merged:
        return bool(merged[f"{task}/{metric}"])
    if metric in merged:
        return bool(merged[metric])
    if metric.startswith(("within_", "delta")):
        return False
    raise ValueError(
        f"no direction known for metric {metric!r}"
        + (f" of task {task!r}" if task else "")
        + f"; pass lower_is_better={{{metric!r}: True/False}} (known: {sorted(merged)}, within_*, delta*)"
    )


def delta_mtl(
    results: Mapping[str, Mapping[str, Any]],
    references: Mapping[str, Mapping[str, Any]],
    *,
    lower_is_better: Mapping[str, bool] | None = None,
) -> float:
    """Multi-task performance Δ_MTL (Maninis et al. 2019; Vandenhende et al. 2021), in percent.

    Δ_MTL = mean over all (task, metric) pairs k of (-1)^{l_k} (M_m,k - M_b,k) / M_b,k * 100, where M_m is
    the multi-task model, M_b the single-task baseline and l_k = 1 if lower is better. Positive = the
    multi-task model is better on average. Per-class lists (``iou``) are not scored.

    Args:
        results: {task: {metric: value}} of the model under test (every scalar entry is scored).
        references: {task: {metric: value}} of the baselines; must hold every scored pair, non-zero.
        lower_is_better: overrides/extends :data:`LOWER_IS_BETTER`, keyed ``metric`` or ``"task/metric"``.
    """
    terms: list[float] = []
    for task, metrics in results.items():
        for metric, value in metrics.items():
            if isinstance(value, list | tuple):
                continue
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = float(value)
            if not isinstance(value, Real):
                raise ValueError(f"results[{task!r}][{metric!r}] = {value!r} is not a number")
            if task not in references or metric not in references[task]:
                raise ValueError(
                    f"references have no value for {task}/{metric}; they hold "
                    f"{ {t: sorted(m) for t, m in references.items()} }"
                )
            ref = float(references[task][metric])
            if ref == 0 or not math.isfinite(ref):
                raise ValueError(f"reference {task}/{metric} = {ref} is no baseline (zero or not finite)")
            sign = -1.0 if is_lower_better(metric, lower_is_better, task) else 1.0
            terms.append(sign * (float(value) - ref) / ref * 100.0)
    if not terms:
        raise ValueError("delta_mtl got no scalar metric in results")
    return sum(terms) / len(terms)


def flatten_results(results: Mapping[str, Mapping[str, Any]], *, sep: str = "/") -> dict[str, float]:
    """{task: {metric: value}} -> {"task/metric": value}, scalars only (lists like ``iou`` left out)."""
    return {
        f"{task}{sep}{metric}": float(value)
        for task, metrics in results.items()
        for metric, value in metrics.items()
        if not isinstance(value, list | tuple)
    }


class TaskMetrics(nn.Module):
    """The metrics of every task of a multi-task model, fed with model outputs and collated batches.

    ``update(outputs, batch)`` sends, for each task, only the samples whose ``has_<task>`` flag is True
    (all samples if the batch has no flag) to that task's metric; a batch without the task's ground truth
    is skipped. ``compute()`` returns {task: {metric: value}}; a task that saw no valid data gives NaN.
    With ``kitti=True`` the depth outputs also feed the KITTI benchmark metrics under the key ``kitti``.

    Args:
        tasks: tasks to evaluate, from ``("depth", "normals", "semseg")``.
        num_classes: number of segmentation classes (needed with ``semseg``).
        ignore_index: segmentation label that is not evaluated.
        min_depth: valid depth range and clamp of predictions.
        max_depth: see ``min_depth``.
        crop: depth evaluation crop (name of ``CROPS`` or boolean mask).
        reduction: depth reduction, ``image`` or ``pixel``.
        kitti: also compute the KITTI benchmark metrics from the depth outputs.
        normal_thresholds: angles T of ``within_<T>``.
    """

    def __init__(
        self,
        tasks: Sequence[str] = TASKS,
        *,
        num_classes: int | None = None,
        ignore_index: int = IGNORE_INDEX,
        min_depth: float = 1e-3,
        max_depth: float = 10.0,
        crop: CropArg = None,
        reduction: str = "image",
        kitti: bool = False,
        normal_thresholds: Sequence[float] = DEFAULT_NORMAL_THRESHOLDS,
    ) -> None:
        super().__init__()
        unknown = [t for t in tasks if t not in TASKS]
        if unknown or not tasks:
            raise ConfigError(f"unknown or no tasks {list(tasks)}; expected a non-empty subset of {TASKS}")
        if kitti and "depth" not in tasks:
            raise ConfigError("kitti=True needs the 'depth' task")
        metrics: dict[str, nn.Module] = {}
        self.sources: dict[str, str] = {}  # metric name -> task whose outputs/targets feed it
        if "depth" in tasks:
            metrics["depth"] = DepthMetrics(min_depth, max_depth, crop, reduction)
            self.sources["depth"] = "depth"
            if kitti:
                metrics["kitti"] = KittiMetrics(min_depth, max_depth, crop)
                self.sources["kitti"] = "depth"
        if "normals" in tasks:
            metrics["normals"] = NormalMetrics(normal_thresholds)
            self.sources["normals"] = "normals"
        if "semseg" in tasks:
            if num_classes is None:
                raise ConfigError("TaskMetrics with the 'semseg' task needs num_classes")
            metrics["semseg"] = SegmentationMetrics(num_classes, ignore_index)
            self.sources["semseg"] = "semseg"
        self.metrics = nn.ModuleDict(metrics)

    def update(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> None:
        """Add one batch.

        Args:
            outputs: model outputs at the ground-truth resolution: ``depth`` (B, 1, H, W),
                ``normals`` (B, 3, H, W), ``semseg`` logits (B, C, H, W).
            batch: collated batch with ``depth``, ``normals``, ``semseg`` and ``has_<task>`` bool (B,).
        """
        for name, metric in self.metrics.items():
            task = self.sources[name]
            if batch.get(task) is None:
                continue
            target = batch[task]
            keep = batch.get(f"has_{task}")
            keep = torch.ones(target.shape[0], dtype=torch.bool) if keep is None else torch.as_tensor(keep)
            if keep.shape != (target.shape[0],):
                raise ValueError(f"batch['has_{task}'] has shape {tuple(keep.shape)}, expected ({len(target)},)")
            if not keep.any():
                continue
            if outputs.get(task) is None:
                raise ValueError(
                    f"model outputs have no {task!r} (keys: {sorted(outputs)}); build TaskMetrics with the "
                    f"tasks the model predicts"
                )
            pred = outputs[task]
            if pred.shape[0] != target.shape[0]:
                raise ValueError(f"outputs[{task!r}] has batch size {pred.shape[0]}, batch {target.shape[0]}")
            metric.update(pred[keep.to(pred.device)], target[keep.to(target.device)])

    def compute(self) -> dict[str, dict[str, Any]]:
        """{task: {metric: value}} over everything seen (all processes); ``kitti`` when enabled.

        A task that received no sample gives NaN values (torchmetrics' "compute before update" warning
        is silenced: in mixed datasets that is expected). Every process must call it (it synchronises).
        """
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"The ``compute`` method .* before the ``update``")
            return {name: metric.compute() for name, metric in self.metrics.items()}

    def compute_flat(self, sep: str = "/") -> dict[str, float]:
        """:meth:`compute` flattened to {"task/metric": value} (scalar entries only), e.g. for loggers."""
        return flatten_results(self.compute(), sep=sep)

    def reset(self) -> None:
        """Forget everything seen."""
        for metric in self.metrics.values():
            metric.reset()
