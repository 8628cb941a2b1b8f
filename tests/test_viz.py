"""Tests of tridense.viz: colour conventions, palettes, error maps, panels and PNG output."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image

from tridense.data.sample import IMAGENET_MEAN, IMAGENET_STD
from tridense.viz import (
    NYU40_PALETTE,
    _lut,
    angular_error_map,
    colorize_depth,
    colorize_labels,
    depth_error_map,
    depth_range,
    image_to_rgb,
    label_error_map,
    make_palette,
    make_panel,
    normals_to_rgb,
    save_panel,
    save_png,
    with_colorbar,
)


def lut_index(colors: np.ndarray, cmap: str) -> np.ndarray:
    """Position (0..255) of each colour in a colour map's lookup table (nearest entry)."""
    table = _lut(cmap).astype(np.int64)
    dist = ((colors.reshape(-1, 1, 3).astype(np.int64) - table[None]) ** 2).sum(-1)
    return dist.argmin(1).reshape(colors.shape[:-1])


# --------------------------------------------------------------------------------------------------
# Depth
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cmap", ["turbo", "magma", "viridis"])
def test_depth_colours_are_monotonic_and_invalid_black(cmap: str) -> None:
    depth = np.tile(np.linspace(0.5, 10.0, 200, dtype=np.float32), (3, 1))  # (3, 200) ramp
    depth[1, ::7] = 0.0
    depth[2, 5] = np.nan
    rgb = colorize_depth(depth, vmin=0.5, vmax=10.0, cmap=cmap)
    assert rgb.shape == (3, 200, 3) and rgb.dtype == np.uint8
    index = lut_index(rgb[0], cmap)
    assert index[0] == 0 and index[-1] == 255
    assert (np.diff(index) >= 0).all()
    assert (rgb[1, ::7] == 0).all() and (rgb[2, 5] == 0).all()
    assert (rgb[1, 1] == rgb[0, 1]).all()


def test_depth_range_is_robust_and_fixed_range_clips() -> None:
    depth = np.full((50, 50), 2.0, dtype=np.float32)
    depth[:, 25:] = 4.0
    depth[0, 0] = 500.0  # one outlier pixel
    depth[1, :] = 0.0  # invalid row
    lo, hi = depth_range(depth)
    assert lo == 2.0 and hi == 4.0
    rgb = colorize_depth(depth)  # per-image range: the outlier saturates, the rest spans the map
    assert (lut_index(rgb[10:12, :25], "turbo") == 0).all() and (lut_index(rgb[10:12, 25:], "turbo") == 255).all()
    fixed = colorize_depth(torch.from_numpy(depth)[None], vmin=0.0, vmax=8.0)  # (1, H, W) tensor
    assert (lut_index(fixed[10:12, :25], "turbo") == 64).all()  # 2 m of 0..8 m -> 1/4 of the map
    assert (lut_index(fixed[10:12, 25:], "turbo") == 128).all()  # round(0.5 * 255)


def test_colorbar_strip_runs_from_vmax_at_top_to_vmin_at_bottom() -> None:
    image = colorize_depth(np.linspace(1, 5, 120 * 90).reshape(120, 90))
    out = with_colorbar(image, 1.0, 5.0, "turbo", label="m")
    assert out.shape[0] == 120 and out.shape[1] > 90 + 20 and out.dtype == np.uint8
    assert np.array_equal(out[:, :90], image)
    bar = out[:, 90 + 3 + 7]  # the middle column of the gradient
    in_table = (bar[:, None] == _lut("turbo")[None]).all(-1).any(-1)  # rows showing a colour-map entry
    ramp_rows = np.nonzero(in_table)[0]
    assert len(ramp_rows) > 80
    assert lut_index(bar[ramp_rows[0]], "turbo") == 255 and lut_index(bar[ramp_rows[-1]], "turbo") == 0
    assert (out[:, 90 + 14 + 8 :] < 100).any()  # tick labels right of the 14-pixel bar


# --------------------------------------------------------------------------------------------------
# Normals
# --------------------------------------------------------------------------------------------------
def test_normals_colour_convention() -> None:
    normals = np.array(
        [[[0, 0, -1], [0, -1, 0], [0, 1, 0]], [[1, 0, 0], [-1, 0, 0], [0, 0, 0]]], dtype=np.float32
    )  # (2, 3, 3) channels-last: facing, floor, ceiling / left wall, right wall, invalid
    rgb = normals_to_rgb(normals)
    expected = [
        [[128, 128, 255], [128, 255, 128], [128, 0, 128]],
        [[0, 128, 128], [255, 128, 128], [0, 0, 0]],
    ]
    assert np.abs(rgb.astype(int) - np.array(expected)).max() <= 1
    as_tensor = torch.from_numpy(normals * 3.0).permute(2, 0, 1)  # (3, H, W), not unit length
    assert np.array_equal(normals_to_rgb(as_tensor), rgb)


def test_real_normals_floor_green_ceiling_purple(shared_data) -> None:
    """On the real release (frame x right, y away, z up), floors come out green and ceilings purple."""
    floor, ceiling = [], []
    for path in sorted((shared_data / "nyu-mini" / "mtan").glob("*_normal.npy")):
        ref = np.load(path)
        labels = np.load(str(path).replace("_normal", "_label13"))  # 2 = ceiling, 4 = floor
        rgb = normals_to_rgb(np.stack([ref[..., 0], -ref[..., 2], ref[..., 1]], -1)).astype(float)
        floor.append(rgb[labels == 4])
        ceiling.append(rgb[labels == 2])
    f, c = np.concatenate(floor).mean(0), np.concatenate(ceiling).mean(0)
    assert f[1] > f[0] + 50 and f[1] > f[2] + 50
    assert c[1] < c[0] - 50 and c[1] < c[2] - 50


# --------------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------------
def test_nyu40_palette() -> None:
    assert NYU40_PALETTE.shape == (40, 3) and NYU40_PALETTE.dtype == np.uint8
    assert len(np.unique(NYU40_PALETTE, axis=0)) == 40
    assert NYU40_PALETTE[0].tolist() == [174, 199, 232]  # wall
    assert NYU40_PALETTE[1].tolist() == [152, 223, 138]  # floor
    assert NYU40_PALETTE[39].tolist() == [100, 85, 144]  # otherprop
    assert NYU40_PALETTE.any(-1).all()  # black is left to the ignore label
    with pytest.raises(ValueError, match="read-only"):
        NYU40_PALETTE[0, 0] = 0


@pytest.mark.parametrize("n", [1, 13, 41, 300])
def test_make_palette_distinct_and_never_black(n: int) -> None:
    palette = make_palette(n)
    assert palette.shape == (n, 3) and palette.dtype == np.uint8
    assert len(np.unique(palette, axis=0)) == n
    assert palette.any(-1).all()
    assert palette[0].tolist() == [128, 0, 0]  # VOC colour 1


def test_colorize_labels_ignore_and_range() -> None:
    labels = torch.tensor([[[0, 1, 255], [39, 2, 0]]])  # (1, H, W) tensor
    rgb = colorize_labels(labels, NYU40_PALETTE)
    assert rgb.shape == (2, 3, 3)
    assert rgb[0, 0].tolist() == [174, 199, 232] and rgb[1, 0].tolist() == [100, 85, 144]
    assert rgb[0, 2].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match=r"ids \[40\] outside 0..39"):
        colorize_labels(np.array([[40, 1]]), NYU40_PALETTE)
    default = colorize_labels(np.array([[0, 3]]))  # palette made for 4 classes
    assert default[0, 1].tolist() == make_palette(4)[3].tolist()


# --------------------------------------------------------------------------------------------------
# Error maps
# --------------------------------------------------------------------------------------------------
def test_depth_error_map_relative_and_invalid() -> None:
    gt = np.array([[2.0, 2.0, 2.0, 2.0, 0.0]], dtype=np.float32)
    pred = np.array([[2.0, 2.25, 1.5, 4.0, 3.0]], dtype=np.float32)  # rel errors 0, 0.125, 0.25, 1, -
    rgb = depth_error_map(pred, gt, max_rel=0.25)
    assert lut_index(rgb[:, :4], "plasma").tolist() == [[0, 128, 255, 255]]
    assert rgb[0, 4].tolist() == [0, 0, 0]


def test_angular_error_map_degrees_and_invalid() -> None:
    gt = torch.zeros(3, 1, 4)
    gt[2] = -1.0
    gt[:, 0, 3] = 0.0  # invalid ground truth
    angle = torch.deg2rad(torch.tensor([0.0, 22.5, 90.0, 0.0]))
    pred = torch.stack([torch.sin(angle), torch.zeros(4), -torch.cos(angle)])[:, None] * 2  # (3, 1, 4)
    rgb = angular_error_map(pred, gt, max_deg=45)
    assert lut_index(rgb[:, :3], "plasma").tolist() == [[0, 128, 255]]
    assert rgb[0, 3].tolist() == [0, 0, 0]


def test_label_error_map() -> None:
    rgb = label_error_map(np.array([[1, 2, 3]]), np.array([[1, 5, 255]]))
    assert rgb[0].tolist() == [[200, 200, 200], [220, 30, 30], [0, 0, 0]]


# --------------------------------------------------------------------------------------------------
# Panels and files
# --------------------------------------------------------------------------------------------------
def test_image_to_rgb_undoes_normalisation() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    x = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255  # (3, H, W) in [0, 1]
    normalised = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    assert np.array_equal(image_to_rgb(x), rgb)
    assert np.abs(image_to_rgb(normalised[None]).astype(int) - rgb).max() <= 1


def test_panel_layout_speed_and_missing_cells() -> None:
    h, w = 240, 320
    image = torch.rand(1, 3, h, w) * 4 - 2  # (B=1) normalised-looking input
    depth = 1 + 4 * torch.rand(1, 1, h, w)
    normals = torch.nn.functional.normalize(torch.randn(1, 3, h, w), dim=1)
    logits = torch.randn(1, 40, h, w)
    gt_labels = torch.randint(0, 40, (h, w))
    gt_labels[:10] = 255
    predictions = {"depth": depth, "normals": normals, "semseg": logits}
    targets = {"depth": depth[0] * 1.1, "normals": normals[0], "semseg": gt_labels}
    make_panel(image, predictions, targets, num_classes=40)  # warm-up (fonts, colour tables)
    start = time.perf_counter()
    panel = make_panel(image, predictions, targets, num_classes=40, depth_range=(1.0, 5.0))
    assert time.perf_counter() - start < 0.5
    assert panel.shape[0] == 3 * (h + 16) and panel.shape[1] > 4 * w and panel.dtype == np.uint8  # + legends
    sem_pred = panel[2 * (h + 16) + 16 :, w : 2 * w]
    assert np.array_equal(sem_pred, colorize_labels(logits[0].argmax(0), NYU40_PALETTE))
    partial = make_panel(image, {"depth": depth}, {"semseg": gt_labels}, num_classes=40)
    assert partial.shape[0] == 2 * (h + 16)  # depth and semseg rows only
    assert (partial[16 : h + 16, 2 * w : 4 * w] == 128).all()  # no depth ground truth, no error: grey
    assert (partial[h + 16 + 16 :, w : 2 * w] == 128).all()  # no semseg prediction: grey
    with pytest.raises(ValueError, match="at least one"):
        make_panel(image, {}, {})


def test_save_png_and_panel_round_trip(tmp_path) -> None:
    array = np.random.default_rng(1).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    path = save_png(tmp_path / "a.png", array)
    assert np.array_equal(np.asarray(Image.open(path)), array)
    with pytest.raises(FileExistsError):
        save_png(path, array)
    save_png(path, array[..., 0], overwrite=True)
    assert np.asarray(Image.open(path)).shape == (5, 7)
    with pytest.raises(ValueError, match="uint8"):
        save_png(tmp_path / "b.png", array.astype(np.float32))
    out = save_panel(tmp_path / "panel.png", array, {"depth": np.ones((5, 7), np.float32)})
    assert np.asarray(Image.open(out)).shape[0] == 5 + 16
