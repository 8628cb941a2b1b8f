"""Depth and KITTI metrics: hand-derived values, crops, reductions, invariances, streaming == one-shot."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tridense.data.io import read_depth_png
from tridense.metrics import (
    CROPS,
    DEPTH_KEYS,
    KITTI_KEYS,
    DepthMetrics,
    KittiMetrics,
    crop_mask,
    depth_metrics,
    kitti_metrics,
)


def test_depth_metrics_hand_computed() -> None:
    g = torch.tensor([[2.0, 2.0], [4.0, 4.0]])
    p = torch.tensor([[2.0, 1.0], [5.0, 8.0]])
    m = depth_metrics(p, g)
    assert m["abs_rel"] == pytest.approx((0 + 0.5 + 0.25 + 1.0) / 4)
    assert m["sq_rel"] == pytest.approx((0 + 1 / 2 + 1 / 4 + 16 / 4) / 4)
    assert m["rmse"] == pytest.approx(math.sqrt((0 + 1 + 1 + 16) / 4))
    ln2, ln125 = math.log(2), math.log(1.25)
    assert m["rmse_log"] == pytest.approx(math.sqrt((ln2**2 + ln125**2 + ln2**2) / 4))
    assert m["log10"] == pytest.approx((2 * math.log10(2) + math.log10(1.25)) / 4)
    # max(p/g, g/p) = 1, 2, 1.25, 2; the thresholds are strict, so 1.25 is not < 1.25
    assert (m["delta1"], m["delta2"], m["delta3"]) == (0.25, 0.5, 0.5)
    assert list(m) == list(DEPTH_KEYS)
    assert all(isinstance(v, float) for v in m.values())


def test_depth_valid_range_and_clamp() -> None:
    g = torch.tensor([[2.0, 0.0, 20.0, 5.0]])  # 0 and 20 (> max_depth 10) are invalid
    p = torch.tensor([[3.0, 7.0, 1.0, 100.0]])  # 100 is clamped to 10
    m = depth_metrics(p, g, max_depth=10.0)
    assert m["abs_rel"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["rmse"] == pytest.approx(math.sqrt((1 + 25) / 2))
    # a prediction of 0 is clamped to min_depth instead of giving inf
    assert math.isfinite(depth_metrics(torch.zeros(1, 4), g)["rmse_log"])
    # shapes (B, 1, H, W), (B, H, W) and (H, W) are the same thing
    assert depth_metrics(p[None, None], g[None, None]) == m


def test_image_and_pixel_reduction_differ_as_derived() -> None:
    g = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    p = torch.tensor([[[2.0, 9.0], [9.0, 9.0]], [[1.0, 1.0], [3.0, 9.0]], [[5.0, 5.0], [5.0, 5.0]]])
    # image A: one pixel, error 1 (abs_rel 1, rmse 1); image B: errors 0, 0, 2; image C: no valid pixel
    image = depth_metrics(p, g, reduction="image")
    pixel = depth_metrics(p, g, reduction="pixel")
    assert image["abs_rel"] == pytest.approx((1 + 2 / 3) / 2)
    assert pixel["abs_rel"] == pytest.approx(3 / 4)
    assert image["rmse"] == pytest.approx((1 + math.sqrt(4 / 3)) / 2)
    assert pixel["rmse"] == pytest.approx(math.sqrt(5 / 4))
    assert image["delta1"] == pytest.approx((0 + 2 / 3) / 2)
    assert pixel["delta1"] == pytest.approx(2 / 4)
    assert all(math.isnan(v) for v in depth_metrics(p[2:], g[2:]).values())


def test_crop_masks_exact_pixel_counts() -> None:
    eigen = crop_mask("eigen_nyu", 480, 640)
    assert int(eigen.sum()) == (471 - 45) * (601 - 41)
    rows, cols = eigen.any(1).nonzero().flatten(), eigen.any(0).nonzero().flatten()
    assert (int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])) == (45, 470, 41, 600)
    # KITTI crops as fractions: at 480x640 garg rows 195:476, cols 23:616; eigen rows 159:438, cols 23:616
    assert int(crop_mask("garg", 480, 640).sum()) == (476 - 195) * (616 - 23)
    assert int(crop_mask("eigen_kitti", 480, 640).sum()) == (438 - 159) * (616 - 23)
    # at the KITTI size 375x1242: garg rows 153:371, cols 44:1197
    assert int(crop_mask("garg", 375, 1242).sum()) == (371 - 153) * (1197 - 44)
    # NYU crop scaled proportionally: 240x320 -> rows 22:235, cols 20:300
    assert int(crop_mask("eigen_nyu", 240, 320).sum()) == (235 - 22) * (300 - 20)
    assert set(CROPS) == {"eigen_nyu", "garg", "eigen_kitti"}


def test_crop_restricts_evaluation() -> None:
    g = torch.full((1, 1, 480, 640), 3.0)
    p = g.clone()
    p[..., :45, :] = 6.0  # wrong only above the crop
    assert depth_metrics(p, g, crop="eigen_nyu")["abs_rel"] == 0.0
    assert depth_metrics(p, g)["abs_rel"] == pytest.approx(45 / 480)
    mask = torch.zeros(480, 640, dtype=torch.bool)
    mask[:45] = True
    assert depth_metrics(p, g, crop=mask)["abs_rel"] == pytest.approx(1.0)


def test_depth_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"\(2, 1, 4, 4\).*\(2, 1, 4, 5\)"):
        depth_metrics(torch.ones(2, 1, 4, 4), torch.ones(2, 1, 4, 5))
    with pytest.raises(ValueError, match=r"unknown crop 'nyu'.*eigen_nyu"):
        depth_metrics(torch.ones(4, 4), torch.ones(4, 4), crop="nyu")
    with pytest.raises(ValueError, match="unknown reduction 'mean'"):
        depth_metrics(torch.ones(4, 4), torch.ones(4, 4), reduction="mean")
    with pytest.raises(ValueError, match="crop mask has shape"):
        depth_metrics(torch.ones(4, 4), torch.ones(4, 4), crop=torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="min_depth"):
        DepthMetrics(min_depth=5.0, max_depth=1.0)


def test_kitti_metrics_hand_computed() -> None:
    e = math.e
    g = torch.tensor([[1.0, 1.0]])
    p = torch.tensor([[1.0, e]])
    m = kitti_metrics(p, g)
    # d = 0, 1: mean(d^2) - mean(d)^2 = 0.5 - 0.25
    assert m["silog"] == pytest.approx(100 * math.sqrt(0.25))
    assert m["abs_rel"] == pytest.approx(100 * (e - 1) / 2)
    assert m["sq_rel"] == pytest.approx(100 * (e - 1) ** 2 / 2)
    assert m["irmse"] == pytest.approx(math.sqrt((1000 / e - 1000) ** 2 / 2))
    assert list(m) == list(KITTI_KEYS)
    # per image, then averaged over images: a perfect second image halves every value
    both = kitti_metrics(torch.stack([p, g]), torch.stack([g, g]))
    assert both == pytest.approx({k: v / 2 for k, v in m.items()})


def _kitti_depth(shared_data) -> torch.Tensor:
    files = sorted((shared_data / "kitti-mini" / "depth").glob("*.png"))
    return torch.stack([torch.from_numpy(read_depth_png(f, 256.0)) for f in files])[:, None]  # (2, 1, H, W)


def test_silog_invariant_to_global_scale_on_kitti(shared_data) -> None:
    g = _kitti_depth(shared_data)
    noise = torch.exp(0.1 * torch.randn(g.shape, dtype=torch.float64)).float()
    pred = (g * noise).clamp(1.0, 79.0)  # inside [min_depth, max_depth] before and after scaling
    m = kitti_metrics(pred, g, crop="garg")
    scaled = kitti_metrics(pred * 0.5, g, crop="garg")
    assert m["silog"] == pytest.approx(scaled["silog"], rel=1e-9)
    assert 5 < m["silog"] < 15  # ~ 100 * 0.1 for a log-normal noise of sigma 0.1
    assert scaled["abs_rel"] > m["abs_rel"]  # the other metrics see the scale


def _numpy_reference(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """The depth literature's per-image ``compute_errors``, written independently in NumPy."""
    p, g = pred[mask], gt[mask]
    thresh = np.maximum(p / g, g / p)
    return {
        "abs_rel": np.mean(np.abs(p - g) / g),
        "sq_rel": np.mean((p - g) ** 2 / g),
        "rmse": np.sqrt(np.mean((p - g) ** 2)),
        "rmse_log": np.sqrt(np.mean((np.log(p) - np.log(g)) ** 2)),
        "log10": np.mean(np.abs(np.log10(p) - np.log10(g))),
        "delta1": np.mean(thresh < 1.25),
        "delta2": np.mean(thresh < 1.25**2),
        "delta3": np.mean(thresh < 1.25**3),
    }


def test_depth_matches_numpy_reference_on_nyu(shared_data) -> None:
    files = sorted((shared_data / "nyu-mini" / "depth").glob("*.png"))[:3]
    gts = [read_depth_png(f, 1000.0).astype(np.float64) for f in files]
    rng = np.random.default_rng(0)
    preds = [np.clip(g * np.exp(0.2 * rng.standard_normal(g.shape)), 1e-3, 10.0) for g in gts]
    crop = CROPS["eigen_nyu"].mask(480, 640).numpy()
    masks = [crop & (g > 1e-3) & (g < 10.0) for g in gts]
    per_image = [_numpy_reference(p, g, m) for p, g, m in zip(preds, gts, masks, strict=True)]
    ours = depth_metrics(torch.from_numpy(np.stack(preds)), torch.from_numpy(np.stack(gts)), crop="eigen_nyu")
    for key in DEPTH_KEYS:
        assert ours[key] == pytest.approx(np.mean([r[key] for r in per_image]), rel=1e-9), key
    exact = depth_metrics(torch.from_numpy(gts[0] * 1.1), torch.from_numpy(gts[0]))
    assert exact["abs_rel"] == pytest.approx(0.1)
    assert exact["delta1"] == 1.0


def _random_depth(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    g = torch.rand(n, 1, 12, 16, generator=gen) * 12.0  # some > max_depth 10
    g[torch.rand(g.shape, generator=gen) < 0.3] = 0.0
    g[3] = 0.0  # one image without any valid pixel
    p = g * torch.exp(0.3 * torch.randn(g.shape, generator=gen)) + 0.2
    return p, g


@pytest.mark.parametrize("reduction", ["image", "pixel"])
def test_depth_streaming_equals_one_shot(reduction: str) -> None:
    p, g = _random_depth(11)
    metric = DepthMetrics(crop="eigen_nyu", reduction=reduction)
    kitti = KittiMetrics(max_depth=10.0)
    start = 0
    for size in (1, 3, 7):
        metric.update(p[start : start + size], g[start : start + size])
        kitti.update(p[start : start + size], g[start : start + size])
        start += size
    one_shot = depth_metrics(p, g, crop="eigen_nyu", reduction=reduction)
    assert metric.compute() == pytest.approx(one_shot, rel=1e-12)
    assert kitti.compute() == pytest.approx(kitti_metrics(p, g, max_depth=10.0), rel=1e-12)
    metric.reset()
    metric.update(p, g)
    assert metric.compute() == pytest.approx(one_shot, rel=1e-12)
