"""Tests of tridense.geometry: hand-derived projections, plane fits, analytic scenes, PLY, intrinsics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tridense.data.transforms import crop_sample, resize_sample
from tridense.geometry import (
    _algebraic_normal,
    _smallest_eigenvector,
    backproject,
    crop_intrinsics,
    depth_to_normals,
    depth_to_pointcloud,
    pixel_grid,
    points_to_ply,
    project,
    scale_intrinsics,
)

K = torch.tensor([[260.0, 0.0, 159.5], [0.0, 250.0, 119.5], [0.0, 0.0, 1.0]], dtype=torch.float64)
H, W = 240, 320
K_S = torch.tensor([[65.0, 0.0, 39.5], [0.0, 62.5, 29.5], [0.0, 0.0, 1.0]], dtype=torch.float64)  # small maps
HS, WS = 60, 80


def angles_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angles between unit vector maps (3, ...)."""
    return torch.rad2deg(torch.acos((a * b).sum(0).clamp(-1, 1)))


def rays(k: torch.Tensor = K, h: int = H, w: int = W) -> torch.Tensor:
    """Unit-z viewing rays (3, H, W) of every pixel: (u - cx) / fx, (v - cy) / fy, 1."""
    u, v = pixel_grid(h, w, dtype=torch.float64)
    return torch.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], torch.ones_like(u)])


def plane_depth(normal: tuple[float, float, float], point: tuple[float, float, float]) -> torch.Tensor:
    """Depth (HS, WS) seen by K_S of the plane through ``point`` with ``normal``: z = (n . p0) / (n . ray)."""
    n = torch.tensor(normal, dtype=torch.float64)
    p0 = torch.tensor(point, dtype=torch.float64)
    return (n @ p0) / torch.einsum("c,chw->hw", n, rays(K_S, HS, WS))


def render_scene() -> tuple[torch.Tensor, torch.Tensor]:
    """Ray-cast a room corner (walls, floor, ceiling, a slanted wall), a sphere and a rotated box.

    Returns the exact depth (H, W) and the exact camera-facing normals (3, H, W).
    """
    d = rays()  # (3, H, W), z = 1 so the ray parameter t is the depth
    best_t = torch.full((H, W), math.inf, dtype=torch.float64)
    best_n = torch.zeros(3, H, W, dtype=torch.float64)

    def keep(t: torch.Tensor, n: torch.Tensor) -> None:
        closer = (t > 1e-6) & (t < best_t)
        best_t[closer] = t[closer]
        best_n[:, closer] = n.expand(3, H, W)[:, closer]

    planes = [
        ((0, 0, -1), (0, 0, 5)),
        ((0, -1, 0), (0, 1.2, 0)),
        ((0, 1, 0), (0, -1.5, 0)),
        ((1, 0, 0), (-2.2, 0, 0)),
        ((-1, 0, -0.4), (2.0, 0, 3.0)),
    ]
    for normal, point in planes:
        n = torch.tensor(normal, dtype=torch.float64)
        n = n / n.norm()
        t = (n @ torch.tensor(point, dtype=torch.float64)) / torch.einsum("c,chw->hw", n, d)
        keep(t, n[:, None, None])
    # sphere |t d - c| = r
    c, r = torch.tensor([0.7, 0.5, 2.8], dtype=torch.float64), 0.45
    a = (d * d).sum(0)
    b = -2 * torch.einsum("c,chw->hw", c, d)
    disc = b * b - 4 * a * (c @ c - r * r)
    t = torch.where(disc >= 0, (-b - disc.clamp_min(0).sqrt()) / (2 * a), torch.full_like(a, math.inf))
    keep(t, (t * d - c[:, None, None]) / r)
    # box rotated by 35 degrees about y, standing on the floor (y = 1.2)
    ang = math.radians(35)
    R = torch.tensor(
        [[math.cos(ang), 0, math.sin(ang)], [0, 1, 0], [-math.sin(ang), 0, math.cos(ang)]],
        dtype=torch.float64,
    )  # box -> camera
    centre, half = torch.tensor([-0.9, 0.75, 3.2], dtype=torch.float64), 0.45
    o = R.T @ (-centre)  # ray origin in the box frame
    db = torch.einsum("ij,jhw->ihw", R.T, d)  # (3, H, W)
    with torch.no_grad():
        inv = 1 / db
        t1, t2 = (-half - o[:, None, None]) * inv, (half - o[:, None, None]) * inv
        tmin, tmax = torch.minimum(t1, t2), torch.maximum(t1, t2)
        t_near, axis = tmin.max(0)
        t_far = tmax.min(0).values
    hit = t_near <= t_far
    n_box = torch.zeros(3, H, W, dtype=torch.float64)
    n_box.scatter_(0, axis[None], -torch.sign(db.gather(0, axis[None])))  # face normal against the ray
    keep(torch.where(hit, t_near, torch.full_like(t_near, math.inf)), torch.einsum("ij,jhw->ihw", R, n_box))
    assert torch.isfinite(best_t).all()
    return best_t, best_n


# --------------------------------------------------------------------------------------------------
# Pixels <-> points
# --------------------------------------------------------------------------------------------------
def test_pixel_grid_is_column_then_row() -> None:
    grid = pixel_grid(2, 3)
    assert grid.shape == (2, 2, 3)
    assert grid[0].tolist() == [[0, 1, 2], [0, 1, 2]]
    assert grid[1].tolist() == [[0, 0, 0], [1, 1, 1]]


def test_backproject_hand_numbers() -> None:
    depth = torch.zeros(H, W, dtype=torch.float64)
    depth[119, 159] = 2.0  # v = 119, u = 159: half a pixel left of and above the principal point
    depth[119, 419 - 160] = 4.0  # u = 259 = cx + 99.5
    points = backproject(depth, K)
    assert points.shape == (1, 3, H, W)
    assert torch.allclose(
        points[0, :, 119, 159], torch.tensor([-0.5 * 2 / 260, -0.5 * 2 / 250, 2.0], dtype=torch.float64)
    )
    assert torch.allclose(
        points[0, :, 119, 259], torch.tensor([99.5 * 4 / 260, -0.5 * 4 / 250, 4.0], dtype=torch.float64)
    )
    assert (points[0, :, 0, 0] == 0).all()  # invalid depth -> zero point


@pytest.mark.parametrize("shape", [(H, W), (1, H, W), (2, 1, H, W)])
def test_project_inverts_backproject(shape: tuple[int, ...]) -> None:
    depth = 0.5 + 5 * torch.rand(shape, dtype=torch.float64)
    points = backproject(depth, K)
    batch = shape[0] if len(shape) == 4 else 1
    assert points.shape == (batch, 3, H, W)
    assert torch.allclose(points[:, 2], depth.reshape(batch, H, W))
    uv = project(points, K)
    assert torch.allclose(uv, pixel_grid(H, W, dtype=torch.float64).expand(batch, 2, H, W), atol=1e-9)


def test_project_point_lists_and_batched_K() -> None:
    K2 = torch.stack([K, scale_intrinsics(K, 2.0, 2.0)])  # (2, 3, 3)
    pts = torch.tensor([[1.0, -0.5, 2.0]], dtype=torch.float64).T.expand(2, 3, 1)  # (B, 3, N)
    uv = project(pts, K2)
    assert uv.shape == (2, 2, 1)
    assert torch.allclose(uv[0, :, 0], torch.tensor([260 * 0.5 + 159.5, 250 * -0.25 + 119.5], dtype=torch.float64))
    assert torch.allclose(uv[1, :, 0], (uv[0, :, 0] + 0.5) * 2 - 0.5)


def test_bad_shapes_are_reported() -> None:
    with pytest.raises(ValueError, match=r"depth must be .* got shape \(3, 4, 5\)"):
        backproject(torch.ones(3, 4, 5), K)
    with pytest.raises(ValueError, match="K must be"):
        backproject(torch.ones(4, 5), torch.eye(4))
    with pytest.raises(ValueError, match="window must be an odd"):
        depth_to_normals(torch.ones(8, 8), K, window=4)


# --------------------------------------------------------------------------------------------------
# Normals
# --------------------------------------------------------------------------------------------------
def test_closed_form_eigenvectors_match_eigh() -> None:
    a = torch.randn(500, 3, 3, dtype=torch.float64)
    cov = a @ a.transpose(1, 2)  # (N, 3, 3) symmetric positive definite
    six = torch.stack([cov[:, 0, 0], cov[:, 0, 1], cov[:, 0, 2], cov[:, 1, 1], cov[:, 1, 2], cov[:, 2, 2]], -1)
    vec, lam = _smallest_eigenvector(six)
    ref_lam, ref_vec = torch.linalg.eigh(cov)  # ascending
    assert torch.allclose(lam, ref_lam.flip(-1), atol=1e-9)
    assert torch.allclose((vec * ref_vec[:, :, 0]).sum(-1).abs(), torch.ones(500, dtype=torch.float64), atol=1e-9)


def test_algebraic_fit_matches_homogeneous_eigh() -> None:
    """Newton on the 3x3 reduction equals the smallest eigenvector of sum (p, 1)(p, 1)^T."""
    centre = torch.tensor([0.3, -0.2, 3.0], dtype=torch.float64) + 0.5 * torch.randn(300, 3, dtype=torch.float64)
    spread = torch.tensor([0.05, 0.05, 0.01], dtype=torch.float64)
    pts = centre[:, None] + torch.randn(300, 25, 3, dtype=torch.float64) * spread  # (N, 25, 3) noisy patches
    hom = torch.cat([pts, torch.ones(300, 25, 1, dtype=torch.float64)], -1)  # (N, 25, 4)
    ref = torch.linalg.eigh(hom.transpose(1, 2) @ hom).eigenvectors[:, :3, 0]  # (N, 3)
    ref = ref / ref.norm(dim=-1, keepdim=True)
    q = pts - pts[:, :1]  # centred on the first point, as depth_to_normals does
    s2 = torch.stack([(q[..., i] * q[..., j]).sum(1) for i, j in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))], -1)
    normal = _algebraic_normal(s2, q.sum(1), torch.full((300,), 25.0, dtype=torch.float64), pts[:, 0])
    assert ((normal * ref).sum(-1).abs() > math.cos(math.radians(1e-3))).all()


@pytest.mark.parametrize("fit", ["tls", "algebraic"])
@pytest.mark.parametrize("weighting", ["gate", "gaussian"])
def test_tilted_plane_normal_recovered_and_facing_camera(fit: str, weighting: str) -> None:
    normal = torch.tensor([0.25, -0.3, -0.9], dtype=torch.float64)
    normal = normal / normal.norm()
    for sign in (1, -1):  # the orientation of the input plane does not matter
        depth = plane_depth(tuple((sign * normal).tolist()), (0.0, 0.0, 3.0))
        normals, valid = depth_to_normals(depth, K_S, fit=fit, weighting=weighting)
        assert normals.shape == (1, 3, HS, WS) and valid.shape == (1, 1, HS, WS)
        assert valid.all()
        err = angles_deg(normals[0], normal[:, None, None])
        assert err.max() < 1e-4, f"max error {err.max():.2e} deg"
        points = backproject(depth, K_S)[0]
        assert ((normals[0] * points).sum(0) < 0).all()  # towards the camera


def test_invalid_where_depth_zero_or_support_thin() -> None:
    depth = plane_depth((0.0, 0.0, -1.0), (0.0, 0.0, 2.0))
    depth[20:25, 10:15] = 0  # a hole
    depth[:, 40:] = 0
    depth[10, 60] = 2.0  # an isolated valid pixel: no neighbours
    depth[50, 50:78] = 2.0  # a one-pixel-wide line: collinear neighbours
    normals, valid = depth_to_normals(depth, K_S, min_support=0.0)
    assert not valid[0, 0, 20:25, 10:15].any()
    assert not valid[0, 0, 10, 60] and not valid[0, 0, 50, 50:78].any()
    assert (normals[0][:, ~valid[0, 0]] == 0).all()
    assert valid[0, 0, 0:18, 0:40].all()
    # the corner pixel of a valid quadrant sees 4 x 4 of the 7 x 7 samples: support 16 / 49 = 0.3265
    quadrant = torch.zeros(HS, WS, dtype=torch.float64)
    quadrant[:31, :41] = plane_depth((0.0, 0.0, -1.0), (0.0, 0.0, 2.0))[:31, :41]
    assert depth_to_normals(quadrant, K_S, min_support=0.32)[1][0, 0, 30, 40]
    assert not depth_to_normals(quadrant, K_S, min_support=0.33)[1][0, 0, 30, 40]
    sparse = torch.zeros(HS, WS, dtype=torch.float64)
    sparse[::4, ::4] = 2.0  # 1 in 16 pixels valid: at most 4 of the 49 samples of a dense 7 x 7 block
    _, valid_sparse = depth_to_normals(sparse, K_S, dilation=1)
    assert not valid_sparse.any()


def test_normals_invariant_to_global_depth_scale() -> None:
    noise = 1 + 0.01 * torch.rand(HS, WS, dtype=torch.float64)
    depth = plane_depth((0.2, -0.4, -0.9), (0.0, 0.0, 2.5)) * noise
    depth[:, :30] *= 1.3  # a depth edge
    base, valid = depth_to_normals(depth, K_S)
    assert valid.float().mean() > 0.5
    for scale in (0.01, 7.0):
        scaled, valid_scaled = depth_to_normals(depth * scale, K_S)
        assert torch.equal(valid, valid_scaled)
        assert (base - scaled).abs().max() < 1e-9


@pytest.mark.parametrize("fit", ["tls", "algebraic"])
def test_analytic_scene_median_error_below_3_degrees(fit: str) -> None:
    depth, exact = render_scene()
    normals, valid = depth_to_normals(depth.float(), K.float(), fit=fit)
    err = angles_deg(normals[0].double(), exact)[valid[0, 0]]
    assert valid.float().mean() > 0.97
    assert err.median() < 3.0
    assert (err < 11.25).float().mean() > 0.9
    # the exact normals are camera facing, like the estimate
    assert ((exact * backproject(depth, K)[0]).sum(0) < 0).all()


def test_batch_matches_single_images_and_gradient_flows() -> None:
    depth, _ = render_scene()
    batch = torch.stack([depth, depth * 1.5])[:, None, ::4, ::4].contiguous()  # (2, 1, 60, 80)
    K_small = scale_intrinsics(K, 0.25, 0.25)
    normals, _ = depth_to_normals(batch, K_small)
    single, _ = depth_to_normals(batch[1, 0], K_small)
    assert torch.allclose(normals[1], single[0])
    leaf = batch[0, 0].clone().requires_grad_(True)
    out, _ = depth_to_normals(leaf, K_small)
    (out * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)[None, :, None, None]).sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0


def test_real_nyu_sample_agrees_with_classic_normals(shared_data) -> None:
    """The release's raw depth -> normals, compared with its classic normals (x right, y away, z up)."""
    folder = shared_data / "nyu-mini" / "mtan"
    depth = np.load(folder / "0001_depth.npy")
    ref = np.load(folder / "0001_normal.npy")
    ref = torch.from_numpy(np.stack([ref[..., 0], -ref[..., 2], ref[..., 1]])).double()  # (3, H, W) camera frame
    k = torch.tensor([[518.8579, 0.0, 325.5824], [0.0, 519.4696, 253.7362], [0.0, 0.0, 1.0]], dtype=torch.float64)
    k = scale_intrinsics(crop_intrinsics(k, 53, 44), 384 / 552, 288 / 414)
    normals, valid = depth_to_normals(torch.from_numpy(depth), k, fit="algebraic")
    both = valid[0, 0] & (ref.abs().sum(0) > 0)
    assert both.float().mean() > 0.9
    err = angles_deg(normals[0].double(), ref)[both]
    assert err.median() < 3.0
    assert (err < 11.25).double().mean() > 0.85


# --------------------------------------------------------------------------------------------------
# Point clouds and PLY
# --------------------------------------------------------------------------------------------------
def test_pointcloud_keeps_valid_masked_pixels_with_colours() -> None:
    depth = torch.full((4, 5), 2.0)
    depth[0, 0] = 0
    mask = torch.ones(4, 5, dtype=torch.bool)
    mask[3, 4] = False
    image_np = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    points, colors = depth_to_pointcloud(depth, torch.eye(3), image=image_np, mask=mask)
    assert points.shape == (18, 3) and colors.shape == (18, 3) and colors.dtype == torch.uint8
    assert torch.equal(colors[0], torch.from_numpy(image_np[0, 1]))  # row-major, (0, 0) skipped
    image_t = torch.from_numpy(image_np).permute(2, 0, 1).float() / 255  # (3, H, W) in [0, 1]
    _, colors_t = depth_to_pointcloud(depth, torch.eye(3), image=image_t, mask=mask)
    assert torch.equal(colors, colors_t)
    assert torch.allclose(points[0], torch.tensor([2.0, 0.0, 2.0]))  # u = 1, v = 0, K = I
    with pytest.raises(ValueError, match="denormalize"):
        depth_to_pointcloud(depth, torch.eye(3), image=image_t - 0.5)


def test_ply_is_binary_little_endian_and_readable(tmp_path) -> None:
    points = torch.tensor([[0.0, 1.0, 2.0], [-1.5, 0.25, 3.0], [4.0, 5.0, 6.0]])
    colors = torch.tensor([[255, 0, 0], [0, 255, 0], [1, 2, 3]], dtype=torch.uint8)
    path = points_to_ply(tmp_path / "cloud.ply", points, colors)
    raw = path.read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    header = raw[:end].decode("ascii").splitlines()
    assert header[0] == "ply" and header[1] == "format binary_little_endian 1.0"
    assert "element vertex 3" in header
    assert [h.split()[-1] for h in header if h.startswith("property")] == [
        "x",
        "y",
        "z",
        "red",
        "green",
        "blue",
    ]
    body = np.frombuffer(raw[end:], dtype=[("xyz", "<f4", 3), ("rgb", "u1", 3)])
    assert len(body) == 3
    assert np.array_equal(body["xyz"], points.numpy()) and np.array_equal(body["rgb"], colors.numpy())
    with pytest.raises(FileExistsError):
        points_to_ply(path, points, colors)
    points_to_ply(path, points[:2], overwrite=True)  # without colours
    raw = path.read_bytes()
    assert b"element vertex 2" in raw and b"red" not in raw
    assert len(raw) - raw.index(b"end_header\n") - len(b"end_header\n") == 2 * 12
    with pytest.raises(ValueError, match="uint8"):
        points_to_ply(tmp_path / "bad.ply", points, colors.float())
    assert not (tmp_path / "bad.ply").exists()


# --------------------------------------------------------------------------------------------------
# Intrinsics
# --------------------------------------------------------------------------------------------------
def test_intrinsics_helpers_hand_numbers_and_types() -> None:
    k = np.array([[500.0, 0.0, 319.5], [0.0, 400.0, 239.5], [0.0, 0.0, 1.0]])
    half = scale_intrinsics(k, 0.5, 0.25)
    assert isinstance(half, np.ndarray)
    assert np.allclose(half, [[250.0, 0.0, 159.5], [0.0, 100.0, 59.5], [0.0, 0.0, 1.0]])  # centre stays centred
    crop = crop_intrinsics(torch.from_numpy(k), 10, 20)
    assert isinstance(crop, torch.Tensor) and crop[0, 2] == 299.5 and crop[1, 2] == 229.5
    assert k[0, 2] == 319.5  # inputs untouched


def test_intrinsics_helpers_agree_with_transforms() -> None:
    k = torch.tensor([[518.9, 0.0, 325.6], [0.0, 519.5, 253.7], [0.0, 0.0, 1.0]])
    sample = {"image": torch.rand(3, 48, 64), "K": k}
    resized = resize_sample(sample, (36, 40))
    assert torch.allclose(resized["K"], scale_intrinsics(k, 40 / 64, 36 / 48))
    cropped = crop_sample(sample, 5, 7, 30, 40)
    assert torch.allclose(cropped["K"], crop_intrinsics(k, 5, 7))


def test_scaled_intrinsics_project_to_scaled_pixels() -> None:
    """Resizing by s moves pixel centres u -> (u + 0.5) s - 0.5; a 3D point must follow."""
    p = torch.tensor([[0.4], [-0.3], [2.0]], dtype=torch.float64)[None]  # (1, 3, 1)
    uv = project(p, K)[0, :, 0]
    uv2 = project(p, scale_intrinsics(K, 0.5, 0.75))[0, :, 0]
    assert torch.allclose(uv2, torch.stack([(uv[0] + 0.5) * 0.5 - 0.5, (uv[1] + 0.5) * 0.75 - 0.5]))
