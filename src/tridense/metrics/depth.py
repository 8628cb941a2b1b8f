"""Streaming depth metrics: the standard monocular-depth set and the KITTI benchmark's."""

from __future__ import annotations

import torch

from tridense.metrics.base import StatsMetric
from tridense.metrics.functional import (
    DEPTH_KEYS,
    KITTI_KEYS,
    CropArg,
    check_depth_range,
    check_reduction,
    crop_mask,
    depth_from_stats,
    depth_stats,
    kitti_from_stats,
    kitti_stats,
)


def _checked_crop(crop: CropArg) -> CropArg:
    """Validate a crop name (or mask dtype) at construction, not at the first batch."""
    if isinstance(crop, str):
        crop_mask(crop, 1, 1)
    elif crop is not None:
        crop = torch.as_tensor(crop)
        if crop.ndim < 2:
            raise ValueError(f"crop mask must be (H, W), got shape {tuple(crop.shape)}")
        crop_mask(crop, crop.shape[-2], crop.shape[-1])
    return crop


class DepthMetrics(StatsMetric):
    """``abs_rel``, ``sq_rel``, ``rmse``, ``rmse_log``, ``log10``, ``delta1..3`` over a stream of batches.

    Equals :func:`~tridense.metrics.functional.depth_metrics` on the concatenated data.

    Args:
        min_depth: valid ground truth is ``min_depth < g < max_depth``; predictions are clamped to it.
        max_depth: see ``min_depth``.
        crop: None, a name of :data:`~tridense.metrics.functional.CROPS` or a boolean (H, W) mask.
        reduction: ``image`` (mean of per-image metrics) or ``pixel`` (pooled over valid pixels).
    """

    def __init__(
        self, min_depth: float = 1e-3, max_depth: float = 10.0, crop: CropArg = None, reduction: str = "image"
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        check_depth_range(min_depth, max_depth)
        self.min_depth, self.max_depth, self.reduction = min_depth, max_depth, reduction
        self.crop = _checked_crop(crop)
        self.add_stat("sums", torch.zeros(len(DEPTH_KEYS), dtype=torch.float64))
        self.add_stat("count", torch.zeros((), dtype=torch.float64))

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: depth (B, 1, H, W), (B, H, W) or (H, W) in metres, 0 = invalid ground truth."""
        self.accumulate(
            depth_stats(
                pred.detach(),
                target,
                min_depth=self.min_depth,
                max_depth=self.max_depth,
                crop=self.crop,
                reduction=self.reduction,
            )
        )

    def compute(self) -> dict[str, float]:
        """The metrics over everything seen (all processes)."""
        return depth_from_stats(self.stats(), reduction=self.reduction)


class KittiMetrics(StatsMetric):
    """KITTI benchmark ``silog``, ``sq_rel``, ``abs_rel`` (percent) and ``irmse`` (1/km), per image, averaged.

    Equals :func:`~tridense.metrics.functional.kitti_metrics` on the concatenated data.

    Args:
        min_depth: valid ground truth is ``min_depth < g < max_depth``; predictions are clamped to it.
        max_depth: see ``min_depth``.
        crop: None, a name of :data:`~tridense.metrics.functional.CROPS` or a boolean (H, W) mask.
    """

    def __init__(self, min_depth: float = 1e-3, max_depth: float = 80.0, crop: CropArg = None) -> None:
        super().__init__()
        check_depth_range(min_depth, max_depth)
        self.min_depth, self.max_depth = min_depth, max_depth
        self.crop = _checked_crop(crop)
        self.add_stat("sums", torch.zeros(len(KITTI_KEYS), dtype=torch.float64))
        self.add_stat("count", torch.zeros((), dtype=torch.float64))

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: depth (B, 1, H, W), (B, H, W) or (H, W) in metres, 0 = invalid ground truth."""
        self.accumulate(
            kitti_stats(pred.detach(), target, min_depth=self.min_depth, max_depth=self.max_depth, crop=self.crop)
        )

    def compute(self) -> dict[str, float]:
        """The metrics over everything seen (all processes)."""
        return kitti_from_stats(self.stats())
