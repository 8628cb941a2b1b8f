"""Surface-normal metrics: known angles, invalid pixels, the histogram median, real normals, streaming."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tridense.data.io import read_npy
from tridense.metrics import FINE_NORMAL_THRESHOLDS, NormalMetrics, normal_angles, normal_metrics


def _known_angles() -> tuple[torch.Tensor, torch.Tensor]:
    """A 2x2 image whose angles are 0, 90, 180 and 45 degrees (prediction deliberately not unit length)."""
    g = torch.tensor([0.0, 0.0, -1.0]).view(3, 1, 1).expand(3, 2, 2).clone()
    vectors = torch.tensor([[0.0, 0.0, -2.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, -1.0]])  # (4, 3)
    p = vectors.T.reshape(3, 2, 2)
    return p, g


def test_known_angles() -> None:
    p, g = _known_angles()
    assert normal_angles(p, g).tolist() == pytest.approx([0.0, 90.0, 180.0, 45.0], abs=1e-6)
    m = normal_metrics(p, g, thresholds=(11.25, 50.0, 100.0))
    assert m["mean"] == pytest.approx((0 + 90 + 180 + 45) / 4)
    assert m["rmse"] == pytest.approx(math.sqrt((90**2 + 180**2 + 45**2) / 4))
    assert m["median"] == pytest.approx((45 + 90) / 2, abs=0.01)  # even count: mean of the middle two
    assert (m["within_11.25"], m["within_50"], m["within_100"]) == (25.0, 50.0, 75.0)


def test_zero_ground_truth_is_ignored_zero_prediction_is_90_degrees() -> None:
    p, g = _known_angles()
    p_pad = torch.cat([p, torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1).expand(3, 2, 1)], dim=2)  # (3, 2, 3)
    g_pad = torch.cat([g, torch.zeros(3, 2, 1)], dim=2)  # the padded column has no ground truth: skipped
    p_pad[:, 0, 0] = 0.0  # a zero prediction at a valid pixel (it was the 0-degree pixel) is a 90-degree error
    m = normal_metrics(p_pad, g_pad)
    assert m["mean"] == pytest.approx((90 + 90 + 180 + 45) / 4)
    assert m["median"] == pytest.approx(90.0, abs=0.01)
    assert m["within_30"] == 0.0
    p_pad[:, 0, 0] = math.nan  # so is a non-finite one
    assert normal_metrics(p_pad, g_pad)["mean"] == pytest.approx((90 + 90 + 180 + 45) / 4)
    mask = torch.tensor([[True, False], [True, True]])  # drop the 90-degree pixel
    assert normal_metrics(p, g, mask=mask)["mean"] == pytest.approx((0 + 180 + 45) / 3)
    assert all(math.isnan(v) for v in normal_metrics(p, torch.zeros_like(g)).values())


def test_threshold_keys() -> None:
    p, g = _known_angles()
    keys = ["mean", "median", "rmse", "within_11.25", "within_22.5", "within_30"]
    assert list(normal_metrics(p, g)) == keys
    fine = normal_metrics(p, g, thresholds=FINE_NORMAL_THRESHOLDS)
    assert [k for k in fine if k.startswith("within")] == ["within_2.8125", "within_5.625", "within_7.5"]


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 4\).*\(2, 3, 4, 5\)"):
        normal_metrics(torch.ones(2, 3, 4, 4), torch.ones(2, 3, 4, 5))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        normal_metrics(torch.ones(2, 2, 4, 4), torch.ones(2, 2, 4, 4))


def test_median_within_bin_of_numpy_median() -> None:
    gen = torch.Generator().manual_seed(1)
    for n in (1, 2, 3, 10, 999, 4000):
        p, g = torch.randn(1, 3, 1, n, generator=gen), torch.randn(1, 3, 1, n, generator=gen)
        exact = float(np.median(normal_angles(p, g).numpy()))
        assert normal_metrics(p, g)["median"] == pytest.approx(exact, abs=0.01), n


def test_real_nyu_normals_rotated_by_ten_degrees(shared_data) -> None:
    normals = read_npy(shared_data / "nyu-mini" / "mtan" / "0001_normal.npy", shape_ndim=3)
    g = torch.from_numpy(np.ascontiguousarray(normals, dtype=np.float64)).permute(2, 0, 1)  # (3, H, W)
    valid = g.norm(dim=0) > 0
    assert 0 < int(valid.sum()) < valid.numel()  # the sample has invalid (zero) normals
    # rotate every normal by exactly 10 degrees towards a perpendicular direction
    tangent = torch.linalg.cross(g, torch.tensor([0.6, 0.0, 0.8], dtype=torch.float64).view(3, 1, 1), dim=0)
    tangent = tangent / tangent.norm(dim=0, keepdim=True).clamp_min(1e-12)
    theta = math.radians(10.0)
    p = math.cos(theta) * g + math.sin(theta) * tangent
    same = normal_metrics(g, g)
    assert same["mean"] < 1e-3
    assert same["within_11.25"] == 100.0
    m = normal_metrics(p, g, thresholds=(5.625, 11.25))
    assert normal_angles(p, g).numel() == int(valid.sum())
    assert m["mean"] == pytest.approx(10.0, abs=1e-6)
    assert m["median"] == pytest.approx(10.0, abs=0.01)
    assert m["rmse"] == pytest.approx(10.0, abs=1e-6)
    assert (m["within_5.625"], m["within_11.25"]) == (0.0, 100.0)


def test_normal_streaming_equals_one_shot() -> None:
    gen = torch.Generator().manual_seed(2)
    g = torch.nn.functional.normalize(torch.randn(11, 3, 10, 12, generator=gen), dim=1)
    g[torch.rand(11, 1, 10, 12, generator=gen).expand_as(g) < 0.2] = 0.0
    p = g + 0.4 * torch.randn(g.shape, generator=gen)
    metric = NormalMetrics()
    start = 0
    for size in (1, 3, 7):
        metric.update(p[start : start + size], g[start : start + size])
        start += size
    streamed, one_shot = metric.compute(), normal_metrics(p, g)
    assert streamed == pytest.approx(one_shot, rel=1e-12)
    assert streamed["median"] == pytest.approx(float(np.median(normal_angles(p, g).numpy())), abs=0.01)
