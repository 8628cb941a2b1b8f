"""Camera geometry on depth maps: pixels <-> camera points, normals from depth, point clouds, intrinsics.

Conventions (as in the sample contract, see DESIGN.md):

- camera frame x right, y down, z forward (OpenCV); depth is the z coordinate in metres, 0 = invalid;
- pixel ``(u, v)`` = (column, row) has its centre at integer coordinates, so a point projects with
  ``u = fx X / Z + cx`` and back-projects with ``X = (u - cx) Z / fx``, ``Y = (v - cy) Z / fy``;
- normals are unit vectors in the camera frame oriented towards the camera (``n . p < 0``), (0, 0, 0) =
  invalid.

The map functions are batched torch code that accept a depth map as (H, W), (1, H, W) or (B, 1, H, W)
(NumPy arrays are converted) and return batched (B, C, H, W) tensors; they are differentiable where
the maths is (the plane fit wherever its eigenvalues are distinct).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from tridense.data.io import atomic_write

ArrayOrTensor = TypeVar("ArrayOrTensor", np.ndarray, torch.Tensor)


# --------------------------------------------------------------------------------------------------
# Input normalisation
# --------------------------------------------------------------------------------------------------
def _as_depth(depth: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Depth as a floating (B, 1, H, W) tensor."""
    if isinstance(depth, np.ndarray) and not depth.flags.writeable:
        depth = depth.copy()  # torch cannot wrap read-only memory
    d = torch.as_tensor(depth)
    if not d.is_floating_point():
        d = d.float()
    if d.dim() == 2:
        d = d[None, None]
    elif d.dim() == 3 and d.shape[0] == 1:
        d = d[None]
    elif not (d.dim() == 4 and d.shape[1] == 1):
        raise ValueError(f"depth must be (H, W), (1, H, W) or (B, 1, H, W), got shape {tuple(d.shape)}")
    return d


def _as_K(K: torch.Tensor | np.ndarray, batch: int, like: torch.Tensor) -> torch.Tensor:
    """Intrinsics as a (B, 3, 3) tensor with the dtype and device of ``like``."""
    k = torch.as_tensor(K, dtype=like.dtype, device=like.device)
    if k.shape[-2:] != (3, 3) or k.dim() not in (2, 3):
        raise ValueError(f"K must be (3, 3) or (B, 3, 3), got shape {tuple(k.shape)}")
    if k.dim() == 2:
        k = k.expand(batch, 3, 3)
    elif k.shape[0] not in (1, batch):
        raise ValueError(f"K has batch size {k.shape[0]} but the maps have batch size {batch}")
    else:
        k = k.expand(batch, 3, 3)
    if not (torch.isfinite(k).all() and (k[:, 0, 0] > 0).all() and (k[:, 1, 1] > 0).all()):
        raise ValueError(f"K must be finite with positive focal lengths, got {k[0].tolist()}")
    return k


# --------------------------------------------------------------------------------------------------
# Pixels <-> points
# --------------------------------------------------------------------------------------------------
def pixel_grid(
    h: int, w: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """Pixel-centre coordinates (2, H, W): channel 0 is u (column), channel 1 is v (row)."""
    rows = torch.arange(h, dtype=dtype, device=device)
    cols = torch.arange(w, dtype=dtype, device=device)
    v, u = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack([u, v])


def backproject(depth: torch.Tensor | np.ndarray, K: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Camera-frame points (B, 3, H, W) of every pixel: p = Z K^-1 (u, v, 1); invalid depth gives 0."""
    d = _as_depth(depth)
    b, _, h, w = d.shape
    k = _as_K(K, b, d)
    uv = pixel_grid(h, w, dtype=d.dtype, device=d.device)
    pix = torch.cat([uv, torch.ones_like(uv[:1])]).reshape(3, h * w)  # (3, HW) homogeneous pixels
    rays = torch.linalg.inv(k) @ pix  # (B, 3, HW), z = 1 for any upper-triangular K
    return rays.reshape(b, 3, h, w) * d


def project(points: torch.Tensor, K: torch.Tensor | np.ndarray, eps: float = 1e-6) -> torch.Tensor:
    """Pixel coordinates (B, 2, ...) of camera-frame points (B, 3, ...) (maps or lists of points).

    Points with z <= ``eps`` are not in front of the camera: their z is clamped to ``eps``, so check
    ``points[:, 2] > 0`` where that matters.
    """
    p = torch.as_tensor(points)
    if p.dim() < 2 or p.shape[1] != 3:
        raise ValueError(f"points must be (B, 3, ...), got shape {tuple(p.shape)}")
    b = p.shape[0]
    k = _as_K(K, b, p)
    flat = p.reshape(b, 3, -1)  # (B, 3, N)
    uvw = k @ flat  # (B, 3, N)
    uv = uvw[:, :2] / uvw[:, 2:].clamp_min(eps)
    return uv.reshape(b, 2, *p.shape[2:])


# --------------------------------------------------------------------------------------------------
# Normals from depth
# --------------------------------------------------------------------------------------------------
def _smallest_eigenvector(cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form eigen-analysis of symmetric 3x3 matrices (N, 6) given as (xx, xy, xz, yy, yz, zz).

    Returns the unit eigenvector of the smallest eigenvalue (N, 3) and the eigenvalues (N, 3) in
    descending order. Eigenvalues by Smith's trigonometric formula, eigenvector as the largest cross
    product of two rows of C - lambda_min I (exact when lambda_min is simple).
    """
    c = cov.double()
    a00, a01, a02, a11, a12, a22 = c.unbind(-1)
    q = (a00 + a11 + a22) / 3
    p1 = a01**2 + a02**2 + a12**2
    p2 = (a00 - q) ** 2 + (a11 - q) ** 2 + (a22 - q) ** 2 + 2 * p1
    p = torch.sqrt((p2 / 6).clamp_min(1e-300))
    b00, b11, b22 = (a00 - q) / p, (a11 - q) / p, (a22 - q) / p
    b01, b02, b12 = a01 / p, a02 / p, a12 / p
    det = b00 * (b11 * b22 - b12 * b12) - b01 * (b01 * b22 - b12 * b02) + b02 * (b01 * b12 - b11 * b02)
    r = (det / 2).clamp(-1 + 1e-12, 1 - 1e-12)  # inside [-1, 1] so acos keeps a finite gradient
    phi = torch.acos(r) / 3
    lam1 = q + 2 * p * torch.cos(phi)
    lam3 = q + 2 * p * torch.cos(phi + 2 * math.pi / 3)
    lam2 = 3 * q - lam1 - lam3
    rows = ((a00 - lam3, a01, a02), (a01, a11 - lam3, a12), (a02, a12, a22 - lam3))  # C - lambda_3 I
    best, best_norm = None, None
    for i, j in ((0, 1), (0, 2), (1, 2)):
        (x0, x1, x2), (y0, y1, y2) = rows[i], rows[j]
        cross = (x1 * y2 - x2 * y1, x2 * y0 - x0 * y2, x0 * y1 - x1 * y0)
        norm = cross[0] ** 2 + cross[1] ** 2 + cross[2] ** 2
        if best is None:
            best, best_norm = cross, norm
        else:
            larger = norm > best_norm
            best = tuple(torch.where(larger, new, old) for new, old in zip(cross, best, strict=True))
            best_norm = torch.where(larger, norm, best_norm)
    vec = torch.stack(best, -1) / torch.sqrt(best_norm.clamp_min(1e-300))[:, None]  # (N, 3)
    return vec.to(cov.dtype), torch.stack([lam1, lam2, lam3], -1).to(cov.dtype)


_UPPER = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))  # order of the 6 stored entries of a 3x3


def _outer6(a: torch.Tensor, b: torch.Tensor, dim: int) -> torch.Tensor:
    """Upper triangle (xx, xy, xz, yy, yz, zz) of a b^T for 3-vectors along ``dim``."""
    ai, bi = a.unbind(dim), b.unbind(dim)
    return torch.stack([ai[i] * bi[j] for i, j in _UPPER], dim=dim)


def _algebraic_normal(
    s2: torch.Tensor, s1: torch.Tensor, weight: torch.Tensor, p: torch.Tensor, iters: int = 4
) -> torch.Tensor:
    """Normal of the algebraic plane fit: the smallest eigenvector of sum_j w_j (p_j, 1)(p_j, 1)^T.

    Args are float64 per-pixel sums around the centre p (N, 3): s2 = sum w q q^T (N, 6), s1 = sum w q
    (N, 3), weight = sum w (N,), with q = p_j - p. Writing the 4-vector as (n, e) gives e = -s.n / (W - l)
    and (S - s s^T / (W - l)) n = l n with S = sum w p_j p_j^T, s = sum w p_j: a 3x3 eigenproblem whose
    matrix depends on the eigenvalue l, solved by Newton's method on l (the first step is the centred
    total-least-squares fit; three more converge to ~1e-6 degree).
    """
    S = s2 + _outer6(s1, p, 1) + _outer6(p, s1, 1) + weight[:, None] * _outer6(p, p, 1)  # (N, 6)
    s = s1 + weight[:, None] * p  # (N, 3)
    ss = _outer6(s, s, 1)  # (N, 6)
    lam = torch.zeros_like(weight)
    normal = torch.zeros_like(p)
    for _ in range(iters):
        gap = (weight - lam).clamp_min(1e-12)
        normal, eig = _smallest_eigenvector(S - ss / gap[:, None])
        slope = -(((s * normal).sum(-1) / gap) ** 2) - 1  # d(lambda_min(A(l)) - l) / dl
        lam = lam - (eig[:, 2] - lam) / slope
    return normal


def _window_moments(
    d: torch.Tensor, points: torch.Tensor, window: int, dilation: int, depth_sigma: float, weighting: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted moments of the neighbours of every pixel (see :func:`depth_to_normals`).

    Args:
        d: depth (B, 1, H, W), 0 = invalid.
        points: its back-projection (B, 3, H, W).

    Returns:
        sum of w (B, 1, H, W), sum of w q (B, 3, H, W) and sum of w q q^T (B, 6, H, W, upper triangle) with
        q = p_j - p_i (centred on the pixel's own point for precision).
    """
    b, _, h, w = d.shape
    z = torch.where(d > 0, d, torch.ones_like(d))  # avoids 0 / 0 in the ratio below
    r = (window // 2) * dilation
    pad = (r, r, r, r)
    points_p = F.pad(points, pad)
    depth_p = F.pad(d, pad)  # zero padding = invalid outside the image
    weight = torch.zeros_like(d)  # (B, 1, H, W) sum of w
    s1 = torch.zeros_like(points)  # (B, 3, H, W) sum of w q
    s2 = torch.zeros(b, 6, h, w, dtype=d.dtype, device=d.device)  # (B, 6, H, W) sum of w q q^T (upper)
    offsets = range(-r, r + 1, dilation)
    for dy in offsets:
        for dx in offsets:
            zj = depth_p[:, :, r + dy : r + dy + h, r + dx : r + dx + w]  # (B, 1, H, W)
            rel = (zj - d).abs() / z
            if weighting == "gate":
                wj = ((zj > 0) & (rel < depth_sigma)).to(d.dtype)
            else:
                wj = torch.exp(-0.5 * (rel / depth_sigma) ** 2) * (zj > 0)
            q = points_p[:, :, r + dy : r + dy + h, r + dx : r + dx + w] - points  # (B, 3, H, W)
            wq = wj * q
            weight.add_(wj)
            s1.add_(wq)
            for k, (i, j) in enumerate(_UPPER):
                s2[:, k : k + 1].addcmul_(wq[:, i : i + 1], q[:, j : j + 1])
    return weight, s1, s2


def depth_to_normals(
    depth: torch.Tensor | np.ndarray,
    K: torch.Tensor | np.ndarray,
    *,
    window: int = 7,
    dilation: int = 2,
    depth_sigma: float = 0.05,
    weighting: Literal["gate", "gaussian"] = "gate",
    fit: Literal["tls", "algebraic"] = "tls",
    min_support: float = 0.2,
    min_planarity: float = 1e-3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Surface normals from a depth map by local least-squares plane fits (the classic NYU procedure).

    Each valid pixel i is back-projected to p_i; the neighbours j sampled every ``dilation`` pixels in
    a ``window`` x ``window`` block are weighted by depth similarity r = |z_j - z_i| / z_i: ``"gate"``
    keeps those with r < ``depth_sigma`` (Silberman et al. 2012 use 0.05), ``"gaussian"`` weights
    exp(-r^2 / (2 depth_sigma^2)). The weighted moments are accumulated over the window offsets for all
    pixels at once, then one 3x3 eigenproblem per pixel is solved in closed form:

    - ``fit="tls"``: the eigenvector of the smallest eigenvalue of the weighted covariance (the
      total-least-squares plane through the centroid); invariant to a global depth scale.
    - ``fit="algebraic"``: the smallest eigenvector of the homogeneous moments sum w (p, 1)(p, 1)^T, as in
      Silberman's ``compute_local_planes`` that made the classic NYU ground truth. It leans towards the
      viewing ray on noisy patches and depends on the unit (metres); it reproduces the classic normals
      more closely (see ``benchmarks/normals_vs_classic.py``).

    The normal is turned towards the camera (n . p_i < 0). The defaults (a 13-pixel span, gate 0.05)
    suit ~300x400 images; the classic NYU normals used a 19-pixel span at 480x640
    (``window=7, dilation=3``).

    Args:
        depth: metric depth (H, W), (1, H, W) or (B, 1, H, W), 0 = invalid.
        K: intrinsics (3, 3) or (B, 3, 3) of this depth map.
        window: odd number of samples along each side of the block (5..11 are usual).
        dilation: pixel step between samples of the block.
        depth_sigma: relative depth difference that separates surfaces.
        weighting: ``"gate"`` (hard threshold) or ``"gaussian"`` (soft weights).
        fit: ``"tls"`` or ``"algebraic"`` plane fit (see above).
        min_support: least fraction of the block's samples (weight sum) needed for a fit.
        min_planarity: least ratio lambda_2 / lambda_1 of the two largest covariance eigenvalues; below
            it the neighbours lie on a line and the plane is not determined.

    Returns:
        ``normals`` (B, 3, H, W) unit vectors, zero where invalid, and ``valid`` (B, 1, H, W) bool:
        depth > 0, enough support and a non-degenerate fit.
    """
    if window < 3 or window % 2 == 0:
        raise ValueError(f"window must be an odd integer >= 3, got {window}")
    if dilation < 1:
        raise ValueError(f"dilation must be >= 1, got {dilation}")
    if depth_sigma <= 0:
        raise ValueError(f"depth_sigma must be > 0, got {depth_sigma}")
    if weighting not in ("gate", "gaussian"):
        raise ValueError(f"weighting must be 'gate' or 'gaussian', got {weighting!r}")
    if fit not in ("tls", "algebraic"):
        raise ValueError(f"fit must be 'tls' or 'algebraic', got {fit!r}")
    d = _as_depth(depth)
    b, _, h, w = d.shape
    points = backproject(d, K)  # (B, 3, H, W)
    valid_depth = d > 0  # (B, 1, H, W)
    weight, s1, s2 = _window_moments(d, points, window, dilation, depth_sigma, weighting)

    support = weight / float(window * window)
    sel = (valid_depth & (support >= min_support) & (weight >= 3))[:, 0].reshape(-1)  # (B*H*W,)

    def pick(x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).reshape(b * h * w, -1)[sel].double()  # (N, C) of the fitted pixels

    w_sel, s1_sel, s2_sel, p_sel = pick(weight)[:, 0], pick(s1), pick(s2), pick(points)
    mean = s1_sel / w_sel[:, None]  # (N, 3)
    cov = s2_sel / w_sel[:, None] - _outer6(mean, mean, 1)  # (N, 6)
    normal, lam = _smallest_eigenvector(cov)  # (N, 3), (N, 3)
    if fit == "algebraic":
        normal = _algebraic_normal(s2_sel, s1_sel, w_sel, p_sel)
    ok = (lam[:, 0] > 0) & (lam[:, 1] > min_planarity * lam[:, 0]) & torch.isfinite(normal).all(-1)
    facing = torch.where((normal * p_sel).sum(-1, keepdim=True) > 0, -normal, normal)
    facing = torch.where(ok[:, None], facing, torch.zeros_like(facing)).to(d.dtype)

    flat = torch.zeros(b * h * w, 3, dtype=d.dtype, device=d.device)
    flat = flat.index_put((sel.nonzero()[:, 0],), facing)  # (B*H*W, 3)
    valid_flat = torch.zeros(b * h * w, dtype=torch.bool, device=d.device)
    valid_flat[sel] = ok
    normals = flat.reshape(b, h, w, 3).permute(0, 3, 1, 2).contiguous()  # (B, 3, H, W)
    return normals, valid_flat.reshape(b, 1, h, w)


# --------------------------------------------------------------------------------------------------
# Point clouds
# --------------------------------------------------------------------------------------------------
def _image_colors(image: torch.Tensor | np.ndarray, h: int, w: int) -> torch.Tensor:
    """uint8 (H, W, 3) colours from a NumPy (H, W, 3) or torch (3, H, W) image, uint8 or float in [0, 1]."""
    if isinstance(image, np.ndarray):
        img = torch.from_numpy(np.ascontiguousarray(image))
        channels_first = False
    else:
        img = image.detach().cpu()
        channels_first = True
    if channels_first and img.dim() == 4 and img.shape[0] == 1:
        img = img[0]
    if channels_first:
        img = img.permute(1, 2, 0) if img.dim() == 3 else img
    if img.shape != (h, w, 3):
        layout = "(3, H, W)" if channels_first else "(H, W, 3)"
        raise ValueError(f"image must be {layout} with the depth's size {(h, w)}, got {tuple(image.shape)}")
    if img.dtype == torch.uint8:
        return img
    if not img.is_floating_point():
        raise ValueError(f"image must be uint8 or float in [0, 1], got dtype {img.dtype}")
    lo, hi = float(img.min()), float(img.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(
            f"float image must be in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; undo the normalisation "
            "first (tridense.data.transforms.denormalize)"
        )
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


def depth_to_pointcloud(
    depth: torch.Tensor | np.ndarray,
    K: torch.Tensor | np.ndarray,
    image: torch.Tensor | np.ndarray | None = None,
    mask: torch.Tensor | np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Points (N, 3) float32 of the valid pixels of one depth map, in row-major pixel order.

    Args:
        depth: (H, W), (1, H, W) or (1, 1, H, W) metres, 0 = invalid.
        K: (3, 3) intrinsics.
        image: colours, NumPy uint8 (H, W, 3) or a torch (3, H, W) image (uint8 or float in [0, 1]).
        mask: optional bool (H, W); only pixels where it holds are kept.

    Returns:
        ``(points, colors)``, colors uint8 (N, 3) or None without an image.
    """
    d = _as_depth(depth)
    if d.shape[0] != 1:
        raise ValueError(f"depth_to_pointcloud takes one depth map, got batch size {d.shape[0]}")
    h, w = d.shape[-2:]
    keep = (d[0, 0] > 0) & torch.isfinite(d[0, 0])  # (H, W)
    if mask is not None:
        m = torch.as_tensor(mask, device=d.device).squeeze()
        if m.shape != (h, w):
            raise ValueError(f"mask must be (H, W) = {(h, w)}, got {tuple(m.shape)}")
        keep = keep & m.bool()
    points = backproject(d, K)[0].permute(1, 2, 0)[keep]  # (N, 3)
    colors = None
    if image is not None:
        colors = _image_colors(image, h, w)[keep.cpu()]  # (N, 3)
    return points.float(), colors


def points_to_ply(
    path: str | os.PathLike,
    points: torch.Tensor | np.ndarray,
    colors: torch.Tensor | np.ndarray | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write points (N, 3) and optional uint8 colours (N, 3) as a binary little-endian PLY, atomically.

    Raises FileExistsError if ``path`` exists and ``overwrite`` is False.
    """
    pts = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError(f"points hold {int((~np.isfinite(pts)).any(1).sum())} non-finite rows")
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    cols = None
    if colors is not None:
        cols = colors.detach().cpu().numpy() if isinstance(colors, torch.Tensor) else np.asarray(colors)
        if cols.shape != pts.shape or cols.dtype != np.uint8:
            raise ValueError(f"colors must be uint8 (N, 3) = {pts.shape}, got {cols.dtype} {cols.shape}")
        fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertices = np.empty(len(pts), dtype=fields)
    vertices["x"], vertices["y"], vertices["z"] = pts[:, 0], pts[:, 1], pts[:, 2]
    if cols is not None:
        vertices["red"], vertices["green"], vertices["blue"] = cols[:, 0], cols[:, 1], cols[:, 2]
    header = [
        "ply",
        "format binary_little_endian 1.0",
        "comment written by tridense",
        f"element vertex {len(pts)}",
        "property float x",
        "property float y",
        "property float z",
    ]
    if cols is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header.append("end_header")
    with atomic_write(path, overwrite=overwrite) as handle:
        handle.write(("\n".join(header) + "\n").encode("ascii"))
        handle.write(vertices.tobytes())
    return Path(path)


# --------------------------------------------------------------------------------------------------
# Intrinsics
# --------------------------------------------------------------------------------------------------
def _float_copy(K: ArrayOrTensor) -> ArrayOrTensor:
    if isinstance(K, torch.Tensor):
        return K.clone() if K.is_floating_point() else K.double()
    return np.array(K, dtype=np.result_type(K, np.float32), copy=True)


def scale_intrinsics(K: ArrayOrTensor, sx: float, sy: float) -> ArrayOrTensor:
    """Intrinsics (..., 3, 3) after resizing the image by ``sx`` (width) and ``sy`` (height).

    Pixel centres sit at integer coordinates, so the principal point maps as cx' = (cx + 0.5) sx - 0.5
    (the same rule as :func:`tridense.data.transforms.resize_sample`).
    """
    out = _float_copy(K)
    out[..., 0, 0] = K[..., 0, 0] * sx
    out[..., 0, 1] = K[..., 0, 1] * sx
    out[..., 1, 1] = K[..., 1, 1] * sy
    out[..., 0, 2] = (K[..., 0, 2] + 0.5) * sx - 0.5
    out[..., 1, 2] = (K[..., 1, 2] + 0.5) * sy - 0.5
    return out


def crop_intrinsics(K: ArrayOrTensor, top: float, left: float) -> ArrayOrTensor:
    """Intrinsics (..., 3, 3) of the crop starting at row ``top``, column ``left``."""
    out = _float_copy(K)
    out[..., 0, 2] = K[..., 0, 2] - left
    out[..., 1, 2] = K[..., 1, 2] - top
    return out
