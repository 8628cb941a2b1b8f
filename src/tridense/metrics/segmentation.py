"""Streaming semantic-segmentation metrics: a pooled confusion matrix, or the GAD authors' per-image IoU."""

from __future__ import annotations

from typing import Any

import torch

from tridense.data.sample import IGNORE_INDEX
from tridense.metrics.base import StatsMetric
from tridense.metrics.functional import (
    check_absent,
    image_segmentation_from_stats,
    image_segmentation_stats,
    segmentation_from_stats,
    segmentation_stats,
)


class SegmentationMetrics(StatsMetric):
    """``pixel_acc``, ``mean_acc``, ``miou`` and per-class ``iou`` (fractions) over a stream of batches.

    Equals :func:`~tridense.metrics.functional.segmentation_metrics` on the concatenated data.

    Args:
        num_classes: number of classes C.
        ignore_index: label that is not evaluated.
        absent: classes absent from ground truth and prediction are left out of ``miou`` (``skip``) or
            count as 0 (``zero``, MTI-Net / InvPT).
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, *, absent: str = "skip") -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        check_absent(absent)
        self.num_classes, self.ignore_index, self.absent = num_classes, ignore_index, absent
        self.add_stat("confmat", torch.zeros(num_classes, num_classes, dtype=torch.int64))

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ids (B, H, W) or logits (B, C, H, W); target ids (B, H, W), ignore_index skipped."""
        self.accumulate(segmentation_stats(pred.detach(), target, self.num_classes, self.ignore_index))

    def compute(self) -> dict[str, Any]:
        """The metrics over everything seen (all processes)."""
        return segmentation_from_stats(self.stats(), absent=self.absent)


class ImageSegmentationMetrics(StatsMetric):
    """The GAD authors' per-image IoU protocol over a stream of batches.

    Equals :func:`~tridense.metrics.functional.image_segmentation_metrics` on the concatenated data:
    ``pixel_acc``, ``mean_acc``, ``miou``, ``image_miou`` and per-class ``iou``.

    Args:
        num_classes: number of classes C.
        ignore_index: the "unlabelled" label.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.add_stat("iou_sum", torch.zeros(num_classes, dtype=torch.float64))
        self.add_stat("iou_count", torch.zeros(num_classes, dtype=torch.int64))
        for name, dtype in (
            ("image_miou_sum", torch.float64),
            ("acc_sum", torch.float64),
            ("images", torch.int64),
            ("correct", torch.int64),
            ("labelled", torch.int64),
        ):
            self.add_stat(name, torch.zeros((), dtype=dtype))

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ids (B, H, W) or logits (B, C, H, W); target ids (B, H, W)."""
        self.accumulate(image_segmentation_stats(pred.detach(), target, self.num_classes, self.ignore_index))

    def compute(self) -> dict[str, Any]:
        """The metrics over everything seen (all processes)."""
        return image_segmentation_from_stats(self.stats())
