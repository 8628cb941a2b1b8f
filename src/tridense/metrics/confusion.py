"""The background-confusion analysis of the ASM supplementary (section 8): per class, the share of its pixels
predicted as background, read off the "background" column of the confusion matrix over the set."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from tridense.metrics.segmentation import SegmentationMetrics


def background_confusion_from_stats(stats: Mapping[str, torch.Tensor], background: int = 0) -> dict[str, Any]:
    """Background confusion from a summed confusion matrix ``confmat`` (rows: truth, cols: prediction).

    Returns:
        ``class_background_confusion``: per class c, confmat[c, bg] / Σ_j confmat[c, j] (NaN for the background
        class itself and for classes absent from the ground truth); ``background_confusion``: the share of
        all non-background pixels predicted as background (pooled); ``mean_background_confusion``: the mean
        of the per-class shares. All fractions.
    """
    cm = stats["confmat"].to(torch.float64).cpu()
    num_classes = cm.shape[0]
    if not 0 <= background < num_classes:
        raise ValueError(f"background class {background} is outside 0..{num_classes - 1}")
    rows = cm.sum(1)  # (C,)
    share = torch.where(rows > 0, cm[:, background] / rows.clamp_min(1), math.nan)
    share[background] = math.nan
    others = torch.arange(num_classes) != background
    total = float(rows[others].sum())
    defined = ~share.isnan()
    return {
        "background_confusion": float(cm[others, background].sum()) / total if total > 0 else math.nan,
        "mean_background_confusion": float(share[defined].mean()) if defined.any() else math.nan,
        "class_background_confusion": share.tolist(),
    }


def background_confusion(confmat: torch.Tensor, background: int = 0) -> dict[str, Any]:
    """:func:`background_confusion_from_stats` of one confusion matrix (C, C)."""
    return background_confusion_from_stats({"confmat": torch.as_tensor(confmat)}, background)


class BackgroundConfusion(SegmentationMetrics):
    """Streaming background confusion: the segmentation confusion matrix, read by
    :func:`background_confusion_from_stats`.

    Args:
        num_classes: C.
        background: the background class id (0 in VOC and Weizmann horse).
        ignore_index: label that is not evaluated.
    """

    def __init__(self, num_classes: int, background: int = 0, ignore_index: int = 255) -> None:
        super().__init__(num_classes, ignore_index)
        if not 0 <= background < num_classes:
            raise ValueError(f"background class {background} is outside 0..{num_classes - 1}")
        self.background = background

    def compute(self) -> dict[str, Any]:
        """The background-confusion shares over everything seen (all processes)."""
        return background_confusion_from_stats(self.stats(), self.background)
