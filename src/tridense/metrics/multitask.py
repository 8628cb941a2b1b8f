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
from tridense.metrics.accuracy import DepthAccuracy, NormalWithin, delta_key
from tridense.metrics.depth import DepthMetrics, KittiMetrics
from tridense.metrics.functional import DEFAULT_NORMAL_THRESHOLDS, CropArg
from tridense.metrics.normals import NormalMetrics
from tridense.metrics.protocols import (
    DEVKIT,
    DepthConvention,
    Protocol,
    SegmentationConvention,
    get_protocol,
)
from tridense.metrics.segmentation import ImageSegmentationMetrics, SegmentationMetrics

#: Direction of every scalar metric of the library: True where lower is better. ``within_<T>`` and
#: ``delta<k>`` keys not listed here are higher-is-better (see :func:`is_lower_better`).
LOWER_IS_BETTER: dict[str, bool] = {
    # depth and KITTI
    "abs_rel": True,
    "abs_err": True,
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
    "image_miou": False,
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


#: Conventions of :func:`delta_mtl`: a flat mean over (task, metric) pairs, or the mean over tasks of each
#: task's mean over its metrics.
DELTA_MTL_CONVENTIONS: tuple[str, ...] = ("flat", "per_task")


def delta_mtl(
    results: Mapping[str, Mapping[str, Any]],
    references: Mapping[str, Mapping[str, Any]],
    *,
    lower_is_better: Mapping[str, bool] | None = None,
    convention: str = "flat",
) -> float:
    """Multi-task performance Δ_MTL in percent, under a named convention.

    With r_k = (-1)^{l_k} (M_m,k - M_b,k) / M_b,k * 100 for each (task, metric) pair k, where M_m is the
    multi-task model, M_b the single-task baseline and l_k = 1 if lower is better:

    * ``"flat"``: the mean of r_k over all K (task, metric) pairs (Navon et al. 2022, Nash-MTL, and the
      MTAN-release tables that follow it: Δm% = 1/K Σ_k r_k);
    * ``"per_task"``: the mean over tasks of each task's mean r_k over its metrics (LibMTL
      ``LibMTL/utils.py`` ``count_improvement``; with one metric per task it is Maninis et al. 2019 and
      Vandenhende et al. 2021, Δ_MTL = 1/T Σ_t r_t, where both conventions agree).

    Positive = the multi-task model is better on average. Per-class lists (``iou``) are not scored.

    Args:
        results: {task: {metric: value}} of the model under test (every scalar entry is scored).
        references: {task: {metric: value}} of the baselines; must hold every scored pair, non-zero.
        lower_is_better: overrides/extends :data:`LOWER_IS_BETTER`, keyed ``metric`` or ``"task/metric"``.
        convention: ``flat`` or ``per_task``.
    """
    if convention not in DELTA_MTL_CONVENTIONS:
        raise ValueError(f"unknown delta_mtl convention {convention!r}; expected one of {DELTA_MTL_CONVENTIONS}")
    per_task: dict[str, list[float]] = {}
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
            per_task.setdefault(task, []).append(sign * (float(value) - ref) / ref * 100.0)
    if not per_task:
        raise ValueError("delta_mtl got no scalar metric in results")
    if convention == "per_task":
        means = [sum(terms) / len(terms) for terms in per_task.values()]
        return sum(means) / len(means)
    terms = [t for task_terms in per_task.values() for t in task_terms]
    return sum(terms) / len(terms)


def flatten_results(results: Mapping[str, Mapping[str, Any]], *, sep: str = "/") -> dict[str, float]:
    """{task: {metric: value}} -> {"task/metric": value}, scalars only (lists like ``iou`` left out)."""
    return {
        f"{task}{sep}{metric}": float(value)
        for task, metrics in results.items()
        for metric, value in metrics.items()
        if not isinstance(value, list | tuple)
    }


def _explicit_protocol(
    min_depth: float,
    max_depth: float,
    crop: CropArg,
    reduction: str,
    *,
    kitti: bool,
    normal_thresholds: Sequence[float],
    absent: str,
) -> Protocol:
    """The ``custom`` protocol of :class:`TaskMetrics` built from its individual arguments."""
    named_crop = crop if isinstance(crop, str) else None  # a mask is passed to DepthMetrics by TaskMetrics
    return Protocol(
        name="custom",
        description="explicit settings",
        source="tridense.metrics",
        depth=DepthConvention(min_depth, max_depth, crop=named_crop, reduction=reduction),
        kitti=DEVKIT if kitti else None,
        normal_thresholds=tuple(normal_thresholds),
        segmentation=SegmentationConvention(absent=absent),
    )


def _protocol_tasks(protocol: Protocol, tasks: Sequence[str], given: Mapping[str, bool]) -> list[str]:
    """The ``tasks`` a named protocol scores; a ConfigError if a setting it fixes was ``given`` or none is left."""
    if any(given.values()):
        raise ConfigError(
            f"evaluation protocol {protocol.name!r} fixes {sorted(k for k, v in given.items() if v)}; "
            f"leave them (eval.<key> in a config) at their defaults or evaluate without a protocol"
        )
    tasks = [t for t in tasks if t in protocol.tasks()]
    if not tasks:
        raise ConfigError(
            f"evaluation protocol {protocol.name!r} scores {list(protocol.tasks())}, none of "
            f"the tasks evaluated here"
        )
    return tasks


class TaskMetrics(nn.Module):
    """The metrics of every task of a multi-task model, fed with model outputs and collated batches.

    ``update(outputs, batch)`` sends, for each task, only the samples whose ``has_<task>`` flag is True
    (all samples if the batch has no flag) to that task's metric; a batch without the task's ground truth
    is skipped. ``compute()`` returns {task: {metric: value}}; a task that saw no valid data gives NaN.
    With ``kitti=True`` the depth outputs also feed the KITTI benchmark metrics under the key ``kitti``
    (with the devkit's conventions: every g > 0, no cap, no crop, no clamp).

    A named ``protocol`` (see :mod:`tridense.metrics.protocols`) fixes every convention at once; the
    individual arguments must then be left at their defaults. The tasks it does not score are dropped.
    ``self.protocol`` holds the :class:`~tridense.metrics.protocols.Protocol` in use (``custom`` when built
    from the individual arguments).

    Args:
        tasks: tasks to evaluate, from ``("depth", "normals", "semseg")``.
        num_classes: number of segmentation classes (needed with ``semseg``).
        ignore_index: segmentation label that is not evaluated.
        min_depth: valid depth range and clamp of predictions.
        max_depth: see ``min_depth``.
        crop: depth evaluation crop (name of ``CROPS`` or boolean mask); a name is placed in each sample's
            original frame when the batch has ``meta`` (``meta['crop']`` of KITTI's ``kb_crop``).
        reduction: depth reduction, ``image`` or ``pixel``.
        kitti: also compute the KITTI benchmark metrics from the depth outputs.
        normal_thresholds: angles T of ``within_<T>``.
        absent: absent-class policy of ``miou`` (``skip`` or ``zero``).
        protocol: a name of :data:`~tridense.metrics.protocols.PROTOCOLS` or a ``Protocol``.
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
        absent: str = "skip",
        protocol: str | Protocol | None = None,
    ) -> None:
        super().__init__()
        unknown = [t for t in tasks if t not in TASKS]
        if unknown or not tasks:
            raise ConfigError(f"unknown or no tasks {list(tasks)}; expected a non-empty subset of {TASKS}")
        if protocol is None:
            if kitti and "depth" not in tasks:
                raise ConfigError("kitti=True needs the 'depth' task")
            self.protocol = _explicit_protocol(
                min_depth, max_depth, crop, reduction, kitti=kitti, normal_thresholds=normal_thresholds, absent=absent
            )
        else:
            given = {
                "min_depth": min_depth != 1e-3,
                "max_depth": max_depth != 10.0,
                "crop": crop is not None,
                "reduction": reduction != "image",
                "kitti": kitti,
                "normal_thresholds": tuple(normal_thresholds) != DEFAULT_NORMAL_THRESHOLDS,
                "absent": absent != "skip",
            }
            self.protocol = get_protocol(protocol)
            tasks = _protocol_tasks(self.protocol, tasks, given)
            crop = self.protocol.depth.crop if self.protocol.depth is not None else None
        proto = self.protocol
        self.keys: dict[str, tuple[str, ...] | None] = {  # reported keys per metric name (None: all)
            "depth": proto.depth.keys if proto.depth is not None else None,
            "normals": proto.normal_keys,
            "semseg": None if proto.segmentation is None or proto.segmentation.keys is None
            else (*proto.segmentation.keys, "iou"),
        }
        self.sources: dict[str, str] = {}  # metric name -> task whose outputs/targets feed it
        #: extra metrics whose results join another's (name -> the name they join)
        self.joins: dict[str, str] = {}
        metrics: dict[str, nn.Module] = {}
        if "depth" in tasks:
            metrics.update(self._depth_metrics(crop))
        if "normals" in tasks and proto.normal_thresholds is not None:
            metrics.update(self._normal_metrics())
        if "semseg" in tasks and proto.segmentation is not None:
            if num_classes is None:
                raise ConfigError("TaskMetrics with the 'semseg' task needs num_classes")
            if proto.segmentation.per_image:
                metrics["semseg"] = ImageSegmentationMetrics(num_classes, ignore_index)
            else:
                metrics["semseg"] = SegmentationMetrics(num_classes, ignore_index, absent=proto.segmentation.absent)
            self.sources["semseg"] = "semseg"
        self.metrics = nn.ModuleDict(metrics)

    def _depth_metrics(self, crop: CropArg) -> dict[str, nn.Module]:
        """The protocol's depth metrics (pixel-wise, KITTI benchmark, extra accuracies), registering their
        sources, joins and keys."""
        proto, metrics = self.protocol, {}
        if proto.depth is not None:
            metrics["depth"] = DepthMetrics(**{**proto.depth.kwargs(), "crop": crop})
            self.sources["depth"] = "depth"
        if proto.kitti is not None:
            kitti_args = proto.kitti.kwargs()
            del kitti_args["reduction"], kitti_args["keys"]  # the benchmark is per image, with its own keys
            metrics["kitti"] = KittiMetrics(**kitti_args)
            self.sources["kitti"] = "depth"
        if proto.depth is not None and proto.depth_accuracy is not None:
            conv = proto.depth
            metrics["depth_accuracy"] = DepthAccuracy(
                proto.depth_accuracy,
                min_depth=conv.min_depth,
                max_depth=conv.max_depth,
                crop=crop,
                reduction=conv.reduction,
                clamp=conv.clamp,
            )
            self.sources["depth_accuracy"], self.joins["depth_accuracy"] = "depth", "depth"
            self.keys["depth"] = (*conv.keys, *(delta_key(k) for k in proto.depth_accuracy))
        return metrics

    def _normal_metrics(self) -> dict[str, nn.Module]:
        """The protocol's normal metrics (with the inclusive ``within_<T>`` counts when it asks for them)."""
        thresholds = self.protocol.normal_thresholds
        metrics: dict[str, nn.Module] = {"normals": NormalMetrics(thresholds)}
        self.sources["normals"] = "normals"
        if self.protocol.normal_inclusive:  # within_<T> counted as angle <= T, replacing the strict counts
            metrics["normals_within"] = NormalWithin(thresholds, inclusive=True)
            self.sources["normals_within"], self.joins["normals_within"] = "normals", "normals"
        return metrics

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
            args = (pred[keep.to(pred.device)], target[keep.to(target.device)])
            if isinstance(metric, DepthMetrics | KittiMetrics) and batch.get("meta") is not None:
                metric.update(*args, meta=[m for m, k in zip(batch["meta"], keep.tolist(), strict=True) if k])
            else:
                metric.update(*args)

    def compute(self) -> dict[str, dict[str, Any]]:
        """{task: {metric: value}} over everything seen (all processes); ``kitti`` when enabled.

        A task that received no sample gives NaN values (torchmetrics' "compute before update" warning
        is silenced: in mixed datasets that is expected). Every process must call it (it synchronises).
        """
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"The ``compute`` method .* before the ``update``")
            results = {name: metric.compute() for name, metric in self.metrics.items()}
        for name, into in self.joins.items():
            results[into] = {**results[into], **results.pop(name)}
        return {
            name: values if self.keys.get(name) is None else {k: values[k] for k in self.keys[name]}
            for name, values in results.items()
        }

    def compute_flat(self, sep: str = "/") -> dict[str, float]:
        """:meth:`compute` flattened to {"task/metric": value} (scalar entries only), e.g. for loggers."""
        return flatten_results(self.compute(), sep=sep)

    def reset(self) -> None:
        """Forget everything seen."""
        for metric in self.metrics.values():
            metric.reset()
