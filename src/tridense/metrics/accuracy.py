"""Threshold accuracies at any threshold, strict or inclusive: depth δ at 1.25^k for any k, normals within T.

The ASM benchmark on 2D-3D-S (Hwang et al.'s released ``benchmark_stanford_scenes.py``) reports depth
accuracies at 1.25^(1/8), 1.25^(1/4), 1.25^(1/2), 1.25, 1.25^2, 1.25^3 (its printout labels the first three
as the last three; here each is named by its exponent) and normals within 2.8125, 5.625, 11.25, 22.5 and
30 degrees, counted **inclusively** (angle <= T), while its depth accuracies are strict (ratio < 1.25^k).

Keys: ``delta<k>`` for the fraction of valid pixels with max(p/g, g/p) below 1.25^k, ``k`` printed with
``:g`` — ``delta1``, ``delta2``, ``delta3`` keep their usual names and ``delta0.125`` is 1.25^(1/8);
``within_<T>`` in percent as in :mod:`tridense.metrics.functional`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from tridense.metrics.base import StatsMetric
from tridense.metrics.functional import (
    CropArg,
    Stats,
    _depth_inputs,
    check_reduction,
    check_thresholds,
    normal_angles,
    within_key,
)

#: Exponents k of the depth accuracies 1.25^k of the ASM benchmark.
ASM_DEPTH_EXPONENTS: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 3.0)
#: Normal thresholds (degrees) of the ASM paper's Table 4.
ASM_NORMAL_THRESHOLDS: tuple[float, ...] = (2.8125, 5.625, 11.25, 22.5, 30.0)
DELTA_BASE = 1.25


def delta_key(exponent: float) -> str:
    """Result key of the accuracy at 1.25^k: 1 -> ``delta1``, 0.125 -> ``delta0.125``."""
    return f"delta{exponent:g}"


def check_exponents(exponents: Sequence[float]) -> tuple[float, ...]:
    """Exponents as a tuple of positive floats, else a ValueError."""
    exponents = tuple(float(k) for k in exponents)
    if not exponents or any(not k > 0 for k in exponents):
        raise ValueError(f"depth accuracy exponents must be positive numbers, got {exponents}")
    return exponents


def ratio_within(ratio: torch.Tensor, threshold: float, inclusive: bool) -> torch.Tensor:
    """``ratio <= threshold`` if inclusive else ``ratio < threshold`` (bool, same shape)."""
    return ratio <= threshold if inclusive else ratio < threshold


def depth_accuracy_stats(
    pred: Any,
    target: Any,
    *,
    exponents: Sequence[float] = ASM_DEPTH_EXPONENTS,
    inclusive: bool = False,
    min_depth: float = 1e-3,
    max_depth: float | None = 10.0,
    crop: CropArg = None,
    reduction: str = "pixel",
    clamp: bool | Sequence[float] = True,
) -> Stats:
    """Summable statistics of :func:`depth_accuracy`: ``sums`` float64 (K,) and ``count`` float64 ().

    For ``pixel`` reduction the numbers of valid pixels under each threshold and of valid pixels; for
    ``image`` the sums over images of the per-image fractions and the number of images with a valid pixel.
    """
    check_reduction(reduction)
    exponents = check_exponents(exponents)
    p, g, valid = _depth_inputs(pred, target, min_depth, max_depth, crop, clamp=clamp)
    ratio = torch.maximum(p / g, g / p)  # (B, H, W)
    hits = torch.stack(
        [(ratio_within(ratio, DELTA_BASE**k, inclusive) & valid).sum(dim=(1, 2)) for k in exponents], dim=1
    ).to(torch.float64)  # (B, K)
    n = valid.sum(dim=(1, 2)).to(torch.float64)  # (B,)
    if reduction == "pixel":
        return {"sums": hits.sum(0), "count": n.sum()}
    keep = n > 0
    return {"sums": (hits[keep] / n[keep, None]).sum(0), "count": keep.sum().to(torch.float64)}


def depth_accuracy_from_stats(
    stats: Mapping[str, torch.Tensor], *, exponents: Sequence[float] = ASM_DEPTH_EXPONENTS
) -> dict[str, float]:
    """``delta<k>`` fractions from summed :func:`depth_accuracy_stats`."""
    exponents = check_exponents(exponents)
    count = float(stats["count"])
    values = (stats["sums"].to(torch.float64) / count).tolist() if count > 0 else [math.nan] * len(exponents)
    return {delta_key(k): v for k, v in zip(exponents, values, strict=True)}


def depth_accuracy(
    pred: Any,
    target: Any,
    *,
    exponents: Sequence[float] = ASM_DEPTH_EXPONENTS,
    inclusive: bool = False,
    min_depth: float = 1e-3,
    max_depth: float | None = 10.0,
    crop: CropArg = None,
    reduction: str = "pixel",
    clamp: bool | Sequence[float] = True,
) -> dict[str, float]:
    """Fraction of valid pixels with max(p/g, g/p) < 1.25^k (``<=`` if ``inclusive``) for each exponent k.

    Validity, clamping and crop as :func:`~tridense.metrics.functional.depth_metrics`.

    Args:
        pred: predicted depth in metres, (B, 1, H, W), (B, H, W) or (H, W).
        target: ground truth of the same size, 0 = invalid.
        exponents: the k of 1.25^k; the default is the ASM benchmark's six.
        inclusive: count ratios equal to the threshold.
        min_depth: lower bound of valid ground truth and of the clamped prediction.
        max_depth: upper bound of valid ground truth and of the clamped prediction.
        crop: None, a name of :data:`~tridense.metrics.functional.CROPS` or a boolean mask.
        reduction: ``pixel`` (pooled, the ASM benchmark's) or ``image``.
        clamp: clamp of the prediction (True: the validity range; (low, high); False: none).

    Returns:
        ``delta<k>`` fractions in [0, 1] (see :func:`delta_key`).
    """
    stats = depth_accuracy_stats(
        pred,
        target,
        exponents=exponents,
        inclusive=inclusive,
        min_depth=min_depth,
        max_depth=max_depth,
        crop=crop,
        reduction=reduction,
        clamp=clamp,
    )
    return depth_accuracy_from_stats(stats, exponents=exponents)


def normal_within_stats(
    pred: Any,
    target: Any,
    *,
    thresholds: Sequence[float] = ASM_NORMAL_THRESHOLDS,
    inclusive: bool = True,
    mask: Any = None,
) -> Stats:
    """Summable statistics of :func:`normal_within`: ``within`` int64 (T,) and ``count`` int64 ()."""
    thresholds = check_thresholds(thresholds)
    angles = normal_angles(pred, target, mask)  # (N,)
    within = torch.stack([ratio_within(angles, t, inclusive).sum() for t in thresholds]).to(torch.int64)
    return {"within": within, "count": torch.tensor(angles.numel(), dtype=torch.int64)}


def normal_within_from_stats(
    stats: Mapping[str, torch.Tensor], *, thresholds: Sequence[float] = ASM_NORMAL_THRESHOLDS
) -> dict[str, float]:
    """``within_<T>`` percentages from summed :func:`normal_within_stats`."""
    thresholds = check_thresholds(thresholds)
    n = int(stats["count"])
    return {
        within_key(t): 100.0 * c / n if n > 0 else math.nan
        for t, c in zip(thresholds, stats["within"].tolist(), strict=True)
    }


def normal_within(
    pred: Any,
    target: Any,
    *,
    thresholds: Sequence[float] = ASM_NORMAL_THRESHOLDS,
    inclusive: bool = True,
    mask: Any = None,
) -> dict[str, float]:
    """Percent of valid pixels whose angular error is <= T (``< T`` unless ``inclusive``), pooled.

    Args:
        pred: predicted normals (B, 3, H, W) or (3, H, W).
        target: true normals, (0, 0, 0) = invalid.
        thresholds: angles T in degrees; the default is the ASM paper's Table 4.
        inclusive: count angles equal to T (the ASM benchmark does).
        mask: optional boolean mask of pixels to evaluate.
    """
    stats = normal_within_stats(pred, target, thresholds=thresholds, inclusive=inclusive, mask=mask)
    return normal_within_from_stats(stats, thresholds=thresholds)


class DepthAccuracy(StatsMetric):
    """Streaming :func:`depth_accuracy` (equal to it on the concatenated data).

    Args:
        exponents: the k of 1.25^k.
        inclusive: count ratios equal to the threshold.
        min_depth: see :func:`depth_accuracy`.
        max_depth: see :func:`depth_accuracy`.
        crop: see :func:`depth_accuracy`.
        reduction: ``pixel`` or ``image``.
        clamp: see :func:`depth_accuracy`.
    """

    def __init__(
        self,
        exponents: Sequence[float] = ASM_DEPTH_EXPONENTS,
        *,
        inclusive: bool = False,
        min_depth: float = 1e-3,
        max_depth: float | None = 10.0,
        crop: CropArg = None,
        reduction: str = "pixel",
        clamp: bool | Sequence[float] = True,
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.exponents = check_exponents(exponents)
        self.inclusive, self.min_depth, self.max_depth = inclusive, min_depth, max_depth
        self.crop, self.reduction, self.clamp = crop, reduction, clamp
        self.add_stat("sums", torch.zeros(len(self.exponents), dtype=torch.float64))
        self.add_stat("count", torch.zeros((), dtype=torch.float64))

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of depth maps in metres (0 = invalid ground truth)."""
        self.accumulate(
            depth_accuracy_stats(
                pred.detach(),
                target,
                exponents=self.exponents,
                inclusive=self.inclusive,
                min_depth=self.min_depth,
                max_depth=self.max_depth,
                crop=self.crop,
                reduction=self.reduction,
                clamp=self.clamp,
            )
        )

    def compute(self) -> dict[str, float]:
        """``delta<k>`` over everything seen (all processes)."""
        return depth_accuracy_from_stats(self.stats(), exponents=self.exponents)


class NormalWithin(StatsMetric):
    """Streaming :func:`normal_within` (equal to it on the concatenated data).

    Args:
        thresholds: angles T in degrees.
        inclusive: count angles equal to T.
    """

    def __init__(self, thresholds: Sequence[float] = ASM_NORMAL_THRESHOLDS, *, inclusive: bool = True) -> None:
        super().__init__()
        self.thresholds, self.inclusive = check_thresholds(thresholds), inclusive
        self.add_stat("within", torch.zeros(len(self.thresholds), dtype=torch.int64))
        self.add_stat("count", torch.zeros((), dtype=torch.int64))

    def update(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Add a batch of normals (B, 3, H, W), (0, 0, 0) = invalid; optional boolean mask."""
        self.accumulate(
            normal_within_stats(pred.detach(), target, thresholds=self.thresholds, inclusive=self.inclusive, mask=mask)
        )

    def compute(self) -> dict[str, float]:
        """``within_<T>`` over everything seen (all processes)."""
        return normal_within_from_stats(self.stats(), thresholds=self.thresholds)
