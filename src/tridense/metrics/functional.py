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
  95 %); ``rmse``, ``sq_rel`` and ``abs_err`` in metres; ``rmse_log`` and ``log10`` in natural-log / log10
  units;
* KITTI benchmark (:func:`kitti_metrics`): ``silog``, ``sq_rel`` and ``abs_rel`` in **percent** (x100),
  ``irmse`` in 1/km;
* normals (:func:`normal_metrics`): angles in **degrees**, ``within_<T>`` in **percent**;
* segmentation (:func:`segmentation_metrics`, and the per-image :func:`image_segmentation_metrics`):
  ``pixel_acc``, ``mean_acc``, ``miou`` (``image_miou``) and ``iou`` are **fractions** in [0, 1].

The conventions (validity range and bounds, clamp, crop, reduction, scaling, absent classes) are arguments;
:mod:`tridense.metrics.protocols` fixes them together under the names of published evaluations.

A metric over an empty set (no valid pixel, no valid image) is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch

from tridense.data.sample import IGNORE_INDEX
from tridense.errors import DataError
from tridense.ops import vector_norm

Stats = dict[str, torch.Tensor]

DEPTH_KEYS: tuple[str, ...] = ("abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "delta1", "delta2", "delta3")
#: Every depth key :func:`depth_metrics` can return: :data:`DEPTH_KEYS` and ``abs_err`` (mean |p - g|, metres).
ALL_DEPTH_KEYS: tuple[str, ...] = (*DEPTH_KEYS, "abs_err")
#: Validity bounds of the depth range: ``min < g < max`` or ``min <= g <= max``.
BOUNDS: tuple[str, ...] = ("strict", "inclusive")
#: Scalings of the prediction before the metrics: none, or monodepth2's per-image median ratio.
SCALINGS: tuple[str | None, ...] = (None, "median")
KITTI_KEYS: tuple[str, ...] = ("silog", "sq_rel", "abs_rel", "irmse")
SEGMENTATION_KEYS: tuple[str, ...] = ("pixel_acc", "mean_acc", "miou", "iou")
#: Default angle thresholds (degrees) of ``within_<T>``; :data:`FINE_NORMAL_THRESHOLDS` on request.
DEFAULT_NORMAL_THRESHOLDS: tuple[float, ...] = (11.25, 22.5, 30.0)
FINE_NORMAL_THRESHOLDS: tuple[float, ...] = (2.8125, 5.625, 7.5)
#: Width (degrees) of the angle histogram bins from which the median is interpolated (error < one bin).
NORMAL_BIN_WIDTH = 0.005
REDUCTIONS: tuple[str, ...] = ("image", "pixel")
#: What a class absent from ground truth and prediction does to ``miou``: left out, or counted as 0.
ABSENT_POLICIES: tuple[str, ...] = ("skip", "zero")


# ----------------------------------------------------------------------------------------------- crops
@dataclass(frozen=True)
class Crop:
    """An evaluation crop given as fractions of the image height and width (row/col start and end).

    At size (H, W) the crop keeps rows ``int(top H):int(bottom H)`` and cols ``int(left W):int(right W)``:
    the products are truncated, as the reference code does (BTS ``bts_eval.py``, monodepth2
    ``evaluate_depth.py``: ``int(0.40810811 * gt_height)``). Exact ratios (the NYU crop) are stored as
    :class:`fractions.Fraction`, so 471/480 of 480 rows is 471, never 470.
    """

    top: float | Fraction
    bottom: float | Fraction
    left: float | Fraction
    right: float | Fraction
    description: str

    def mask(self, height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Boolean (H, W) mask, True inside the crop."""
        r0, r1, c0, c1 = self.box(height, width)
        mask = torch.zeros(height, width, dtype=torch.bool, device=device)
        mask[r0:r1, c0:c1] = True
        return mask


    def box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(row start, row end, col start, col end) of the crop at size (H, W), ends exclusive."""
        return (
            _frac_index(self.top, height),
            _frac_index(self.bottom, height),
            _frac_index(self.left, width),
            _frac_index(self.right, width),
        )


def _frac_index(fraction: float | Fraction, size: int) -> int:
    """``int(fraction * size)``: truncation, as the reference evaluation scripts compute crop bounds."""
    return int(fraction * size)


#: Named evaluation crops (the CLI lists them).
CROPS: dict[str, Crop] = {
    "eigen_nyu": Crop(
        Fraction(45, 480),
        Fraction(471, 480),
        Fraction(41, 640),
        Fraction(601, 640),
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
def frame_crop_mask(
    crop: str, height: int, width: int, metas: Sequence[Mapping[str, Any]], device: torch.device | str | None = None
) -> torch.Tensor:
    """Per-sample mask (B, H, W) of a named crop computed in each sample's **original** frame.

    A sample whose ``meta`` holds ``crop = (top, left, h, w)`` (a crop taken by the loader, e.g. KITTI's
    ``kb_crop``) and ``size = (H0, W0)`` (the original size) gets the named crop's region at (H0, W0),
    shifted by (top, left) into the cropped frame, as BTS and AdaBins evaluate (they paste the 352x1216
    prediction back into the full frame and crop there). When the map was also resized from (h, w) to
    (H, W), the region is resized with it (nearest). Without ``meta['crop']`` the fractions apply to (H, W).

    Args:
        crop: a name of :data:`CROPS`.
        height: H of the maps being evaluated.
        width: W of the maps being evaluated.
        metas: one ``meta`` dict per sample.
        device: device of the returned mask.
    """
    if crop not in CROPS:
        raise ValueError(f"unknown crop {crop!r}; expected one of {sorted(CROPS)}")
    masks = []
    for meta in metas:
        box = meta.get("crop") if meta else None
        if box is None:
            masks.append(CROPS[crop].mask(height, width, device))
            continue
        top, left, h, w = (int(v) for v in box)
        full_h, full_w = (int(v) for v in meta.get("size", (top + h, left + w)))
        region = CROPS[crop].mask(full_h, full_w, device)[top : top + h, left : left + w]  # (h, w)
        if (h, w) != (height, width):
            region = torch.nn.functional.interpolate(region[None, None].float(), size=(height, width), mode="nearest")
            region = region[0, 0] > 0.5
        masks.append(region)
    return torch.stack(masks)  # (B, H, W)


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


#: Floor of a prediction where no clamp applies, before logs and ratios (MTI-Net / InvPT ``DepthMeter``:
#: ``pred[pred <= 0] = 1e-9``).
POSITIVE_FLOOR = 1e-9


def check_depth_range(min_depth: float, max_depth: float | None) -> None:
    """Raise a ValueError unless 0 <= min_depth < max_depth (``max_depth`` None = no upper bound)."""
    if not (min_depth >= 0 and (max_depth is None or min_depth < max_depth)):
        raise ValueError(
            f"need 0 <= min_depth < max_depth (max_depth None = no cap), got min_depth={min_depth}, "
            f"max_depth={max_depth}"
        )


def check_depth_options(bounds: str, clamp: bool | Sequence[float], scaling: str | None) -> None:
    """Raise a ValueError for an unknown bound rule, clamp range or scaling."""
    if bounds not in BOUNDS:
        raise ValueError(f"unknown depth bounds {bounds!r}; expected one of {BOUNDS}")
    if not isinstance(clamp, bool):
        lo_hi = tuple(clamp)
        if len(lo_hi) != 2 or not 0 <= lo_hi[0] < lo_hi[1]:
            raise ValueError(f"depth clamp must be True, False or (low, high) with 0 <= low < high, got {clamp!r}")
    if scaling not in SCALINGS:
        raise ValueError(f"unknown depth scaling {scaling!r}; expected one of {SCALINGS}")


def _clamp_range(
    min_depth: float, max_depth: float | None, clamp: bool | Sequence[float]
) -> tuple[float, float] | None:
    """(low, high) of the clamp of predictions, or None for no clamp."""
    if clamp is False:
        return None
    if clamp is True:
        return (max(min_depth, POSITIVE_FLOOR), math.inf if max_depth is None else max_depth)
    lo, hi = clamp
    return float(lo), float(hi)


def _median(x: torch.Tensor) -> torch.Tensor:
    """NumPy's median of a 1-D tensor (the mean of the two middle values for an even count)."""
    values = x.sort().values
    n = values.numel()
    return values[(n - 1) // 2 : n // 2 + 1].mean()


def _depth_inputs(
    pred: Any,
    target: Any,
    min_depth: float,
    max_depth: float | None,
    crop: CropArg,
    *,
    bounds: str = "strict",
    clamp: bool | Sequence[float] = True,
    scaling: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validated float64 (B, H, W) prediction (scaled, clamped), target (1 where invalid) and valid mask."""
    check_depth_range(min_depth, max_depth)
    check_depth_options(bounds, clamp, scaling)
    p, g = _depth_batch(pred, "prediction"), _depth_batch(target, "target")
    if p.shape != g.shape:
        raise ValueError(
            f"depth prediction has shape {tuple(torch.as_tensor(pred).shape)} but target has shape "
            f"{tuple(torch.as_tensor(target).shape)}; resize the prediction to the ground-truth size"
        )
    p = p.to(g.device)
    if bounds == "strict":
        valid = g > min_depth
        if max_depth is not None:
            valid &= g < max_depth
    else:
        valid = (g >= min_depth) & (g > 0)  # a zero is always "no ground truth"
        if max_depth is not None:
            valid &= g <= max_depth
    valid &= torch.isfinite(g)  # (B, H, W)
    mask = crop_mask(crop, g.shape[-2], g.shape[-1], g.device)
    if mask is not None:
        valid = valid & mask
    if scaling == "median":  # monodepth2: pred *= median(gt) / median(pred) over the valid pixels, per image
        ratios = [
            _median(g[i][valid[i]]) / _median(p[i][valid[i]]) if valid[i].any() else g.new_ones(())
            for i in range(g.shape[0])
        ]
        p = p * torch.stack(ratios).view(-1, 1, 1)  # (B, 1, 1) ratio per image
    limits = _clamp_range(min_depth, max_depth, clamp)
    if limits is None:
        p = torch.nan_to_num(p, nan=POSITIVE_FLOOR).clamp_min(POSITIVE_FLOOR)
    else:  # BTS: NaN -> the lower bound, inf -> the upper bound, then clamp
        p = torch.nan_to_num(p, nan=limits[0], posinf=limits[1], neginf=limits[0]).clamp(*limits)
    # invalid pixels get harmless values so that no inf/NaN is ever formed; they are masked out anyway
    p = torch.where(valid, p, 1.0)
    g = torch.where(valid, g, 1.0)
    return p, g, valid


def _masked_sum(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per-image sum over valid pixels: (B, H, W) -> (B,)."""
    return torch.where(valid, x, 0.0).sum(dim=(1, 2))


def check_reduction(reduction: str) -> None:
    """Raise a ValueError unless ``reduction`` is one of :data:`REDUCTIONS`."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; expected one of {REDUCTIONS}")


def check_depth_keys(keys: Sequence[str]) -> tuple[str, ...]:
    """Keys as a tuple, each one of :data:`ALL_DEPTH_KEYS`, else a ValueError."""
    keys = tuple(keys)
    unknown = [k for k in keys if k not in ALL_DEPTH_KEYS]
    if unknown or not keys:
        raise ValueError(f"unknown or no depth metric keys {list(keys)}; expected a subset of {ALL_DEPTH_KEYS}")
    return keys


def depth_stats(
    pred: Any,
    target: Any,
    *,
    min_depth: float = 1e-3,
    max_depth: float | None = 10.0,
    crop: CropArg = None,
    reduction: str = "image",
    bounds: str = "strict",
    clamp: bool | Sequence[float] = True,
    scaling: str | None = None,
) -> Stats:
    """Sufficient statistics of :func:`depth_metrics` for one batch.

    Returns:
        ``sums`` float64 (9,) in the order of :data:`ALL_DEPTH_KEYS` and ``count`` float64 (): for ``image``
        reduction the sums over images of the per-image metrics (RMSEs already square-rooted) and the
        number of images with a valid pixel; for ``pixel`` reduction the sums over valid pixels of the
        per-pixel terms (squared errors for the RMSEs) and the number of valid pixels.
    """
    check_reduction(reduction)
    p, g, valid = _depth_inputs(
        pred, target, min_depth, max_depth, crop, bounds=bounds, clamp=clamp, scaling=scaling
    )
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
            _masked_sum(diff.abs(), valid),
        ],
        dim=1,
    )  # (B, 9)
    n = valid.sum(dim=(1, 2)).to(torch.float64)  # (B,)
    if reduction == "pixel":
        return {"sums": sums.sum(0), "count": n.sum()}
    keep = n > 0
    per_image = sums[keep] / n[keep, None]  # (B', 9)
    per_image[:, 2:4] = per_image[:, 2:4].sqrt()  # per-image rmse, rmse_log
    return {"sums": per_image.sum(0), "count": keep.sum().to(torch.float64)}


def depth_from_stats(
    stats: Mapping[str, torch.Tensor], *, reduction: str = "image", keys: Sequence[str] = DEPTH_KEYS
) -> dict[str, float]:
    """Depth metrics (fractions, metres) from summed :func:`depth_stats`, the ``keys`` in their order."""
    check_reduction(reduction)
    keys = check_depth_keys(keys)
    count = float(stats["count"])
    if count == 0:
        return dict.fromkeys(keys, math.nan)
    values = stats["sums"].to(torch.float64) / count
    if reduction == "pixel":
        values[2:4] = values[2:4].sqrt()
    everything = dict(zip(ALL_DEPTH_KEYS, values.tolist(), strict=True))
    return {k: everything[k] for k in keys}


def depth_metrics(
    pred: Any,
    target: Any,
    *,
    min_depth: float = 1e-3,
    max_depth: float | None = 10.0,
    crop: CropArg = None,
    reduction: str = "image",
    bounds: str = "strict",
    clamp: bool | Sequence[float] = True,
    scaling: str | None = None,
    keys: Sequence[str] = DEPTH_KEYS,
) -> dict[str, float]:
    """Standard monocular depth metrics.

    Valid pixels: ``min_depth < g < max_depth`` (``bounds="strict"``, BTS / monodepth2) or
    ``min_depth <= g <= max_depth`` with g > 0 (``"inclusive"``), finite, inside the crop. Then, per image,
    an optional ``scaling="median"`` multiplies the prediction by median(g) / median(p) over the valid
    pixels (monodepth2's self-supervised protocol), and the prediction is clamped (``clamp=True``: to
    ``[min_depth, max_depth]``; a pair: to that range; ``False``: never, as MTI-Net, InvPT and LibMTL;
    non-positive values are then floored at :data:`POSITIVE_FLOOR`).

    Args:
        pred: predicted depth in metres, (B, 1, H, W), (B, H, W) or (H, W).
        target: ground-truth depth of the same size, 0 (or anything outside the range) = invalid.
        min_depth: lower bound of valid ground truth (>= 0).
        max_depth: upper bound of valid ground truth; None = no cap.
        crop: None, a name of :data:`CROPS` or a boolean mask (see :func:`crop_mask`).
        reduction: ``image`` (per-image metrics averaged over images that have a valid pixel) or
            ``pixel`` (pooled over all valid pixels).
        bounds: ``strict`` or ``inclusive`` validity bounds.
        clamp: clamp of the prediction (True: the validity range; (low, high); False: none).
        scaling: None or ``median``.
        keys: metrics to return, from :data:`ALL_DEPTH_KEYS` (``abs_err`` = mean |p - g|, metres).

    Returns:
        ``abs_rel``, ``sq_rel`` (m), ``rmse`` (m), ``rmse_log``, ``log10``, ``delta1..3`` (fractions in
        [0, 1]) by default; ``abs_err`` (m) on request.
    """
    stats = depth_stats(
        pred,
        target,
        min_depth=min_depth,
        max_depth=max_depth,
        crop=crop,
        reduction=reduction,
        bounds=bounds,
        clamp=clamp,
        scaling=scaling,
    )
    return depth_from_stats(stats, reduction=reduction, keys=keys)


# ----------------------------------------------------------------------------------------------- KITTI
def kitti_stats(
    pred: Any,
    target: Any,
    *,
    min_depth: float = 0.0,
    max_depth: float | None = None,
    crop: CropArg = None,
    bounds: str = "strict",
    clamp: bool | Sequence[float] = False,
    scaling: str | None = None,
) -> Stats:
    """Sufficient statistics of :func:`kitti_metrics`: per-image metrics summed over images, image count."""
    p, g, valid = _depth_inputs(
        pred, target, min_depth, max_depth, crop, bounds=bounds, clamp=clamp, scaling=scaling
    )
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
    pred: Any,
    target: Any,
    *,
    min_depth: float = 0.0,
    max_depth: float | None = None,
    crop: CropArg = None,
    bounds: str = "strict",
    clamp: bool | Sequence[float] = False,
    scaling: str | None = None,
) -> dict[str, float]:
    """Metrics of the KITTI depth-prediction benchmark (its devkit's ``evaluate_depth.cpp``).

    Per image, over valid pixels, then averaged over images: ``silog`` = 100 sqrt(mean(d^2) - mean(d)^2)
    with d = ln p - ln g; ``sq_rel`` = 100 mean((p - g)^2 / g^2) and ``abs_rel`` = 100 mean(|p - g| / g)
    (percent, as the devkit's "squared/abs relative" times 100); ``irmse`` = sqrt(mean((1/p - 1/g)^2)) in
    1/km. The defaults are the devkit's: every g > 0 is valid (no cap, no crop) and the prediction is not
    clamped (only floored at :data:`POSITIVE_FLOOR`). The other arguments are those of
    :func:`depth_metrics` (BTS's ``silog`` uses its crop, range and clamp).
    """
    stats = kitti_stats(
        pred, target, min_depth=min_depth, max_depth=max_depth, crop=crop, bounds=bounds, clamp=clamp, scaling=scaling
    )
    return kitti_from_stats(stats)


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

    Validity comes from the ground truth only: a pixel is valid where the target is non-zero and finite
    (and ``mask`` (B, H, W), (H, W) or (B, 1, H, W) holds). A zero or non-finite prediction there is an
    error of 90 degrees (its unit vector is taken as zero, as MTI-Net's ``normalize_tensor`` does), never
    a skipped pixel.
    """
    p, g = _normal_batch(pred, "prediction"), _normal_batch(target, "target")
    if p.shape != g.shape:
        raise ValueError(
            f"normal prediction has shape {tuple(torch.as_tensor(pred).shape)} but target has shape "
            f"{tuple(torch.as_tensor(target).shape)}; resize the prediction to the ground-truth size"
        )
    p = p.to(g.device)
    g_norm = vector_norm(g)  # (B, H, W)
    valid = (g_norm > 0) & torch.isfinite(g).all(dim=1)
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
    p_valid, g_valid = p.movedim(1, -1)[valid], g.movedim(1, -1)[valid]  # (N, 3)
    p_ok = torch.isfinite(p_valid).all(dim=1)
    p_valid = torch.where(p_ok[:, None], p_valid, 0.0)
    p_norm = vector_norm(p_valid, dim=1)  # (N,)
    p_unit = torch.where(p_norm[:, None] > 0, p_valid / p_norm.clamp_min(1e-300)[:, None], 0.0)
    cos = (p_unit * g_valid).sum(dim=1) / vector_norm(g_valid, dim=1)  # (N,)
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

    angle = degrees(arccos(clip(<p/|p|, g/|g|>, -1, 1))) where g != 0 (and ``mask``); a zero or
    non-finite prediction counts as 90 degrees (validity comes from the ground truth only).

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


def check_absent(absent: str) -> None:
    """Raise a ValueError unless ``absent`` is one of :data:`ABSENT_POLICIES`."""
    if absent not in ABSENT_POLICIES:
        raise ValueError(f"unknown absent-class policy {absent!r}; expected one of {ABSENT_POLICIES}")


def segmentation_from_stats(stats: Mapping[str, torch.Tensor], *, absent: str = "skip") -> dict[str, Any]:
    """Segmentation metrics (fractions) and per-class IoU from a confusion matrix.

    Args:
        stats: ``confmat`` (C, C).
        absent: a class with an empty union (absent from ground truth and prediction) is left out of
            ``miou`` and its ``iou`` is NaN (``"skip"``), or counts as IoU 0 in both (``"zero"``: MTI-Net /
            InvPT ``eval_semseg``, ``tp / max(tp + fp + fn, 1e-8)`` averaged over all classes).
    """
    check_absent(absent)
    cm = stats["confmat"].to(torch.float64).cpu()
    tp = cm.diagonal()
    gt, predicted = cm.sum(1), cm.sum(0)
    union = gt + predicted - tp
    total = float(cm.sum())
    empty = math.nan if absent == "skip" else 0.0
    iou = torch.where(union > 0, tp / union.clamp_min(1), empty)
    present = gt > 0
    counted = union > 0 if absent == "skip" else torch.ones_like(present)
    return {
        "pixel_acc": float(tp.sum()) / total if total > 0 else math.nan,
        "mean_acc": float((tp[present] / gt[present]).mean()) if present.any() else math.nan,
        "miou": float(iou[counted].mean()) if counted.any() else math.nan,
        "iou": iou.tolist(),
    }


def segmentation_metrics(
    pred: Any, target: Any, num_classes: int, ignore_index: int = IGNORE_INDEX, *, absent: str = "skip"
) -> dict[str, Any]:
    """Semantic segmentation metrics from the confusion matrix over the set.

    ``pixel_acc`` = trace / sum; ``mean_acc`` = mean over classes present in the ground truth of
    diag / row sum; ``miou`` = mean of TP / (TP + FP + FN) over the classes with a non-empty union
    (``absent="skip"``) or over all C classes, an empty union counting 0 (``absent="zero"``);
    ``iou`` = per-class IoU list (NaN, or 0 with ``"zero"``, where the union is empty). Fractions in [0, 1].

    Args:
        pred: class ids (B, H, W) / (H, W) or logits (B, C, H, W) / (C, H, W) (argmax over C).
        target: class ids 0..C-1 of the same spatial size; ``ignore_index`` is not evaluated.
        num_classes: C.
        ignore_index: label that is not evaluated (255 in the sample contract).
        absent: policy for classes absent from ground truth and prediction, ``skip`` or ``zero``.

    Raises:
        DataError: a target label is outside 0..C-1 and is not ``ignore_index`` (a ValueError).
    """
    return segmentation_from_stats(segmentation_stats(pred, target, num_classes, ignore_index), absent=absent)


# ------------------------------------------------------------------------------ per-image segmentation
def image_segmentation_stats(pred: Any, target: Any, num_classes: int, ignore_index: int = IGNORE_INDEX) -> Stats:
    """Sufficient statistics of :func:`image_segmentation_metrics` (the GAD authors' per-image protocol).

    Per image, for every class c present in the ground truth, IoU_c = |P_c & G_c| / |P_c | G_c| where P_c
    counts every pixel predicted c, **including pixels whose ground truth is the ignore label** (the
    released ``get_iou`` compares whole label maps); classes absent from the ground truth get 0.

    Returns:
        ``iou_sum`` float64 (C,) sum over images of IoU_c; ``iou_count`` int64 (C,) number of images with
        IoU_c > 0; ``image_miou_sum`` float64 () sum over images of sum_c IoU_c / (L - 1), L the number of
        distinct ground-truth labels including the ignore label (at least 1 in the divisor); ``acc_sum``
        float64 () sum over images of the image's mean class accuracy over its present classes;
        ``images`` int64 () images with a labelled pixel; ``correct`` and ``labelled`` int64 () pooled
        pixel counts.
    """
    target = torch.as_tensor(target)
    if target.ndim == 2:  # one image: ids (H, W) or logits (C, H, W) gain the batch axis
        target, pred = target[None], torch.as_tensor(pred)[None]
    segmentation_stats(pred, target, num_classes, ignore_index)  # validates labels, shapes and ids
    target = target.long()
    ids = _class_ids(pred, target, num_classes).long()  # (B, H, W)
    classes = torch.arange(num_classes, device=target.device)
    out = {
        "iou_sum": torch.zeros(num_classes, dtype=torch.float64),
        "iou_count": torch.zeros(num_classes, dtype=torch.int64),
        "image_miou_sum": torch.zeros((), dtype=torch.float64),
        "acc_sum": torch.zeros((), dtype=torch.float64),
        "images": torch.zeros((), dtype=torch.int64),
        "correct": torch.zeros((), dtype=torch.int64),
        "labelled": torch.zeros((), dtype=torch.int64),
    }
    for t, p in zip(target, ids, strict=True):
        t_onehot = t.flatten()[:, None] == classes  # (HW, C)
        p_onehot = p.flatten()[:, None] == classes  # (HW, C)
        inter = (t_onehot & p_onehot).sum(0).to(torch.float64)  # (C,)
        union = (t_onehot | p_onehot).sum(0).to(torch.float64)  # (C,)
        gt_count = t_onehot.sum(0)  # (C,)
        present = gt_count > 0
        iou = torch.where(present, inter / union.clamp_min(1), 0.0).cpu()  # (C,)
        labels = int(present.sum()) + int((t == ignore_index).any())
        out["iou_sum"] += iou
        out["iou_count"] += (iou != 0).to(torch.int64)
        out["image_miou_sum"] += iou.sum() / max(labels - 1, 1)
        labelled = t != ignore_index
        if labelled.any():
            out["images"] += 1
            out["acc_sum"] += (inter[present] / gt_count[present]).mean().cpu()
            out["correct"] += int((p[labelled] == t[labelled]).sum())
            out["labelled"] += int(labelled.sum())
    return out


def image_segmentation_from_stats(stats: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Per-image segmentation metrics (fractions) from summed :func:`image_segmentation_stats`.

    ``pixel_acc`` pooled over labelled pixels; ``mean_acc`` the mean over images of each image's mean
    class accuracy; ``iou[c]`` the mean of the per-image IoU_c over the images where it is non-zero (0 if
    none); ``miou`` the mean of ``iou`` over all C classes (the number the authors' ``main.py`` prints);
    ``image_miou`` the mean over images of each image's mean IoU (their ``Aiou``).
    """
    count = stats["iou_count"].to(torch.float64).cpu()
    iou = torch.where(count > 0, stats["iou_sum"].to(torch.float64).cpu() / count.clamp_min(1), 0.0)
    images, labelled = int(stats["images"]), int(stats["labelled"])
    return {
        "pixel_acc": int(stats["correct"]) / labelled if labelled else math.nan,
        "mean_acc": float(stats["acc_sum"]) / images if images else math.nan,
        "miou": float(iou.mean()) if images else math.nan,
        "image_miou": float(stats["image_miou_sum"]) / images if images else math.nan,
        "iou": iou.tolist(),
    }


def image_segmentation_metrics(
    pred: Any, target: Any, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> dict[str, Any]:
    """Segmentation metrics of the GAD authors' released evaluation (``main.py``: ``get_iou``, ``accuracy``).

    See :func:`image_segmentation_stats` and :func:`image_segmentation_from_stats`.
    """
    return image_segmentation_from_stats(image_segmentation_stats(pred, target, num_classes, ignore_index))
