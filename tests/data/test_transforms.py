"""Joint transforms keep depth, normals, labels and K consistent (checked against normals from depth)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tridense.data import transforms as T
from tridense.data.sample import to_tensor_sample
from tridense.data.synthetic import SyntheticScenes
from tridense.geometry import depth_to_normals


@pytest.fixture(scope="module")
def sample() -> dict:
    raw = SyntheticScenes("val", size=(120, 160), sensor_invalid=False, noise=False).load_raw(2)
    return to_tensor_sample(raw)


def _median_error_vs_depth(s: dict) -> float:
    """Median angle between the sample's normals and normals fitted to its depth with its K."""
    n_fit, valid = depth_to_normals(s["depth"], s["K"], window=5, dilation=1)
    n_fit, valid = n_fit[0], valid[0, 0]
    n = s["normals"]
    ok = valid & (n.abs().sum(0) > 0)
    cos = (n_fit * n).sum(0).clamp(-1, 1)[ok]
    return float(torch.rad2deg(torch.acos(cos)).median())


def test_reference_consistency(sample):
    assert _median_error_vs_depth(sample) < 1.0


def test_flip_negates_nx_mirrors_K_and_is_an_involution(sample):
    flipped = T.hflip_sample(sample)
    assert _median_error_vs_depth(flipped) < 1.0
    twice = T.hflip_sample(flipped)
    for key in ("image", "depth", "normals", "semseg", "K"):
        torch.testing.assert_close(twice[key], sample[key])
    assert flipped["K"][0, 2] == pytest.approx(159 - float(sample["K"][0, 2]))


@pytest.mark.parametrize("degrees", [-8.0, 5.0])
def test_rotation_rotates_normals_with_the_camera(sample, degrees):
    # Bilinear depth keeps the planes exact, so the fitted normals must match the rotated ones.
    assert _median_error_vs_depth(T.rotate_sample(sample, degrees, depth_interpolation="bilinear")) < 0.5
    rotated = T.rotate_sample(sample, degrees)  # nearest depth: a staircase of +-0.5 px, fitted less exactly
    assert _median_error_vs_depth(rotated) < 6.0
    border = rotated["semseg"] == 255
    assert border.any()  # corners came from outside the image
    assert (rotated["depth"][0][border] == 0).all() and (rotated["normals"][:, border] == 0).all()


def test_zoom_divides_depth_and_keeps_geometry(sample):
    torch.manual_seed(1)
    zoomed = T.RandomZoom((1.4, 1.4), depth_interpolation="bilinear")(sample)
    assert zoomed["image"].shape == sample["image"].shape
    assert _median_error_vs_depth(zoomed) < 0.5
    # Same focal length, nearer scene: the median depth shrinks by about the zoom factor.
    ratio = float(sample["depth"].median() / zoomed["depth"][zoomed["depth"] > 0].median())
    assert 1.1 < ratio < 1.8
    torch.testing.assert_close(zoomed["K"][:2, :2], sample["K"][:2, :2])


def test_resize_and_crop_keep_the_rays(sample):
    """A pixel's back-projected ray is the same before and after resize and crop."""
    small = T.resize_sample(sample, (60, 80), depth_interpolation="bilinear")
    assert _median_error_vs_depth(small) < 0.5
    K0, K1 = sample["K"].double(), small["K"].double()
    # pixel centre (u, v) at the small size covers (2u + 0.5, 2v + 0.5) of the original
    u, v = 10.0, 20.0
    ray0 = torch.linalg.solve(K0, torch.tensor([2 * u + 0.5, 2 * v + 0.5, 1.0], dtype=torch.float64))
    ray1 = torch.linalg.solve(K1, torch.tensor([u, v, 1.0], dtype=torch.float64))
    torch.testing.assert_close(ray0, ray1)
    cropped = T.crop_sample(sample, 10, 20, 50, 60)
    torch.testing.assert_close(cropped["depth"], sample["depth"][:, 10:60, 20:80])
    assert cropped["K"][0, 2] == pytest.approx(float(sample["K"][0, 2]) - 20)
    padded = T.crop_sample(sample, -5, -5, 30, 30)
    assert (padded["semseg"][:5] == 255).all() and (padded["depth"][:, :5] == 0).all()


def test_labels_stay_labels_and_normals_unit(sample):
    out = T.resize_sample(T.rotate_sample(sample, 3.0), (97, 131))
    assert set(out["semseg"].unique().tolist()) <= set(sample["semseg"].unique().tolist()) | {255}
    norm = out["normals"].norm(dim=0)
    valid = norm > 0
    torch.testing.assert_close(norm[valid], torch.ones_like(norm[valid]))


def test_color_jitter_changes_only_the_image(sample):
    torch.manual_seed(0)
    out = T.ColorJitter()(sample)
    assert not torch.equal(out["image"], sample["image"])
    assert out["image"].min() >= 0 and out["image"].max() <= 1
    for key in ("depth", "normals", "semseg", "K"):
        assert out[key] is sample[key]


def test_normalize_and_denormalize_round_trip(sample):
    norm = T.Normalize()(sample)["image"]
    np.testing.assert_allclose(T.denormalize(norm).numpy(), sample["image"].numpy(), atol=1e-6)


def test_pipelines_are_deterministic_under_a_seed(sample):
    pipe = T.train_transforms((96, 128), scale=(1.0, 1.3), zoom=(1.0, 1.2), rotation=5.0)
    torch.manual_seed(3)
    a = pipe(sample)
    torch.manual_seed(3)
    b = pipe(sample)
    for key in ("image", "depth", "normals", "semseg", "K"):
        torch.testing.assert_close(a[key], b[key])
    assert a["image"].shape == (3, 96, 128)
