"""BSDS-style boundary precision, recall and F-measure of segmentations (Arbelaez et al., TPAMI 2011).

The contour benchmark of the BSDS (``correspondPixels`` of its toolbox) matches the thin boundary pixels
of a prediction to those of the ground truth **one-to-one** within a distance of ``tolerance`` times the
image diagonal (0.0075 by default): a predicted boundary pixel is a true positive if it is matched,
a ground-truth pixel is recalled if it is matched. Here:

- **Thin boundaries** of a label map: a pixel is a boundary pixel when its label differs from the label
  of its right or lower neighbour (one pixel wide, on one side of each edge). Per class ``c`` the same rule
  is applied to the binary map ``labels == c``; the class-agnostic ("overall") boundaries are those of the
  full label map.
- **Ignored pixels** (``ignore_index``, e.g. VOC's 255 band around objects) of the ground truth take the
  label of the nearest labelled pixel first (a Euclidean distance transform), so the ground-truth boundary
  runs through the middle of the void band, where the annotators put it. Predicted boundaries are
  evaluated everywhere; an image whose ground truth is entirely ignored is not evaluated at all.
- **Matching**: every pair of predicted and true boundary pixels within ``tolerance * diagonal`` (Euclidean,
  inclusive) is a candidate edge; a maximum-cardinality bipartite matching of that graph
  (Hopcroft-Karp, :func:`scipy.sparse.csgraph.maximum_bipartite_matching`) gives the number of matched
  pairs. The BSDS's min-cost assignment with its outlier cost (100 x the tolerance) also maximises the
  number of matches first, so the counts agree with it; the BSDS's sub-pixel handling and its morphological
  thinning of soft edge maps do not apply to label maps and are not reproduced.

Counts are summed over the images of the set, so precision = matched / predicted boundary pixels and
recall = matched / true boundary pixels are pooled over the set (as the BSDS's dataset-scale scores at one
threshold), F = 2PR / (P + R).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

from tridense.data.sample import IGNORE_INDEX
from tridense.metrics.base import StatsMetric
from tridense.metrics.functional import Stats

#: The BSDS default: match within 0.75 % of the image diagonal.
DEFAULT_TOLERANCE = 0.0075
BOUNDARY_KEYS: tuple[str, ...] = ("precision", "recall", "fmeasure")


def label_boundaries(labels: np.ndarray) -> np.ndarray:
    """Thin boundaries of an (H, W) label map: True where the label differs from the right or lower one."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return edge


def fill_ignored(labels: np.ndarray, ignore_index: int = IGNORE_INDEX) -> np.ndarray | None:
    """``labels`` with every ignored pixel given the nearest labelled pixel's label (None if none is labelled)."""
    ignored = labels == ignore_index
    if not ignored.any():
        return labels
    if ignored.all():
        return None
    _, (rows, cols) = ndimage.distance_transform_edt(ignored, return_indices=True)
    return labels[rows, cols]


def candidate_pairs(pred: np.ndarray, target: np.ndarray, max_distance: float) -> csr_matrix:
    """The (P, G) 0/1 graph of predicted / true boundary pixel pairs within ``max_distance`` (inclusive).

    Pixels are numbered in row-major order (as ``np.nonzero``); for every integer offset within the radius
    (about pi r^2 of them) each predicted pixel looks up the true boundary pixel at that offset.
    """
    h, w = pred.shape
    g_index = np.full((h, w), -1, dtype=np.int64)
    g_index[target] = np.arange(int(target.sum()))
    py, px = np.nonzero(pred)  # (P,) each
    reach = math.floor(max_distance + 1e-9)
    rows, cols = [], []
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            if dy * dy + dx * dx > max_distance * max_distance + 1e-9:
                continue
            y, x = py + dy, px + dx
            inside = np.flatnonzero((y >= 0) & (y < h) & (x >= 0) & (x < w))
            j = g_index[y[inside], x[inside]]
            hit = j >= 0
            rows.append(inside[hit])
            cols.append(j[hit])
    row, col = np.concatenate(rows), np.concatenate(cols)
    shape = (len(py), int(target.sum()))
    return csr_matrix((np.ones(len(row), dtype=np.int8), (row, col)), shape=shape)


def match_boundaries(pred: np.ndarray, target: np.ndarray, max_distance: float) -> int:
    """Number of one-to-one matched pairs between two boolean (H, W) boundary maps within ``max_distance``.

    A maximum-cardinality bipartite matching (Hopcroft-Karp) of the pairs at Euclidean distance <=
    ``max_distance`` (:func:`candidate_pairs`).
    """
    if not pred.any() or not target.any():
        return 0
    graph = candidate_pairs(pred, target, max_distance)  # (P, G)
    if graph.nnz == 0:
        return 0
    match = maximum_bipartite_matching(graph, perm_type="column")  # (P,) matched column or -1
    return int((match >= 0).sum())


def _image_counts(
    pred: np.ndarray, target: np.ndarray, num_classes: int, max_distance: float, ignore_index: int
) -> np.ndarray:
    """(3, C + 1) int64 counts [matched, predicted, true] per class and (last column) class-agnostic."""
    counts = np.zeros((3, num_classes + 1), dtype=np.int64)
    filled = fill_ignored(target, ignore_index)
    if filled is None:
        return counts
    for c in np.union1d(np.unique(pred), np.unique(filled)):
        pb, gb = label_boundaries(pred == c), label_boundaries(filled == c)
        counts[:, c] = (match_boundaries(pb, gb, max_distance), pb.sum(), gb.sum())
    pb, gb = label_boundaries(pred), label_boundaries(filled)
    counts[:, num_classes] = (match_boundaries(pb, gb, max_distance), pb.sum(), gb.sum())
    return counts


def _as_ids(pred: Any, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    pred = torch.as_tensor(pred)
    if pred.ndim == target.ndim + 1:
        if pred.shape[-3] != num_classes:
            raise ValueError(f"logits have {pred.shape[-3]} channels, expected num_classes = {num_classes}")
        pred = pred.argmax(dim=-3)
    if pred.shape != target.shape or pred.is_floating_point():
        raise ValueError(
            f"boundary metrics need integer ids of the target's shape {tuple(target.shape)} or logits "
            f"(B, {num_classes}, H, W), got {pred.dtype} {tuple(pred.shape)}"
        )
    return pred


def boundary_stats(
    pred: Any,
    target: Any,
    num_classes: int,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    ignore_index: int = IGNORE_INDEX,
) -> Stats:
    """Summable counts of :func:`boundary_metrics` for a batch.

    Returns:
        ``matched``, ``predicted``, ``true``: int64 (C + 1,) boundary pixel counts per class, the last entry
        the class-agnostic boundaries of the label maps.
    """
    if not 0 < tolerance < 1:
        raise ValueError(f"boundary tolerance is a fraction of the image diagonal in (0, 1), got {tolerance}")
    target, pred = torch.as_tensor(target), torch.as_tensor(pred)
    if target.ndim == 2:
        target, pred = target[None], pred[None]
    if target.ndim != 3 or target.is_floating_point():
        raise ValueError(
            f"boundary target must be integer (B, H, W) or (H, W), got {target.dtype} {tuple(target.shape)}"
        )
    pred = _as_ids(pred, target, num_classes)
    h, w = target.shape[-2:]
    max_distance = tolerance * math.hypot(h, w)
    p_np, t_np = pred.cpu().numpy(), target.cpu().numpy()
    counts = sum(
        (_image_counts(p_np[b], t_np[b], num_classes, max_distance, ignore_index) for b in range(len(t_np))),
        np.zeros((3, num_classes + 1), dtype=np.int64),
    )
    tensor = torch.from_numpy(counts)
    return {"matched": tensor[0], "predicted": tensor[1], "true": tensor[2]}


def _prf(matched: torch.Tensor, predicted: torch.Tensor, true: torch.Tensor) -> tuple[torch.Tensor, ...]:
    m, p, t = (x.to(torch.float64) for x in (matched, predicted, true))
    precision = torch.where(p > 0, m / p.clamp_min(1), math.nan)
    recall = torch.where(t > 0, m / t.clamp_min(1), math.nan)
    f = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    f = torch.where(precision.isnan() | recall.isnan(), math.nan, f)
    return precision, recall, f


def boundary_from_stats(stats: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Boundary metrics (fractions) from summed :func:`boundary_stats`.

    Returns:
        ``precision``, ``recall``, ``fmeasure`` of the class-agnostic boundaries; ``class_precision``,
        ``class_recall``, ``class_fmeasure`` lists (NaN where a class has no predicted / true boundary);
        ``mean_fmeasure`` over the classes with a defined F.
    """
    precision, recall, f = _prf(stats["matched"], stats["predicted"], stats["true"])
    per_class = f[:-1]
    defined = ~per_class.isnan()
    return {
        "precision": float(precision[-1]),
        "recall": float(recall[-1]),
        "fmeasure": float(f[-1]),
        "class_precision": precision[:-1].tolist(),
        "class_recall": recall[:-1].tolist(),
        "class_fmeasure": per_class.tolist(),
        "mean_fmeasure": float(per_class[defined].mean()) if defined.any() else math.nan,
    }


def boundary_metrics(
    pred: Any,
    target: Any,
    num_classes: int,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    ignore_index: int = IGNORE_INDEX,
) -> dict[str, Any]:
    """Boundary precision, recall and F-measure of segmentations, BSDS-style (see the module docstring).

    Args:
        pred: class ids (B, H, W) / (H, W) or logits (B, C, H, W) / (C, H, W).
        target: class ids of the same size; ``ignore_index`` pixels take the nearest label.
        num_classes: C.
        tolerance: matching distance as a fraction of the image diagonal.
        ignore_index: the void label of the ground truth.
    """
    return boundary_from_stats(
        boundary_stats(pred, target, num_classes, tolerance=tolerance, ignore_index=ignore_index)
    )


class BoundaryMetrics(StatsMetric):
    """Streaming :func:`boundary_metrics`: int64 boundary-pixel counts summed over batches and processes.

    Args:
        num_classes: C.
        tolerance: matching distance as a fraction of the image diagonal (BSDS: 0.0075).
        ignore_index: the void label of the ground truth.
    """

    def __init__(
        self, num_classes: int, tolerance: float = DEFAULT_TOLERANCE, ignore_index: int = IGNORE_INDEX
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not 0 < tolerance < 1:
            raise ValueError(f"boundary tolerance is a fraction of the image diagonal in (0, 1), got {tolerance}")
        self.num_classes, self.tolerance, self.ignore_index = num_classes, tolerance, ignore_index
        for name in ("matched", "predicted", "true"):
            self.add_stat(name, torch.zeros(num_classes + 1, dtype=torch.int64))

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ids (B, H, W) or logits (B, C, H, W); target ids (B, H, W)."""
        self.accumulate(
            boundary_stats(
                pred.detach(), target, self.num_classes, tolerance=self.tolerance, ignore_index=self.ignore_index
            )
        )

    def compute(self) -> dict[str, Any]:
        """The metrics over everything seen (all processes)."""
        return boundary_from_stats(self.stats())
