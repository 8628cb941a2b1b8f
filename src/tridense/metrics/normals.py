"""Streaming surface-normal metrics: angular error statistics with an exact ``within_<T>`` and median."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tridense.metrics.base import StatsMetric
from tridense.metrics.functional import (
    DEFAULT_NORMAL_THRESHOLDS,
    NORMAL_BIN_WIDTH,
    check_thresholds,
    histogram_bins,
    normal_from_stats,
    normal_stats,
)


class NormalMetrics(StatsMetric):
    """``mean``, ``median``, ``rmse`` (degrees) and ``within_<T>`` (percent) over a stream of batches.

    Equals :func:`~tridense.metrics.functional.normal_metrics` on the concatenated data: the angle sums and
    threshold counters are exact, the median is interpolated in an int64 histogram of ``bin_width``
    degree bins (within one bin of the true median).

    Args:
        thresholds: angles T (degrees) of ``within_<T>``.
        bin_width: histogram bin width in degrees.
    """

    def __init__(
        self, thresholds: Sequence[float] = DEFAULT_NORMAL_THRESHOLDS, bin_width: float = NORMAL_BIN_WIDTH
    ) -> None:
        super().__init__()
        self.thresholds = check_thresholds(thresholds)
        self.bin_width = bin_width
        self.add_stat("hist", torch.zeros(histogram_bins(bin_width), dtype=torch.int64))
        self.add_stat("count", torch.zeros((), dtype=torch.int64))
        self.add_stat("sum", torch.zeros((), dtype=torch.float64))
        self.add_stat("sum_sq", torch.zeros((), dtype=torch.float64))
        self.add_stat("within", torch.zeros(len(self.thresholds), dtype=torch.int64))

    def update(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Add a batch: normals (B, 3, H, W) or (3, H, W); ground truth (0, 0, 0) = invalid; optional mask."""
        self.accumulate(
            normal_stats(pred.detach(), target, thresholds=self.thresholds, mask=mask, bin_width=self.bin_width)
        )

    def compute(self) -> dict[str, float]:
        """The metrics over everything seen (all processes)."""
        return normal_from_stats(self.stats(), thresholds=self.thresholds, bin_width=self.bin_width)
