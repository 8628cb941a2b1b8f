"""PAP's Fig. 5: the affinity map of one pixel, single-task against cross-task combined, for each task.

For a trained PAP model and an image, the row of each task's own matrix M_k and of its combined matrix
M̂_k = sum_j a_kj M_j at the chosen pixel is drawn over the image (a heat map on the key grid, upsampled),
one row per task: input with the point | single-task affinity | cross-task affinity. Nothing of size
N x N is formed (the rows come from :meth:`PAPNet.affinity_maps`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from tridense.data.io import read_rgb, write_png
from tridense.errors import ConfigError
from tridense.inference import model_input_size, prepare_image


def _heat(values: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(h, w) affinities -> uint8 (H, W, 3) colours, normalised to the row's maximum."""
    v = values.float()[None, None]
    v = F.interpolate(v, size=size, mode="bilinear", align_corners=False)[0, 0]
    v = (v / v.max().clamp_min(1e-12)).clamp(0, 1).numpy()
    return (matplotlib.colormaps["inferno"](v)[..., :3] * 255).astype(np.uint8)


def _blend(rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.65) -> np.ndarray:
    return (rgb * (1 - alpha) + heat * alpha).round().astype(np.uint8)


def _mark(rgb: np.ndarray, point: tuple[int, int], label: str) -> np.ndarray:
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    x, y = point
    r = max(3, rgb.shape[1] // 80)
    draw.ellipse([x - r, y - r, x + r, y + r], outline=(255, 255, 255), width=2)
    draw.rectangle([0, 0, 8 + 7 * len(label), 14], fill=(0, 0, 0))
    draw.text((3, 1), label, fill=(255, 255, 255))
    return np.asarray(image)


def affinity_figure(
    model: torch.nn.Module, info: dict[str, Any], image_path: str | Path, point: tuple[int, int]
) -> tuple[np.ndarray, dict[str, Any]]:
    """The figure (uint8 (rows*H, 3*W, 3)) and a summary (mixing weights, entropy of each map).

    Args:
        point: (x, y) pixel of the input image (column, row).
    """
    if not hasattr(model, "affinity_maps"):
        raise ConfigError(f"{type(model).__name__} has no affinity matrices (needs a PAP model)")
    rgb = read_rgb(image_path)
    h, w = rgb.shape[:2]
    x, y = point
    if not (0 <= x < w and 0 <= y < h):
        raise ConfigError(f"--point {x},{y} is outside the {w}x{h} image {image_path}")
    inp = prepare_image(rgb, model_input_size(info))
    scale_y, scale_x = inp.shape[-2] / h, inp.shape[-1] / w
    maps = model.affinity_maps(inp, (int(y * scale_y), int(x * scale_x)))
    rows, summary = [], {"point": [x, y], "tasks": {}}
    with torch.no_grad():
        weights = model.pap.mixing_weights()
    for task, m in maps.items():
        single, combined = m["single"], m["combined"]
        cells = [
            _mark(rgb, point, f"{task}: input"),
            _mark(_blend(rgb, _heat(single, (h, w))), point, f"{task}: single-task"),
            _mark(_blend(rgb, _heat(combined, (h, w))), point, f"{task}: cross-task"),
        ]
        rows.append(np.concatenate(cells, axis=1))

        def entropy(p: torch.Tensor) -> float:
            p = p.flatten().double()
            return float(-(p * p.clamp_min(1e-30).log()).sum())

        summary["tasks"][task] = {"entropy_single": entropy(single), "entropy_combined": entropy(combined)}
    if weights is not None:
        summary["mixing_weights"] = {
            target: dict(zip(model.tasks, [round(float(v), 4) for v in weights[i]], strict=True))
            for i, target in enumerate(model.tasks)
        }
    return np.concatenate(rows, axis=0), summary


def save_affinity_figure(
    model: torch.nn.Module,
    info: dict[str, Any],
    image_path: str | Path,
    point: tuple[int, int],
    out: str | Path,
    *,
    overwrite: bool = False,
) -> dict[str, Any]:
    figure, summary = affinity_figure(model, info, image_path, point)
    write_png(out, figure, overwrite=overwrite)
    summary["out"] = str(out)
    return summary
