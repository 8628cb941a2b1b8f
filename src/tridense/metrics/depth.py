"""Streaming depth metrics: the standard monocular-depth set and the KITTI benchmark's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from tridense.metrics.base import StatsMetric
from tridense.metrics.functional import (
    ALL_DEPTH_KEYS,
    DEPTH_KEYS,
    KITTI_KEYS,
    CropArg,
    check_depth_keys,
    check_depth_options,
    check_depth_range,
    check_reduction,
    crop_mask,
    depth_from_stats,
    depth_stats,
    frame_crop_mask,
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


def _batch_crop(crop: CropArg, target: torch.Tensor, meta: Sequence[Mapping[str, Any]] | None) -> CropArg:
    """A named crop placed in each sample's original frame when the batch's ``meta`` is given."""
    if isinstance(crop, str) and meta is not None:
        return frame_crop_mask(crop, target.shape[-2], target.shape[-1], meta, target.device)
    return crop


class _DepthStreamMetric(StatsMetric):
    """Shared by the streaming depth metrics: the validity, crop, clamp and scaling conventions, and summed
    statistics ``sums`` (K,) and ``count`` ()."""

    def _set_conventions(
        self,
        min_depth: float,
        max_depth: float | None,
        crop: CropArg,
        bounds: str,
        clamp: bool | Sequence[float],
        scaling: str | None,
        num_sums: int,
    ) -> None:
        check_depth_range(min_depth, max_depth)
        check_depth_options(bounds, clamp, scaling)
        self.min_depth, self.max_depth = min_depth, max_depth
        self.bounds, self.clamp, self.scaling = bounds, clamp, scaling
        self.crop = _checked_crop(crop)
        self.add_stat("sums", torch.zeros(num_sums, dtype=torch.float64))
        self.add_stat("count", torch.zeros((), dtype=torch.float64))

    def _conventions(self, target: torch.Tensor, meta: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
        """Keyword arguments of the functional statistics for a batch (its crop placed by ``meta``)."""
        return {
            "min_depth": self.min_depth,
            "max_depth": self.max_depth,
            "crop": _batch_crop(self.crop, target, meta),
            "bounds": self.bounds,
            "clamp": self.clamp,
            "scaling": self.scaling,
        }


class DepthMetrics(_DepthStreamMetric):
    """``abs_rel``, ``sq_rel``, ``rmse``, ``rmse_log``, ``log10``, ``delta1..3`` over a stream of batches.

    Equals :func:`~tridense.metrics.functional.depth_metrics` on the concatenated data (with the batch's
    ``meta`` a named crop is computed in each sample's original frame, see
    :func:`~tridense.metrics.functional.frame_crop_mask`).

    Args:
        min_depth: lower bound of valid ground truth.
        max_depth: upper bound of valid ground truth (None: no cap).
        crop: None, a name of :data:`~tridense.metrics.functional.CROPS` or a boolean (H, W) mask.
        reduction: ``image`` (mean of per-image metrics) or ``pixel`` (pooled over valid pixels).
        bounds: ``strict`` (min < g < max) or ``inclusive`` (min <= g <= max).
        clamp: clamp of predictions: True (to the validity range), (low, high), or False.
        scaling: None or ``median`` (per-image median ratio, monodepth2).
        keys: metrics reported, from :data:`~tridense.metrics.functional.ALL_DEPTH_KEYS`.
    """

    def __init__(
        self,
        min_depth: float = 1e-3,
        max_depth: float | None = 10.0,
        crop: CropArg = None,
        reduction: str = "image",
        *,
        bounds: str = "strict",
        clamp: bool | Sequence[float] = True,
        scaling: str | None = None,
        keys: Sequence[str] = DEPTH_KEYS,
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.reduction, self.keys = reduction, check_depth_keys(keys)
        self._set_conventions(min_depth, max_depth, crop, bounds, clamp, scaling, len(ALL_DEPTH_KEYS))

    def update(
        self, pred: torch.Tensor, target: torch.Tensor, meta: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        """Add a batch: depth (B, 1, H, W), (B, H, W) or (H, W) in metres, 0 = invalid; optional ``meta`` list."""
        self.accumulate(
            depth_stats(pred.detach(), target, reduction=self.reduction, **self._conventions(target, meta))
        )

    def compute(self) -> dict[str, float]:
        """The metrics over everything seen (all processes)."""
        return depth_from_stats(self.stats(), reduction=self.reduction, keys=self.keys)


class KittiMetrics(_DepthStreamMetric):
    """KITTI benchmark ``silog``, ``sq_rel``, ``abs_rel`` (percent) and ``irmse`` (1/km), per image, averaged.

    Equals :func:`~tridense.metrics.functional.kitti_metrics` on the concatenated data. The defaults are
    the devkit's (every g > 0 valid, no cap, no crop, no clamp).

    Args:
        min_depth: lower bound of valid ground truth.
        max_depth: upper bound of valid ground truth (None: no cap).
        crop: None, a name of :data:`~tridense.metrics.functional.CROPS` or a boolean (H, W) mask.
        bounds: ``strict`` or ``inclusive``.
        clamp: clamp of predictions: True (to the validity range), (low, high), or False.
        scaling: None or ``median``.
    """

    def __init__(
        self,
        min_depth: float = 0.0,
        max_depth: float | None = None,
        crop: CropArg = None,
        *,
        bounds: str = "strict",
        clamp: bool | Sequence[float] = False,
        scaling: str | None = None,
    ) -> None:
        super().__init__()
        self._set_conventions(min_depth, max_depth, crop, bounds, clamp, scaling, len(KITTI_KEYS))

    def update(
        self, pred: torch.Tensor, target: torch.Tensor, meta: Sequence[Mapping[str, Any]] | None = None
    ) -> None:
        """Add a batch: depth (B, 1, H, W), (B, H, W) or (H, W) in metres, 0 = invalid; optional ``meta`` list."""
        self.accumulate(kitti_stats(pred.detach(), target, **self._conventions(target, meta)))

    def compute(self) -> dict[str, float]:
        """The metrics over everything seen (all processes)."""
        return kitti_from_stats(self.stats())
