"""The ASM paper's additional evaluations, routed from model outputs and batches like :class:`TaskMetrics`.

* ``boundary``: BSDS-style boundary precision / recall / F-measure of the segmentation
  (:class:`~tridense.metrics.boundary.BoundaryMetrics`, tolerance 0.0075 of the image diagonal);
* ``instance``: instance-wise depth and normal metrics, averaged within each class, then over classes
  (:class:`~tridense.metrics.instance.InstanceMetrics`; needs ``instances`` and ``semseg`` ground truth);
* ``background``: per class, the share of its pixels predicted as background
  (:class:`~tridense.metrics.confusion.BackgroundConfusion`).

``tridense evaluate --analyses boundary instance background`` reports them beside the task metrics, under
``semseg_boundary``, ``depth_instance``, ``normals_instance`` and ``semseg_background``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tridense.data.sample import IGNORE_INDEX
from tridense.errors import ConfigError
from tridense.metrics.boundary import DEFAULT_TOLERANCE, BoundaryMetrics
from tridense.metrics.confusion import BackgroundConfusion
from tridense.metrics.instance import InstanceMetrics

#: The analyses by name.
ANALYSES: tuple[str, ...] = ("boundary", "instance", "background")


def _keep(batch: Mapping[str, Any], tasks: Sequence[str], size: int) -> torch.Tensor:
    """(B,) bool: the samples that have the ground truth of every task in ``tasks``."""
    keep = torch.ones(size, dtype=torch.bool)
    for task in tasks:
        if batch.get(task) is None:
            return torch.zeros(size, dtype=torch.bool)
        flag = batch.get(f"has_{task}")
        if flag is not None:
            keep &= torch.as_tensor(flag).bool().cpu()
    return keep


class AnalysisMetrics(nn.Module):
    """The analyses of ``analyses`` that apply to ``tasks`` (segmentation for boundary and background,
    depth / normals for the instance-wise metrics).

    Args:
        analyses: names from :data:`ANALYSES`.
        tasks: the tasks the model predicts and the dataset has.
        num_classes: segmentation classes (the instances' classes come from the segmentation ground truth).
        min_depth: valid depth range of the instance-wise depth metrics.
        max_depth: see ``min_depth``.
        tolerance: boundary matching distance, a fraction of the image diagonal.
        background: the background class id of ``background``.
    """

    def __init__(
        self,
        analyses: Sequence[str],
        tasks: Sequence[str],
        num_classes: int | None,
        *,
        min_depth: float = 1e-3,
        max_depth: float = 10.0,
        tolerance: float = DEFAULT_TOLERANCE,
        background: int = 0,
    ) -> None:
        super().__init__()
        unknown = sorted(set(analyses) - set(ANALYSES))
        if unknown:
            raise ConfigError(f"unknown analyses {unknown}; valid: {list(ANALYSES)}")
        needs_classes = set(analyses) & set(ANALYSES)
        if needs_classes and not num_classes:
            raise ConfigError(f"the analyses {sorted(needs_classes)} need a dataset with segmentation classes")
        metrics: dict[str, nn.Module] = {}
        #: metric name -> (task of the prediction, ground-truth keys it needs)
        self.routes: dict[str, tuple[str, tuple[str, ...]]] = {}
        if "boundary" in analyses and "semseg" in tasks:
            metrics["semseg_boundary"] = BoundaryMetrics(num_classes, tolerance, IGNORE_INDEX)
            self.routes["semseg_boundary"] = ("semseg", ("semseg",))
        if "background" in analyses and "semseg" in tasks:
            metrics["semseg_background"] = BackgroundConfusion(num_classes, background, IGNORE_INDEX)
            self.routes["semseg_background"] = ("semseg", ("semseg",))
        if "instance" in analyses:
            for task in ("depth", "normals"):
                if task in tasks:
                    extra = {"min_depth": min_depth, "max_depth": max_depth} if task == "depth" else {}
                    metrics[f"{task}_instance"] = InstanceMetrics(task, num_classes, **extra)
                    self.routes[f"{task}_instance"] = (task, (task, "instances", "semseg"))
        if analyses and not metrics:
            raise ConfigError(f"none of the analyses {list(analyses)} applies to the tasks {list(tasks)}")
        self.metrics = nn.ModuleDict(metrics)

    def update(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> None:
        """Add a batch (outputs at the ground truth's resolution; samples lacking ground truth skipped)."""
        for name, metric in self.metrics.items():
            task, needs = self.routes[name]
            size = batch["image"].shape[0]
            keep = _keep(batch, needs, size)
            if not keep.any() or outputs.get(task) is None:
                continue
            pred = outputs[task][keep]
            if task == "semseg":
                metric.update(pred, batch["semseg"][keep])
            else:
                metric.update(pred, batch[task][keep], batch["instances"][keep], batch["semseg"][keep])

    def compute(self) -> dict[str, dict[str, Any]]:
        """{name: {metric: value}} over everything seen."""
        return {name: metric.compute() for name, metric in self.metrics.items()}
