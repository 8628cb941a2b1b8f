"""Pure metric functions: sufficient statistics of a set of predictions, and the metrics computed from them.

Every metric family has three functions. ``<family>_stats(pred, target, ...)`` reduces a batch to a dict of
tensors that are *summed* over batches and processes (error sums, counts, a confusion matrix, an angle
histogram; float64 or int64); ``<family>_from_stats(stats, ...)`` turns the (summed) statistics into a dict
of Python floats; ``<family>_metrics(pred, target, ...)`` is the one-shot composition of both. The
torchmetrics classes in :mod:`tridense.metrics` accumulate the same statistics, so a streaming evaluation
equals the one-shot value on the concatenated data by construction, for any batch size and any number of
processes.

Units, as the literature prints them (see ``docs/metrics.md`` for every formula):

* depth (:func:`depth_metrics`): ``abs_rel`` and ``delta1..3`` are **fractions** (``delta1 = 0.95`` means
  95 %); ``rmse`` and ``sq_rel`` in metres; ``rmse_log`` and ``log10`` in natural-log / log10 units;
* KITTI benchmark (:func:`kitti_metrics`): ``silog``, ``sq_rel`` and ``abs_rel`` in **percent** (x100),
  ``irmse`` in 1/km;
* normals (:func:`normal_metrics`): angles in **degrees**, ``within_<T>`` in **percent**;
* segmentation (:func:`segmentation_metrics`): ``pixel_acc``, ``mean_acc``, ``miou`` and ``iou`` are
  **fractions** in [0, 1].

A metric over an empty set (no valid pixel, no valid image) is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tridense.data.sample import IGNORE_INDEX
from tridense.errors import DataError
from tridense.ops import vector_norm

Stats = dict[str, torch.Tensor]

DEPTH_KEYS: tuple[str, ...] = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3")
KITTI_KEYS: tuple[str, ...] = ("silog", "sq_rel", "abs_rel", "irmse")
SEGMENTATION_KEYS: tuple[str, ...] = ("pixel_acc", "mean_acc", "miou", "iou")
#: Default angle thresholds (degrees) of ``within_<T>``; :data:`FINE_NORMAL_THRESHOLDS` on request.
DEFAULT_NORMAL_THRESHOLDS: tuple[float, ...] = (11.25, 22.5, 30.0)
FINE_NORMAL_THRESHOLDS: tuple[float, ...] = (2.8125, 5.625, 7.5)
#: Width (degrees) of the angle histogram bins from which the median is interpolated (error < one bin).
NORMAL_BIN_WIDTH = 0.005
REDUCTIONS: tuple[str, ...] = ("image", "pixel")


# ----------------------------------------------------------------------------------------------- crops
@dataclass(frozen=True)
class Crop:
    """An evaluation crop given as fractions of the image height and width (row/col start and end).

    At size (H, W) the crop keeps rows ``floor(top H):floor(bottom H)`` and cols
    ``floor(left W):floor(right W)``.
    """

    top: float
    bottom: float
    left: float
    right: float
    description: str

    def mask(self, height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Boolean (H, W) mask, True inside the crop."""
        r0, r1 = _frac_index(self.top, height), _frac_index(self.bottom, height)
        c0, c1 = _frac_index(self.left, width), _frac_index(self.right, width)
        mask = torch.zeros(height, width, dtype=torch.bool, device=device)
        mask[r0:r1, c0:c1] = True
        return mask


def _frac_index(fraction: float, size: int) -> int:
    # the tiny epsilon makes exact fractions such as 471/480 * 480 land on 471, not 470.999...
    return math.floor(fraction * size + 1e-6)


#: Named evaluation crops (the CLI lists them).
CROPS: dict[str, Crop] = {
    "eigen_nyu": Crop(
        45 / 480,
        471 / 480,
        41 / 640,
        601 / 640,
        "NYU Depth V2 Eigen crop: rows 45:471, cols 41:601 at 480x640, scaled proportionally",
    ),
    "garg": Crop(
        0.40810811,
        0.99189189,
        0.03594771,
        0.96405229,
        "KITTI Garg crop: rows 0.40810811H:0.99189189H, cols 0.03594771W:0.96405229W",
    ),
    "eigen_kitti": Crop(
        0.3324324,
        0.91351351,
        0.0359477,
        0.96405229,
        "KITTI Eigen crop: rows 0.3324324H:0.91351351H, cols 0.0359477W:0.96405229W",
    ),
}

CropArg = str | torch.Tensor | None


def crop_mask(crop: CropArg, height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor | None:
    """The evaluation mask of ``crop`` at size (H, W).

    Args:
        crop: None (no crop), a name of :data:`CROPS`, or a boolean mask (H, W), (B, H, W) or (B, 1, H, W).
        height: image height.
        width: image width.
        device: device of the returned mask.

    Returns:
        None for no crop, else a boolean mask broadcastable to (B, H, W).
    """
    if crop is None:
        return None
    if isinstance(crop, str):
        if crop not in CROPS:
            raise ValueError(f"unknown crop {crop!r}; expected None, a boolean mask or one of {sorted(CROPS)}")
        return CROPS[crop].mask(height, width, device)
    mask = torch.as_tensor(crop, device=device)
    if mask.dtype != torch.bool:
        raise ValueError(f"crop mask must be a boolean tensor, got dtype {mask.dtype}")
    if mask.ndim == 4 and mask.shape[1] == 1:
        mask = mask[:, 0]
    if mask.ndim not in (2, 3) or tuple(mask.shape[-2:]) != (height, width):
        raise ValueError(
            f"crop mask has shape {tuple(mask.shape)}, expected (H, W), (B, H, W) or (B, 1, H, W) "
            f"with (H, W) = ({height}, {width})"
        )
    return mask


# ----------------------------------------------------------------------------------------------- depth
def _depth_batch(x: Any, name: str) -> torch.Tensor:
    """(B, 1, H, W), (B, H, W) or (H, W) -> float64 (B, H, W)."""
    x = torch.as_tensor(x)
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    elif x.ndim == 2:
        x = x[None]
    elif x.ndim != 3:
        raise ValueError(f"depth {name} must be (B, 1, H, W), (B, H, W) or (H, W), got {tuple(x.shape)}")
    return x.to(torch.float64)


def _depth_inputs(
    pred: Any, target: Any, min_depth: float, max_depth: float, crop: CropArg
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validated float64 (B, H, W) prediction (clamped), target (1 where invalid) and valid mask."""
    check_depth_range(min_depth, max_depth)
    p, g = _depth_batch(pred, "prediction"), _depth_batch(target, "target")
    if p.shape != g.shape:
        raise ValueError(
            f"depth prediction has shape {tuple(torch.as_tensor(pred).shape)} but target has shape "
            f"{tuple(torch.as_tensor(target).shape)}; resize the prediction to the ground-truth size"
        )
    p = p.to(g.device)
    valid = (g > min_depth) & (g < max_depth)  # (B, H, W)
    mask = crop_mask(crop, g.shape[-2], g.shape[-1], g.device)
    if mask is not None:
        valid = valid & mask
    # invalid pixels get harmless values so that no inf/NaN is ever formed; they are masked out anyway
    p = torch.where(valid, p.clamp(min_depth, max_depth), 1.0)
    g = torch.where(valid, g, 1.0)
    return p, g, valid


def check_depth_range(min_depth: float, max_depth: float) -> None:
    """Raise a ValueError unless 0 < min_depth < max_depth."""
    if not 0 < min_depth < max_depth:
        raise ValueError(f"need 0 < min_depth < max_depth, got min_depth={min_depth}, max_depth={max_depth}")


def _masked_sum(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-image sum over valid pixels: (B, H, W) -> (B,)."""
    return torch.where(valid, x, 0.0).sum(dim=(1, 2))


def check_reduction(reduction: str) -> None:
    """Raise a ValueError unless ``reduction`` is one of :data:`REDUCTIONS`."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; expected one of {REDUCTIONS}")


def depth_stats(
    pred: Any,
    target: Any,
    *,
    min_depth: float = 1e-3,
    max_depth: float = 10.0,
    crop: CropArg = None,
    reduction: str = "image",
) -> Stats:
    """Sufficient statistics of :func:`depth_metrics` for one batch.

    Returns:
        ``sums`` float64 (8,) in the order of :data:`DEPTH_KEYS` and ``count`` float64 (): for ``image``
        reduction the sums over images of the per-image metrics (RMSEs already square-rooted) and the
        number of images with a valid pixel; for ``pixel`` reduction the sums over valid pixels of the
        per-pixel terms (squared errors for the RMSEs) and the number of valid pixels.
    """
    check_reduction(reduction)
    p, g, valid = _depth_inputs(pred, target, min_depth, max_depth, crop)
    diff = p - g
    log_diff = torch.log(p) - torch.log(g)
    ratio = torch.maximum(p / g, g / p)
    sums = torch.stack(
        [  # each term is reduced at once, so only one (B, H, W) temporary lives at a time
            _masked_sum(diff.abs() / g, valid),
            _masked_sum(diff.square() / g, valid),
            _masked_sum(diff.square(), valid),
            _masked_sum(log_diff.square(), valid),
            _masked_sum(log_diff.abs() / math.log(10.0), valid),
            *[_masked_sum((ratio < 1.25**k).to(torch.float64), valid) for k in (1, 2, 3)],
        ],
        dim=1,
    )  # (B, 8)
    n = valid.sum(dim=(1, 2)).to(torch.float64)  # (B,)
    if reduction == "pixel":
        return {"sums": sums.sum(0), "count": n.sum()}
    keep = n > 0
    per_image = sums[keep] / n[keep, None]  # (B', 8)
    per_image[:, 2:4] = per_image[:, 2:4].sqrt()  # per-image rmse, rmse_log
    return {"sums": per_image.sum(0), "count": keep.sum().to(torch.float64)}


def depth_from_stats(stats: Mapping[str, torch.Tensor], *, reduction: str = "image") -> dict[str, float]:
    """Depth metrics (fractions, metres) from summed :func:`depth_stats`."""
    check_reduction(reduction)
    count = float(stats["count"])
    if count == 0:
        return dict.fromkeys(DEPTH_KEYS, math.nan)
    values = stats["sums"].to(torch.float64) / count
    if reduction == "pixel":
        values[2:4] = values[2:4].sqrt()
    return dict(zip(DEPTH_KEYS, values.tolist(), strict=True))


def depth_metrics(
    pred: Any,
    target: Any,
    *,
    min_depth: float = 1e-3,
    max_depth: float = 10.0,
    crop: CropArg = None,
    reduction: str = "image",
) -> dict[str, float]:
    """Standard monocular depth metrics.

    Valid pixels: ``min_depth < g < max_depth`` inside the crop; predictions are clamped to
    ``[min_depth, max_depth]``.

    Args:
        pred: predicted depth in metres, (B, 1, H, W), (B, H, W) or (H, W).
        target: ground-truth depth of the same size, 0 (or anything outside the range) = invalid.
        min_depth: lower bound of valid ground truth and of the clamped prediction.
        max_depth: upper bound of valid ground truth and of the clamped prediction.
        crop: None, a name of :data:`CROPS` or a boolean mask (see :func:`crop_mask`).
        reduction: ``image`` (per-image metrics averaged over images that have a valid pixel) or
            ``pixel`` (pooled over all valid pixels).

    Returns:
        ``abs_rel``, ``sq_rel`` (m), ``rmse`` (m), ``rmse_log``, ``log10``, ``delta1..3`` (fractions in [0, 1]).
    """
    stats = depth_stats(pred, target, min_depth=min_depth, max_depth=max_depth, crop=crop, reduction=reduction)
    return depth_from_stats(stats, reduction=reduction)


# ----------------------------------------------------------------------------------------------- KITTI
def kitti_stats(
    pred: Any, target: Any, *, min_depth: float = 1e-3, max_depth: float = 80.0, crop: CropArg = None
) -> Stats:
    """Sufficient statistics of :func:`kitti_metrics`: per-image metrics summed over images, image count."""
    p, g, valid = _depth_inputs(pred, target, min_depth, max_depth, crop)
    n = valid.sum(dim=(1, 2)).to(torch.float64)  # (B,)
    keep = n > 0
    n_safe = n.clamp_min(1.0)
    d = torch.log(p) - torch.log(g)
    mean_d = _masked_sum(d, valid) / n_safe
    mean_d2 = _masked_sum(d.square(), valid) / n_safe
    silog = 100.0 * (mean_d2 - mean_d.square()).clamp_min(0.0).sqrt()
    sq_rel = 100.0 * _masked_sum((p - g).square() / g.square(), valid) / n_safe
    abs_rel = 100.0 * _masked_sum((p - g).abs() / g, valid) / n_safe
    irmse = (_masked_sum((1000.0 / p - 1000.0 / g).square(), valid) / n_safe).sqrt()  # 1/km
    per_image = torch.stack([silog, sq_rel, abs_rel, irmse], dim=1)[keep]  # (B', 4)
    return {"sums": per_image.sum(0), "count": keep.sum().to(torch.float64)}


def kitti_from_stats(stats: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """KITTI benchmark metrics (percent, 1/km) from summed :func:`kitti_stats`."""
    count = float(stats["count"])
    if count == 0:
        return dict.fromkeys(KITTI_KEYS, math.nan)
    values = stats["sums"].to(torch.float64) / count
    return dict(zip(KITTI_KEYS, values.tolist(), strict=True))


def kitti_metrics(
    pred: Any, target: Any, *, min_depth: float = 1e-3, max_depth: float = 80.0, crop: CropArg = None
) -> dict[str, float]:
    """Metrics of the KITTI depth-prediction benchmark (its devkit's ``evaluate_depth``).

    Per image, over valid pixels (``min_depth < g < max_depth`` in the crop, prediction clamped), then
    averaged over images: ``silog`` = 100 sqrt(mean(d^2) - mean(d)^2) with d = ln p - ln g;
    ``sq_rel`` = 100 mean((p - g)^2 / g^2) and ``abs_rel`` = 100 mean(|p - g| / g) (percent, as the
    devkit's "squared/abs relative" times 100); ``irmse`` = sqrt(mean((1/p - 1/g)^2)) in 1/km.

    Args:
        pred: predicted depth in metres, (B, 1, H, W), (B, H, W) or (H, W).
        target: ground-truth depth of the same size, 0 = invalid.
        min_depth: lower bound of valid ground truth and of the clamped prediction.
        max_depth: upper bound of valid ground truth and of the clamped prediction.
        crop: None, a name of :data:`CROPS` or a boolean mask.
    """
    return kitti_from_stats(kitti_stats(pred, target, min_depth=min_depth, max_depth=max_depth, crop=crop))


# --------------------------------------------------------------------------------------------- normals
def _normal_batch(x: Any, name: str) -> torch.Tensor:
    """(B, 3, H, W) or (3, H, W) -> float64 (B, 3, H, W)."""
    x = torch.as_tensor(x)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"normal {name} must be (B, 3, H, W) or (3, H, W), got shape {tuple(x.shape)}")
    return x.to(torch.float64)


def histogram_bins(bin_width: float) -> int:
    """Number of ``bin_width``-degree bins that cover [0, 180]."""
    if not 0 < bin_width <= 1:
        raise ValueError(f"normal histogram bin_width must be in (0, 1] degrees, got {bin_width}")
    return math.ceil(180.0 / bin_width - 1e-9)


def check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    """Thresholds as a tuple of floats in (0, 180] degrees, else a ValueError."""
    thresholds = tuple(float(t) for t in thresholds)
    if not thresholds or any(not 0 < t <= 180 for t in thresholds):
        raise ValueError(f"normal thresholds must be angles in (0, 180] degrees, got {thresholds}")
    return thresholds


def normal_angles(pred: Any, target: Any, mask: Any = None) -> torch.Tensor:
    """Angles in degrees (float64, (N,)) between predicted and true normals at the valid pixels.

    Valid: target and prediction non-zero (and ``mask`` (B, H, W), (H, W) or (B, 1, H, W) if given).
    """
    p, g = _normal_batch(pred, "prediction"), _normal_batch(target, "target")
    if p.shape != g.shape:
        raise ValueError(
            f"normal prediction has shape {tuple(torch.as_tensor(pred).shape)} but target has shape "
            f"{tuple(torch.as_tensor(target).shape)}; resize the prediction to the ground-truth size"
        )
    p = p.to(g.device)
    p_norm, g_norm = vector_norm(p), vector_norm(g)  # (B, H, W)
    valid = (p_norm > 0) & (g_norm > 0)
    if mask is not None:
        m = torch.as_tensor(mask, device=g.device)
        if m.ndim == 4 and m.shape[1] == 1:
            m = m[:, 0]
        if m.dtype != torch.bool or m.ndim not in (2, 3) or m.shape[-2:] != valid.shape[-2:]:
            raise ValueError(
                f"normal mask must be boolean (H, W), (B, H, W) or (B, 1, H, W) matching "
                f"{tuple(valid.shape)}, got {m.dtype} {tuple(m.shape)}"
            )
        valid = valid & m
    cos = (p * g).sum(dim=1)[valid] / (p_norm[valid] * g_norm[valid])  # (N,)
    return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))


def normal_stats(
    pred: Any,
    target: Any,
    *,
    thresholds: Sequence[float] = DEFAULT_NORMAL_THRESHOLDS,
    mask: Any = None,
    bin_width: float = NORMAL_BIN_WIDTH,
) -> Stats:
    """Sufficient statistics of :func:`normal_metrics`.

    Returns:
        ``hist`` int64 (ceil(180 / bin_width),) angle histogram, ``count`` int64 () valid pixels,
        ``sum`` and ``sum_sq`` float64 () sums of angles and squared angles, ``within`` int64 (T,) number
        of angles strictly below each threshold.
    """
    thresholds = check_thresholds(thresholds)
    angles = normal_angles(pred, target, mask)  # (N,)
    num_bins = histogram_bins(bin_width)
    index = torch.floor(angles / bin_width).long().clamp(0, num_bins - 1)
    within = torch.stack([(angles < t).sum() for t in thresholds]).to(torch.int64)
    return {
        "hist": torch.bincount(index, minlength=num_bins).to(torch.int64),
        "count": torch.tensor(angles.numel(), dtype=torch.int64, device=angles.device),
        "sum": angles.sum(),
        "sum_sq": angles.square().sum(),
        "within": within,
    }


def _histogram_median(hist: torch.Tensor, bin_width: float) -> float:
    """Median of the values binned in ``hist``, each middle order statistic interpolated inside its bin.

    The r-th smallest value (1-based) lies in the bin k where the cumulative count first reaches r; it is
    estimated at the centre of its share of that bin, so each estimate (and the median, the mean of the
    two middle ones for an even count) is within one bin width of the exact value.
    """
    counts = hist.to(torch.float64).cpu()
    total = int(hist.sum())
    if total == 0:
        return math.nan
    cumulative = counts.cumsum(0)  # (num_bins,)
    middle = [(total + 1) // 2] if total % 2 else [total // 2, total // 2 + 1]  # 1-based ranks
    ranks = torch.tensor(middle, dtype=torch.float64)
    index = torch.searchsorted(cumulative, ranks)  # first bin whose cumulative count reaches the rank
    before = torch.where(index > 0, cumulative[(index - 1).clamp_min(0)], 0.0)
    values = (index + (ranks - before - 0.5) / counts[index]) * bin_width
    return float(values.mean())


def normal_from_stats(
    stats: Mapping[str, torch.Tensor],
    *,
    thresholds: Sequence[float] = DEFAULT_NORMAL_THRESHOLDS,
    bin_width: float = NORMAL_BIN_WIDTH,
) -> dict[str, float]:
    """Normal metrics (degrees, ``within_<T>`` percent) from summed :func:`normal_stats`."""
    thresholds = check_thresholds(thresholds)
    n = int(stats["count"])
    out: dict[str, float] = {"mean": math.nan, "median": math.nan, "rmse": math.nan}
    if n > 0:
        out["mean"] = float(stats["sum"]) / n
        out["median"] = _histogram_median(stats["hist"], bin_width)
        out["rmse"] = math.sqrt(float(stats["sum_sq"]) / n)
    for t, count in zip(thresholds, stats["within"].tolist(), strict=True):
        out[within_key(t)] = 100.0 * count / n if n > 0 else math.nan
    return out


def within_key(threshold: float) -> str:
    """Result key of a threshold: 11.25 -> ``within_11.25``, 30.0 -> ``within_30``."""
    return f"within_{threshold:g}"


def normal_metrics(
    pred: Any,
    target: Any,
    *,
    thresholds: Sequence[float] = DEFAULT_NORMAL_THRESHOLDS,
    mask: Any = None,
    bin_width: float = NORMAL_BIN_WIDTH,
) -> dict[str, float]:
    """Angular error of surface normals, pooled over the valid pixels of the set.

    angle = degrees(arccos(clip(<p/|p|, g/|g|>, -1, 1))) where g != 0 and p != 0 (and ``mask``).

    Args:
        pred: predicted normals (B, 3, H, W) or (3, H, W), any non-zero length.
        target: true normals of the same size, (0, 0, 0) = invalid.
        thresholds: angles T (degrees) of ``within_<T>``; e.g. :data:`FINE_NORMAL_THRESHOLDS`.
        mask: optional boolean (B, H, W) / (H, W) of pixels to evaluate.
        bin_width: histogram bin (degrees) of the median, which is exact to within one bin.

    Returns:
        ``mean``, ``median``, ``rmse`` (degrees) and ``within_<T>`` (percent of angles < T).
    """
    stats = normal_stats(pred, target, thresholds=thresholds, mask=mask, bin_width=bin_width)
    return normal_from_stats(stats, thresholds=thresholds, bin_width=bin_width)


# ---------------------------------------------------------------------------------------- segmentation
def _class_ids(pred: Any, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Predicted class ids with the target's shape, from ids or from logits (argmax over classes)."""
    pred = torch.as_tensor(pred)
    if pred.ndim == target.ndim + 1:
        channel = 1 if target.ndim == 3 else 0
        if pred.shape[channel] != num_classes:
            raise ValueError(
                f"segmentation logits have {pred.shape[channel]} channels (shape {tuple(pred.shape)}), "
                f"expected num_classes = {num_classes}"
            )
        pred = pred.argmax(dim=channel)
    elif pred.is_floating_point():
        raise ValueError(
            f"segmentation prediction of shape {tuple(pred.shape)} is floating point but has no class axis; "
            f"pass logits (B, C, H, W) or integer class ids (B, H, W)"
        )
    if pred.shape != target.shape:
        raise ValueError(
            f"segmentation prediction has shape {tuple(pred.shape)}, target {tuple(target.shape)}; expected "
            f"ids of the target's shape or logits (B, {num_classes}, H, W) at the ground-truth size"
        )
    return pred.to(target.device)


def segmentation_stats(pred: Any, target: Any, num_classes: int, ignore_index: int = IGNORE_INDEX) -> Stats:
    """Confusion matrix ``confmat`` int64 (C, C) (rows: ground truth, cols: prediction), ignoring a label.

    Args:
        pred: class ids (B, H, W) / (H, W) or logits (B, C, H, W) / (C, H, W).
        target: int class ids (B, H, W) or (H, W); ``ignore_index`` = not evaluated.
        num_classes: C.
        ignore_index: label that is not evaluated.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    target = torch.as_tensor(target)
    if target.is_floating_point() or target.ndim not in (2, 3):
        raise ValueError(
            f"segmentation target must be integer (B, H, W) or (H, W), got {target.dtype} {tuple(target.shape)}"
        )
    target = target.long()
    pred = _class_ids(pred, target, num_classes).long()
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= num_classes))
    if bad.any():
        values = torch.unique(target[bad])[:8].tolist()
        raise DataError(
            f"segmentation target has labels {values} outside 0..{num_classes - 1} (and {ignore_index} = ignore)"
        )
    t, p = target[valid], pred[valid]  # (N,)
    bad_pred = (p < 0) | (p >= num_classes)
    if bad_pred.any():
        values = torch.unique(p[bad_pred])[:8].tolist()
        raise ValueError(f"segmentation prediction has class ids {values} outside 0..{num_classes - 1}")
    confmat = torch.bincount(t * num_classes + p, minlength=num_classes**2)
    return {"confmat": confmat.reshape(num_classes, num_classes).to(torch.int64)}


def segmentation_from_stats(stats: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Segmentation metrics (fractions) and per-class IoU (NaN for an empty union) from a confusion matrix."""
    cm = stats["confmat"].to(torch.float64).cpu()
    tp = cm.diagonal()
    gt, predicted = cm.sum(1), cm.sum(0)
    union = gt + predicted - tp
    total = float(cm.sum())
    iou = torch.where(union > 0, tp / union.clamp_min(1), math.nan)
    present = gt > 0
    return {
        "pixel_acc": float(tp.sum()) / total if total > 0 else math.nan,
        "mean_acc": float((tp[present] / gt[present]).mean()) if present.any() else math.nan,
        "miou": float(iou[union > 0].mean()) if (union > 0).any() else math.nan,
        "iou": iou.tolist(),
    }


def segmentation_metrics(pred: Any, target: Any, num_classes: int, ignore_index: int = IGNORE_INDEX) -> dict[str, Any]:
    """Semantic segmentation metrics from the confusion matrix over the set.

    ``pixel_acc`` = trace / sum; ``mean_acc`` = mean over classes present in the ground truth of
    diag / row sum; ``miou`` = mean over classes with a non-empty union of TP / (TP + FP + FN);
    ``iou`` = per-class IoU list (NaN where the union is empty). All fractions in [0, 1].

    Args:
        pred: class ids (B, H, W) / (H, W) or logits (B, C, H, W) / (C, H, W) (argmax over C).
        target: class ids 0..C-1 of the same spatial size; ``ignore_index`` is not evaluated.
        num_classes: C.
        ignore_index: label that is not evaluated (255 in the sample contract).

    Raises:
        DataError: a target label is outside 0..C-1 and is not ``ignore_index`` (a ValueError).
    """
    return segmentation_from_stats(segmentation_stats(pred, target, num_classes, ignore_index))
