"""Pictures of depth, normals and labels: colour maps, error maps, colour bars and comparison panels.

Every function takes NumPy arrays or torch tensors (any device; a leading batch dimension of 1 is
dropped) and returns a uint8 RGB array (H, W, 3). Maps may be channels-first (torch layout, (3, H, W))
or channels-last (NumPy layout, (H, W, 3)). Invalid pixels (depth 0, zero normals, the ignore label)
are drawn in ``invalid_color``, black by default.

Colour conventions:

- depth: ``turbo`` (near = dark blue, far = dark red), a range fixed by the caller or the 2nd-98th
  percentile of the valid pixels of the image; turbo never reaches black, so holes stand out;
- errors: ``plasma`` from 0 (dark blue) to the cap (yellow), clipped above the cap;
- normals: RGB = (1 - n) / 2 for camera-frame normals n (x right, y down, z forward, facing the camera),
  i.e. (n' + 1) / 2 with n' = -n in the (right, down, front) frame of the NYU pictures of Bae et al.
  (ICCV 2021, CVPR 2024): a wall facing the camera is lavender (128, 128, 255), the floor light green
  (128, 255, 128), the ceiling purple, a wall on the left teal and one on the right salmon;
- labels: :data:`NYU40_PALETTE` for the 40 NYU classes (the ScanNet ``create_color_palette`` colours
  the community uses for NYUv2-40), :func:`make_palette` for any other number of classes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import matplotlib
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from tridense.data.io import write_png
from tridense.data.sample import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, TASKS

Color = tuple[int, int, int]
Array = np.ndarray | torch.Tensor

#: NYUv2 40-class colours for class ids 0..39 (NYU labels 1..40: wall, floor, cabinet, ...), as in
#: ScanNet's ``BenchmarkScripts/util.py`` ``create_color_palette`` (its entry 0, black, is the ignore
#: colour here).
NYU40_PALETTE: np.ndarray = np.array(
    [
        (174, 199, 232), (152, 223, 138), (31, 119, 180), (255, 187, 120), (188, 189, 34),
        (140, 86, 75), (255, 152, 150), (214, 39, 40), (197, 176, 213), (148, 103, 189),
        (196, 156, 148), (23, 190, 207), (178, 76, 76), (247, 182, 210), (66, 188, 102),
        (219, 219, 141), (140, 57, 197), (202, 185, 52), (51, 176, 203), (200, 54, 131),
        (92, 193, 61), (78, 71, 183), (172, 114, 82), (255, 127, 14), (91, 163, 138),
        (153, 98, 156), (140, 153, 101), (158, 218, 229), (100, 125, 154), (178, 127, 135),
        (120, 185, 128), (146, 111, 194), (44, 160, 44), (112, 128, 144), (96, 207, 209),
        (227, 119, 194), (213, 92, 176), (94, 106, 211), (82, 84, 163), (100, 85, 144),
    ],
    dtype=np.uint8,
)  # fmt: skip
NYU40_PALETTE.setflags(write=False)

DEPTH_CMAP = "turbo"
ERROR_CMAP = "plasma"
MISSING_GREY: Color = (128, 128, 128)
_TITLE_HEIGHT = 16
_TASKS = TASKS


# --------------------------------------------------------------------------------------------------
# Array helpers
# --------------------------------------------------------------------------------------------------
def _numpy(x: Array) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _map2d(x: Array, name: str) -> np.ndarray:
    """A single-channel map as (H, W), dropping leading singleton dimensions."""
    a = _numpy(x)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(f"{name} must be (H, W), (1, H, W) or (1, 1, H, W), got shape {tuple(x.shape)}")
    return a


def _map3(x: Array, name: str) -> np.ndarray:
    """A 3-channel map as (H, W, 3): torch tensors are read channels-first, NumPy arrays channels-last
    (either falls back to the other layout when only that one fits)."""
    a = _numpy(x)
    while a.ndim > 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3:
        first, last = a.shape[0] == 3, a.shape[-1] == 3
        if first and (isinstance(x, torch.Tensor) or not last):
            return np.moveaxis(a, 0, -1)
        if last:
            return a
    raise ValueError(f"{name} must be (3, H, W) or (H, W, 3), got shape {tuple(x.shape)}")


@lru_cache(maxsize=16)
def _lut(cmap: str) -> np.ndarray:
    """(256, 3) uint8 lookup table of a matplotlib colour map."""
    try:
        colormap = matplotlib.colormaps[cmap]
    except KeyError as err:
        raise ValueError(f"unknown colour map {cmap!r}; use a matplotlib name, e.g. turbo or magma") from err
    return np.round(colormap(np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


def _apply_cmap(
    values: np.ndarray, vmin: float, vmax: float, cmap: str, valid: np.ndarray, invalid: Color
) -> np.ndarray:
    """Map ``values`` linearly from [vmin, vmax] (clipped) to a colour map; invalid pixels get ``invalid``."""
    span = max(float(vmax) - float(vmin), 1e-12)
    t = np.clip((np.nan_to_num(values.astype(np.float64)) - vmin) / span, 0.0, 1.0)
    out = _lut(cmap)[np.round(t * 255).astype(np.intp)]
    out[~valid] = np.asarray(invalid, dtype=np.uint8)
    return out


def _valid_depth(depth: np.ndarray) -> np.ndarray:
    return np.isfinite(depth) & (depth > 0)


# --------------------------------------------------------------------------------------------------
# Depth
# --------------------------------------------------------------------------------------------------
def depth_range(depth: Array, percentiles: tuple[float, float] = (2.0, 98.0)) -> tuple[float, float]:
    """Robust display range of a depth map: the given percentiles of its valid (> 0) pixels."""
    d = _map2d(depth, "depth")
    values = d[_valid_depth(d)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, percentiles)
    if hi <= lo:
        hi = lo + max(abs(lo) * 1e-3, 1e-6)
    return float(lo), float(hi)


def colorize_depth(
    depth: Array,
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = DEPTH_CMAP,
    invalid_color: Color = (0, 0, 0),
    percentiles: tuple[float, float] = (2.0, 98.0),
) -> np.ndarray:
    """Colour a depth map (H, W) with ``cmap``: near = low end, far = high end, invalid (<= 0) black.

    The range is [vmin, vmax] when given (compare images with a fixed range), else the ``percentiles``
    of the valid pixels of this image (see :func:`depth_range`).
    """
    d = _map2d(depth, "depth")
    if vmin is None or vmax is None:
        lo, hi = depth_range(d, percentiles)
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    return _apply_cmap(d, vmin, vmax, cmap, _valid_depth(d), invalid_color)


def _font(size: int = 11) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def colorbar(
    height: int,
    vmin: float,
    vmax: float,
    cmap: str = DEPTH_CMAP,
    label: str = "m",
    *,
    ticks: int = 5,
    bar_width: int = 14,
) -> np.ndarray:
    """A vertical colour bar (vmax at the top, vmin at the bottom) with tick labels and the unit ``label``
    above it, as uint8 (height, w, 3) on white."""
    font = _font()
    ticks = max(2, min(ticks, (height - 30) // 12 + 1))  # labels 12 pixels apart at least
    labels = [f"{v:.3g}" for v in np.linspace(vmax, vmin, ticks)]
    text_w = max(int(font.getlength(t)) for t in [*labels, label]) + 6
    strip = Image.new("RGB", (bar_width + 6 + text_w, height), (255, 255, 255))
    top, bottom = 22, height - 8  # the unit label sits above the bar
    levels = np.round(np.linspace(255, 0, max(bottom - top, 1))).astype(np.intp)  # vmax at the top
    ramp = _lut(cmap)[levels]  # (L, 3)
    strip.paste(Image.fromarray(np.repeat(ramp[:, None], bar_width, axis=1)), (3, top))
    draw = ImageDraw.Draw(strip)
    for k, text in enumerate(labels):
        y = top + (bottom - top - 1) * k / max(ticks - 1, 1)
        draw.line([(3 + bar_width, y), (6 + bar_width, y)], fill=(0, 0, 0))
        draw.text((8 + bar_width, y), text, fill=(0, 0, 0), font=font, anchor="lm")
    draw.text((3, 4), label, fill=(0, 0, 0), font=font, anchor="lt")
    return np.asarray(strip)


def with_colorbar(
    image: Array,
    vmin: float,
    vmax: float,
    cmap: str = DEPTH_CMAP,
    label: str = "m",
    *,
    ticks: int = 5,
    bar_width: int = 14,
) -> np.ndarray:
    """Append a vertical colour bar (vmax at the top, vmin at the bottom) with tick labels to ``image``."""
    img = _map3(image, "image")
    if img.dtype != np.uint8:
        raise ValueError(f"image must be uint8 RGB, got {img.dtype}")
    bar = colorbar(img.shape[0], vmin, vmax, cmap, label, ticks=ticks, bar_width=bar_width)
    return np.concatenate([img, bar], axis=1)


# --------------------------------------------------------------------------------------------------
# Normals and labels
# --------------------------------------------------------------------------------------------------
def normals_to_rgb(normals: Array, *, invalid_color: Color = (0, 0, 0)) -> np.ndarray:
    """Camera-frame normals (3, H, W) or (H, W, 3) -> RGB = round(255 (1 - n) / 2), zero normals black.

    Non-unit vectors are normalised first (raw network outputs are fine).
    """
    n = _map3(normals, "normals").astype(np.float64)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    valid = (norm[..., 0] > 1e-6) & np.isfinite(norm[..., 0])
    unit = np.where(valid[..., None], n / np.where(valid[..., None], norm, 1.0), 0.0)
    rgb = np.clip(np.round((1.0 - unit) * 127.5), 0, 255).astype(np.uint8)
    rgb[~valid] = np.asarray(invalid_color, dtype=np.uint8)
    return rgb


def make_palette(n: int) -> np.ndarray:
    """``n`` distinct, non-black colours (n, 3) uint8: the PASCAL VOC bit-interleaved colour map from 1."""
    if n < 1:
        raise ValueError(f"make_palette needs n >= 1, got {n}")
    index = np.arange(1, n + 1)
    palette = np.zeros((n, 3), dtype=np.int64)
    for shift in range(8):
        for channel in range(3):
            palette[:, channel] |= ((index >> (3 * shift + channel)) & 1) << (7 - shift)
    return palette.astype(np.uint8)


def colorize_labels(
    labels: Array,
    palette: np.ndarray | None = None,
    ignore_index: int = IGNORE_INDEX,
    *,
    ignore_color: Color = (0, 0, 0),
) -> np.ndarray:
    """Colour class ids (H, W) with ``palette`` (C, 3) (default :func:`make_palette` of max id + 1);
    ``ignore_index`` is drawn in ``ignore_color``. Ids outside 0..C-1 raise ValueError."""
    lab = _map2d(labels, "labels")
    if np.issubdtype(lab.dtype, np.floating) and not np.all(lab == np.round(lab)):
        raise ValueError("labels must be integer class ids, got non-integer floats")
    lab = lab.astype(np.int64)
    ignore = lab == ignore_index
    if palette is None:
        palette = make_palette(int(lab[~ignore].max()) + 1 if (~ignore).any() else 1)
    pal = np.asarray(palette)
    if pal.ndim != 2 or pal.shape[1] != 3:
        raise ValueError(f"palette must be (C, 3), got shape {pal.shape}")
    bad = ~ignore & ((lab < 0) | (lab >= len(pal)))
    if bad.any():
        raise ValueError(
            f"labels hold ids {np.unique(lab[bad])[:10].tolist()} outside 0..{len(pal) - 1} "
            f"(palette of {len(pal)} colours, ignore_index {ignore_index})"
        )
    out = pal.astype(np.uint8)[np.where(ignore, 0, lab)]
    out[ignore] = np.asarray(ignore_color, dtype=np.uint8)
    return out


# --------------------------------------------------------------------------------------------------
# Error maps
# --------------------------------------------------------------------------------------------------
def depth_error_map(
    pred: Array, gt: Array, *, max_rel: float = 0.25, cmap: str = ERROR_CMAP, invalid_color: Color = (0, 0, 0)
) -> np.ndarray:
    """Relative depth error |p - g| / g coloured from 0 to ``max_rel`` (clipped); no ground truth black."""
    p, g = _map2d(pred, "predicted depth"), _map2d(gt, "ground-truth depth")
    if p.shape != g.shape:
        raise ValueError(f"predicted depth {p.shape} and ground truth {g.shape} differ in size")
    valid = _valid_depth(g) & np.isfinite(p)
    rel = np.abs(p - g) / np.where(valid, g, 1.0)
    return _apply_cmap(rel, 0.0, max_rel, cmap, valid, invalid_color)


def angular_error_map(
    pred: Array, gt: Array, *, max_deg: float = 45.0, cmap: str = ERROR_CMAP, invalid_color: Color = (0, 0, 0)
) -> np.ndarray:
    """Angle between predicted and true normals, coloured from 0 to ``max_deg`` degrees; invalid black."""
    p = _map3(pred, "predicted normals").astype(np.float64)
    g = _map3(gt, "ground-truth normals").astype(np.float64)
    if p.shape != g.shape:
        raise ValueError(f"predicted normals {p.shape} and ground truth {g.shape} differ in size")
    pn, gn = np.linalg.norm(p, axis=-1), np.linalg.norm(g, axis=-1)
    valid = (pn > 1e-6) & (gn > 1e-6) & np.isfinite(pn) & np.isfinite(gn)
    cos = (p * g).sum(-1) / np.where(valid, pn * gn, 1.0)
    angle = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    return _apply_cmap(angle, 0.0, max_deg, cmap, valid, invalid_color)


def label_error_map(
    pred: Array,
    gt: Array,
    ignore_index: int = IGNORE_INDEX,
    *,
    right_color: Color = (200, 200, 200),
    wrong_color: Color = (220, 30, 30),
    invalid_color: Color = (0, 0, 0),
) -> np.ndarray:
    """Pixels where the predicted class differs from the ground truth in red, right ones light grey."""
    p, g = _map2d(pred, "predicted labels"), _map2d(gt, "ground-truth labels")
    if p.shape != g.shape:
        raise ValueError(f"predicted labels {p.shape} and ground truth {g.shape} differ in size")
    out = np.empty((*g.shape, 3), dtype=np.uint8)
    out[:] = np.asarray(right_color, dtype=np.uint8)
    out[p != g] = np.asarray(wrong_color, dtype=np.uint8)
    out[g == ignore_index] = np.asarray(invalid_color, dtype=np.uint8)
    return out


# --------------------------------------------------------------------------------------------------
# Panels
# --------------------------------------------------------------------------------------------------
def image_to_rgb(image: Array, normalized: bool | None = None) -> np.ndarray:
    """An input image as uint8 (H, W, 3): uint8 as is, float in [0, 1] scaled; a float image that was
    normalised with ImageNet mean/std (``normalized=True``, or values outside [0, 1] when ``None``) is
    un-normalised first."""
    img = _map3(image, "image")
    if img.dtype == np.uint8:
        return np.ascontiguousarray(img)
    img = img.astype(np.float64)
    if normalized is None:
        normalized = bool(img.min() < -1e-3 or img.max() > 1 + 1e-3)
    if normalized:
        img = img * np.asarray(IMAGENET_STD) + np.asarray(IMAGENET_MEAN)
    return np.round(np.clip(img, 0.0, 1.0) * 255).astype(np.uint8)


def _resize(cell: np.ndarray, h: int, w: int) -> np.ndarray:
    if cell.shape[:2] == (h, w):
        return cell
    return np.asarray(Image.fromarray(cell).resize((w, h), Image.Resampling.NEAREST))


def _labels_of(x: Array) -> np.ndarray:
    """Class ids (H, W) from ids or from logits (C, H, W)."""
    a = _numpy(x)
    while a.ndim > 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3 and a.shape[0] > 1 and np.issubdtype(a.dtype, np.floating):
        return a.argmax(0)
    return _map2d(a, "labels")


def _grey(h: int, w: int) -> np.ndarray:
    return np.full((h, w, 3), MISSING_GREY, dtype=np.uint8)


Font = ImageFont.ImageFont | ImageFont.FreeTypeFont


def _with_title(cell: np.ndarray, title: str, font: Font) -> np.ndarray:
    bar = Image.new("RGB", (cell.shape[1], _TITLE_HEIGHT), (255, 255, 255))
    ImageDraw.Draw(bar).text((3, _TITLE_HEIGHT // 2), title, fill=(0, 0, 0), font=font, anchor="lm")
    return np.concatenate([np.asarray(bar), cell], axis=0)


def normal_key(size: int = 64) -> np.ndarray:
    """The normal colour key: a sphere facing the camera coloured by :func:`normals_to_rgb`, white outside
    (its left edge shows a wall facing right, its top the floor's colour... read any tile against it)."""
    r = (np.arange(size) + 0.5) / size * 2 - 1  # pixel centres in [-1, 1]
    x, y = np.meshgrid(r, r)  # x right, y down
    inside = x**2 + y**2 < 1
    z = -np.sqrt(np.clip(1 - x**2 - y**2, 0, 1))  # facing the camera (z forward)
    rgb = normals_to_rgb(np.stack([x, y, z], axis=-1) * inside[..., None], invalid_color=(255, 255, 255))
    return rgb


def class_legend(
    labels: np.ndarray, palette: np.ndarray, class_names: Sequence[str] | None, height: int, max_rows: int = 0
) -> np.ndarray:
    """Swatches and names of the classes present in ``labels`` (most frequent first) as uint8 (height, w, 3)."""
    ids, counts = np.unique(labels[(labels >= 0) & (labels < len(palette))], return_counts=True)
    order = ids[np.argsort(-counts, kind="stable")]
    font = _font()
    rows = max(1, min(len(order), max_rows or max((height - 4) // 13, 1)))
    names = [
        str(class_names[i]) if class_names is not None and i < len(class_names) else f"class {i}" for i in order
    ]
    width = 24 + max([int(font.getlength(n)) for n in names[:rows]] + [40])
    strip = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for k, (i, name) in enumerate(zip(order[:rows], names[:rows], strict=True)):
        y = 2 + 13 * k
        if y + 10 > height:
            break
        draw.rectangle([3, y, 13, y + 10], fill=tuple(int(v) for v in palette[i]), outline=(0, 0, 0))
        draw.text((18, y + 5), name, fill=(0, 0, 0), font=font, anchor="lm")
    return np.asarray(strip)


def _legend_cell(cell: np.ndarray, height: int) -> np.ndarray:
    """A legend on white, cropped or padded to ``height`` rows."""
    cell = cell[:height]
    return np.pad(cell, ((0, height - cell.shape[0]), (0, 0), (0, 0)), constant_values=255)


def _side_by_side(cells: Sequence[np.ndarray], background: int = 255) -> np.ndarray:
    h = max(c.shape[0] for c in cells)
    return np.concatenate(
        [np.pad(c, ((0, h - c.shape[0]), (0, 0), (0, 0)), constant_values=background) for c in cells], axis=1
    )


def _stacked(cells: Sequence[np.ndarray], background: int = 255) -> np.ndarray:
    w = max(c.shape[1] for c in cells)
    return np.concatenate(
        [np.pad(c, ((0, 0), (0, w - c.shape[1]), (0, 0)), constant_values=background) for c in cells], axis=0
    )


def prediction_panel(
    image: np.ndarray,
    *,
    depth: np.ndarray | None = None,
    normals: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    palette: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    min_height: int = 192,
) -> np.ndarray:
    """The picture of one prediction: titled tiles input | depth with a colour bar in metres | normals with
    the colour key | segmentation with a legend of the classes present.

    Tiles sit side by side, or in one column when the image is more than twice as wide as high (a KITTI
    frame), so the panel stays readable; maps lower than ``min_height`` are enlarged by an integer factor
    (nearest neighbour). All maps are (H, W) / (H, W, 3) ids or values at the image's size.
    """
    font = _font()
    rgb = image_to_rgb(image)
    scale = max(1, -(-min_height // rgb.shape[0]))  # small predictions are enlarged (nearest) to be seen
    if scale > 1:
        rgb, depth, normals, labels = (
            None if a is None else np.repeat(np.repeat(_numpy(a), scale, axis=0), scale, axis=1)
            for a in (rgb, depth, normals, labels)
        )
    h = rgb.shape[0]
    tiles = [_with_title(rgb, "input", font)]
    if depth is not None:
        lo, hi = depth_range(depth)
        picture = with_colorbar(colorize_depth(depth, vmin=lo, vmax=hi), lo, hi, label="depth (m)")
        tiles.append(_with_title(picture, "depth, m (2nd-98th percentile)", font))
    if normals is not None:
        key = _legend_cell(normal_key(min(h, 64)), h)
        tiles.append(_with_title(_side_by_side([normals_to_rgb(normals), key]), "normals | colour key", font))
    if labels is not None:
        ids = _labels_of(labels)
        pal = np.asarray(palette) if palette is not None else make_palette(int(ids.max()) + 1)
        legend = class_legend(ids, pal, class_names, h)
        tiles.append(_with_title(_side_by_side([colorize_labels(ids, pal), legend]), "segmentation", font))
    wide = rgb.shape[1] > 2 * rgb.shape[0]
    return _stacked(tiles) if wide else _side_by_side(tiles)


def make_panel(
    image: Array,
    predictions: Mapping[str, Array],
    targets: Mapping[str, Array] | None = None,
    *,
    num_classes: int | None = None,
    palette: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    depth_range: tuple[float, float] | None = None,
    ignore_index: int = IGNORE_INDEX,
    max_rel: float = 0.25,
    max_deg: float = 45.0,
    normalized: bool | None = None,
) -> np.ndarray:
    """A comparison picture: one row per task (depth, normals, semseg) present in ``predictions`` or
    ``targets``, columns input | prediction | ground truth | error | legend, each with a small title.

    The legend column holds the colour bars of the depth (m) and of the error (relative, degrees), the
    normal colour key, and the names of the classes present (``class_names``, else ``class N``).

    Args:
        image: the input image (see :func:`image_to_rgb`); every cell is shown at its size.
        predictions: ``depth`` (H, W) metres, ``normals`` (3, H, W), ``semseg`` ids (H, W) or logits
            (C, H, W); a leading batch dimension of 1 is allowed.
        targets: ground truth under the same keys (contract encodings: 0 / zero normals / 255 invalid);
            a task without ground truth gets grey cells.
        num_classes: number of classes; 40 selects :data:`NYU40_PALETTE` unless ``palette`` is given.
        palette: (C, 3) class colours.
        class_names: names of the classes for the legend.
        depth_range: (vmin, vmax) of the depth colours, shared by prediction and ground truth (default:
            the robust range of the ground truth, else of the prediction).
        ignore_index: the ignore label of ``targets["semseg"]``.
        max_rel: relative depth error at the top of the error colour map.
        max_deg: angular error (degrees) at the top of the error colour map.
        normalized: whether a float image is ImageNet-normalised (None: guess from its range).

    Returns:
        uint8 (rows * (H + 16), 4 * W + legend width, 3).
    """
    targets = targets or {}
    rgb = image_to_rgb(image, normalized)
    h, w = rgb.shape[:2]
    tasks = [t for t in _TASKS if t in predictions or t in targets]
    if not tasks:
        raise ValueError(f"make_panel needs at least one of {_TASKS} in predictions or targets")
    font = _font()
    rows = []
    for task in tasks:
        pred, gt = predictions.get(task), targets.get(task)
        if task == "depth":
            cells, titles, legend = _depth_row(pred, gt, depth_range, max_rel, h)
        elif task == "normals":
            cells, titles, legend = _normals_row(pred, gt, max_deg, h)
        else:
            cells, titles, legend = _semseg_row(pred, gt, palette, num_classes, class_names, ignore_index, h)
        row = [_with_title(rgb, "input", font)]
        missing = (f"{task}: no prediction", f"{task}: no ground truth", f"{task} error: needs both")
        for cell, title, absent in zip(cells, titles, missing, strict=True):
            if cell is None:
                row.append(_with_title(_grey(h, w), absent, font))
            else:
                row.append(_with_title(_resize(cell, h, w), title, font))
        row.append(_with_title(legend, "legend", font))
        rows.append(np.concatenate(row, axis=1))
    return _stacked(rows)


def _depth_row(
    pred: Array | None, gt: Array | None, limits: tuple[float, float] | None, max_rel: float, h: int
) -> tuple[list[np.ndarray | None], list[str], np.ndarray]:
    lo, hi = limits or _depth_limits(pred, gt)
    cells = [
        colorize_depth(pred, vmin=lo, vmax=hi) if pred is not None else None,
        colorize_depth(gt, vmin=lo, vmax=hi) if gt is not None else None,
        depth_error_map(pred, gt, max_rel=max_rel) if pred is not None and gt is not None else None,
    ]
    titles = [f"depth pred {lo:.2f}-{hi:.2f} m", "depth gt", f"abs rel error 0-{max_rel:g}"]
    legend = _side_by_side([colorbar(h, lo, hi, label="m"), colorbar(h, 0.0, max_rel, ERROR_CMAP, label="rel")])
    return cells, titles, legend


def _normals_row(
    pred: Array | None, gt: Array | None, max_deg: float, h: int
) -> tuple[list[np.ndarray | None], list[str], np.ndarray]:
    cells = [
        normals_to_rgb(pred) if pred is not None else None,
        normals_to_rgb(gt) if gt is not None else None,
        angular_error_map(pred, gt, max_deg=max_deg) if pred is not None and gt is not None else None,
    ]
    titles = ["normals pred", "normals gt", f"angle error 0-{max_deg:g} deg"]
    key = _legend_cell(normal_key(min(h, 48)), h)
    legend = _side_by_side([key, colorbar(h, 0.0, max_deg, ERROR_CMAP, label="deg")])
    return cells, titles, legend


def _semseg_row(
    pred: Array | None,
    gt: Array | None,
    palette: np.ndarray | None,
    num_classes: int | None,
    class_names: Sequence[str] | None,
    ignore_index: int,
    h: int,
) -> tuple[list[np.ndarray | None], list[str], np.ndarray]:
    pred_ids = _labels_of(pred) if pred is not None else None
    if palette is not None:
        pal = np.asarray(palette)
    else:
        count = num_classes or _class_count(pred, pred_ids, gt, ignore_index)
        pal = NYU40_PALETTE if count == 40 else make_palette(count)
    both = pred_ids is not None and gt is not None
    cells = [
        colorize_labels(pred_ids, pal, ignore_index) if pred_ids is not None else None,
        colorize_labels(gt, pal, ignore_index) if gt is not None else None,
        label_error_map(pred_ids, gt, ignore_index) if both else None,
    ]
    titles = ["semseg pred", "semseg gt", "semseg errors (red)"]
    shown = [a for a in (pred_ids, None if gt is None else _map2d(gt, "labels")) if a is not None]
    present = np.concatenate([a.reshape(-1) for a in shown]) if shown else np.zeros(0, dtype=np.int64)
    legend = class_legend(present[present != ignore_index], pal, class_names, h)
    return cells, titles, legend


def _depth_limits(pred: Array | None, gt: Array | None) -> tuple[float, float]:
    return depth_range(gt) if gt is not None else depth_range(pred)  # type: ignore[arg-type]


def _class_count(pred: Array | None, pred_ids: np.ndarray | None, gt: Array | None, ignore_index: int) -> int:
    """Number of classes from logits, else from the largest id present."""
    if pred is not None and _numpy(pred).squeeze().ndim == 3:
        return int(_numpy(pred).squeeze().shape[0])
    largest = 0
    for ids in (pred_ids, None if gt is None else _map2d(gt, "labels")):
        if ids is not None and (ids != ignore_index).any():
            largest = max(largest, int(ids[ids != ignore_index].max()))
    return largest + 1


def save_png(path: str | os.PathLike, array: Array, overwrite: bool = False) -> Path:
    """Write a uint8 (H, W), (H, W, 3) or (H, W, 4) picture as PNG, atomically; an existing file is
    replaced only with ``overwrite=True``."""
    a = _numpy(array)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise ValueError(f"save_png takes uint8 (H, W), (H, W, 3) or (H, W, 4), got {a.dtype} {a.shape}")
    return write_png(path, a, overwrite=overwrite)


def save_panel(
    path: str | os.PathLike,
    image: Array,
    predictions: Mapping[str, Array],
    targets: Mapping[str, Array] | None = None,
    *,
    overwrite: bool = False,
    **kwargs: object,
) -> Path:
    """:func:`make_panel` written to ``path`` as PNG (keyword arguments go to make_panel)."""
    return save_png(path, make_panel(image, predictions, targets, **kwargs), overwrite=overwrite)  # type: ignore[arg-type]
