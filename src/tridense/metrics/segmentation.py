"""Streaming semantic-segmentation metrics from an int64 confusion matrix."""

from __future__ import annotations

from typing import Any

import torch

from tridense.data.sample import IGNORE_INDEX
from tridense.metrics.base import StatsMetric
from tridense.metrics.functional import segmentation_from_stats, segmentation_stats


class SegmentationMetrics(StatsMetric):
    """``pixel_acc``, ``mean_acc``, ``miou`` and per-class ``iou`` (fractions) over a stream of batches.

    Equals :func:`~tridense.metrics.functional.segmentation_metrics` on the concatenated data.

    Args:
        num_classes: number of classes C.
        ignore_index: label that is not evaluated.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.add_stat("confmat", torch.zeros(num_classes, num_classes, dtype=torch.int64))

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ids (B, H, W) or logits (B, C, H, W); target ids (B, H, W), ignore_index skipped."""
        self.accumulate(segmentation_stats(pred.detach(), target, self.num_classes, self.ignore_index))

    def compute(self) -> dict[str, Any]:
        """The metrics over everything seen (all processes)."""
        return segmentation_from_stats(self.stats())
