"""HHA: the depth encoding of Gupta et al. (ECCV 2014) that GAD's "+HHA" ablation feeds as a second input.

Three channels per pixel, from metric depth, the intrinsics and the gravity direction:

* horizontal disparity: 1 / z (1/m);
* height above ground: the height of the pixel's point along "up", minus that of the ground, taken as a low
  percentile (``floor_percentile``) of the heights of all valid points (the lowest surface in view);
* angle with gravity: the angle (degrees) between the surface normal and "up": 0 on floors, 90 on walls,
  180 on ceilings.

Gravity ("up" in the camera frame, x right, y down, z forward) comes from the dataset when it records the
camera tilt (SUN RGB-D's ``Rtilt``: ``meta["R_world_from_cam"]``, see :func:`up_from_rotation`), or is
estimated from the normals by Gupta et al.'s (CVPR 2013) iterative procedure (:func:`estimate_up`): starting
from the image's "up" (-y), classify the normals as nearly parallel or nearly perpendicular to the current
estimate (within 45 degrees, then 15), and take the direction that minimises the sum of sin^2 of the angles
to the parallel set plus cos^2 of the angles to the perpendicular set, i.e. the eigenvector of the smallest
eigenvalue of ``sum_perp n n^T - sum_par n n^T``. Invalid depth gives 0 in every channel.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from tridense.errors import ConfigError
from tridense.geometry import backproject, depth_to_normals

#: Gupta et al.'s angle thresholds (degrees) of the successive gravity iterations.
GRAVITY_THRESHOLDS: tuple[float, ...] = (45.0, 15.0)


def up_from_rotation(R_world_from_cam: Tensor | np.ndarray) -> Tensor:
    """"Up" in the camera frame from a camera-to-world rotation of a z-up world: ``R^T (0, 0, 1)``, (3,)."""
    R = torch.as_tensor(np.asarray(R_world_from_cam), dtype=torch.float64)
    if R.shape != (3, 3):
        raise ValueError(f"R_world_from_cam must be (3, 3), got {tuple(R.shape)}")
    up = R.T @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    return up / up.norm()


def estimate_up(
    normals: Tensor,
    valid: Tensor | None = None,
    *,
    init: Sequence[float] = (0.0, -1.0, 0.0),
    thresholds: Sequence[float] = GRAVITY_THRESHOLDS,
) -> Tensor:
    """Gravity's "up" in the camera frame from unit normals (3, H, W), by Gupta et al.'s iterations.

    Args:
        normals: (3, H, W) unit normals (zero where invalid).
        valid: (H, W) or (1, H, W) bool; default: non-zero normals.
        init: the first estimate (the image's up, -y).
        thresholds: the angle tolerance (degrees) of each iteration.

    Returns:
        (3,) float64 unit vector; ``init`` when no normal is valid.
    """
    n = normals.reshape(3, -1).T.double()  # (N, 3)
    mask = n.abs().sum(-1) > 0 if valid is None else valid.reshape(-1) & (n.abs().sum(-1) > 0)
    n = n[mask]
    up = torch.tensor(list(init), dtype=torch.float64)
    up = up / up.norm()
    for threshold in thresholds:
        if n.shape[0] == 0:
            break
        cos = n @ up  # (N,)
        limit = math.cos(math.radians(threshold))
        parallel = cos.abs() > limit
        perpendicular = cos.abs() < math.sin(math.radians(threshold))
        if not parallel.any() and not perpendicular.any():
            break
        A = n[perpendicular].T @ n[perpendicular] - n[parallel].T @ n[parallel]  # (3, 3)
        _, vectors = torch.linalg.eigh(A)
        candidate = vectors[:, 0]
        up = candidate if candidate @ up >= 0 else -candidate
    return up


def hha(
    depth: Tensor | np.ndarray,
    K: Tensor | np.ndarray,
    *,
    up: Tensor | np.ndarray | None = None,
    normals: Tensor | None = None,
    floor_percentile: float = 1.0,
) -> Tensor:
    """Physical HHA channels (3, H, W): disparity 1/z (1/m), height above ground (m), angle with up (deg).

    Args:
        depth: (H, W) or (1, H, W) metric depth, 0 = invalid.
        K: (3, 3) intrinsics of the depth map.
        up: (3,) "up" in the camera frame; None: :func:`estimate_up` from the normals.
        normals: (3, H, W) unit normals; None: fitted to the depth (:func:`tridense.geometry.depth_to_normals`).
        floor_percentile: percentile of the valid points' heights taken as the ground.
    """
    d = torch.as_tensor(np.asarray(depth) if isinstance(depth, np.ndarray) else depth).double()
    d = d.reshape(d.shape[-2], d.shape[-1])
    valid = d > 0
    if normals is None:
        n, fitted = depth_to_normals(d, K)
        n, normal_valid = n[0].double(), fitted[0, 0]
    else:
        n = torch.as_tensor(normals).double()
        normal_valid = n.abs().sum(0) > 0
    if up is None:
        up_vec = estimate_up(n, normal_valid & valid)
    else:
        up_vec = torch.as_tensor(np.asarray(up) if isinstance(up, np.ndarray) else up, dtype=torch.float64)
        up_vec = up_vec / up_vec.norm()
    points = backproject(d, K)[0]  # (3, H, W)
    height = torch.einsum("c,chw->hw", up_vec, points)  # (H, W)
    ground = torch.quantile(height[valid], floor_percentile / 100.0) if valid.any() else height.new_zeros(())
    angle = torch.rad2deg(torch.arccos(torch.einsum("c,chw->hw", up_vec, n).clamp(-1.0, 1.0)))
    disparity = torch.where(valid, 1.0 / d.clamp_min(1e-6), torch.zeros_like(d))
    height = torch.where(valid, height - ground, torch.zeros_like(d))
    angle = torch.where(valid & normal_valid, angle, torch.zeros_like(d))
    return torch.stack([disparity, height, angle]).float()


def normalise_hha(channels: Tensor) -> Tensor:
    """Network input from physical HHA (3, H, W) or (B, 3, H, W): ``[1/z, height / 1 m, angle / 90 - 1]``.

    Disparity (0.1-2 1/m indoors), height (0-3 m) and the rescaled angle (-1..1) all lie near [-1, 2].
    """
    scale = channels.new_tensor([1.0, 1.0, 1.0 / 90.0]).view(-1, 1, 1)
    shift = channels.new_tensor([0.0, 0.0, -1.0]).view(-1, 1, 1)
    valid = channels[..., :1, :, :] > 0
    return torch.where(valid, channels * scale + shift, torch.zeros_like(channels))


class AddHHA:
    """Transform: add ``sample["hha"]`` (3, H, W), the normalised HHA of the sample's depth.

    Apply it last (after the geometric augmentation, whose depth and K it reads). ``gravity``: ``"estimate"``
    (from the normals of the depth, always consistent with the transformed sample), ``"meta"`` (the
    dataset's camera tilt ``meta["R_world_from_cam"]``, e.g. SUN RGB-D's ``Rtilt``; valid only for samples
    whose camera frame was not flipped or rotated: evaluation pipelines and training without flips or
    rotations) or ``"auto"`` (``meta`` where the sample has the tilt, else ``estimate``). A sample without
    depth gets zeros (no geometry to encode). ``drop_depth``: remove the depth once encoded (it was loaded
    as an input only, not as a task to learn).
    """

    def __init__(
        self,
        gravity: Literal["estimate", "meta", "auto"] = "estimate",
        floor_percentile: float = 1.0,
        *,
        drop_depth: bool = False,
    ) -> None:
        if gravity not in ("estimate", "meta", "auto"):
            raise ConfigError(f"HHA gravity must be 'estimate', 'meta' or 'auto', got {gravity!r}")
        self.gravity, self.floor_percentile, self.drop_depth = gravity, floor_percentile, drop_depth

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        out = dict(sample)
        h, w = sample["image"].shape[-2:]
        if "depth" not in sample:
            out["hha"] = torch.zeros(3, h, w)
            return out
        up = None
        rotation = (sample.get("meta") or {}).get("R_world_from_cam")
        if self.gravity == "meta" or (self.gravity == "auto" and rotation is not None):
            if rotation is None:
                raise ConfigError("HHA gravity 'meta' needs meta['R_world_from_cam'] (SUN RGB-D); use 'estimate'")
            up = up_from_rotation(rotation)
        channels = hha(sample["depth"], sample["K"], up=up, floor_percentile=self.floor_percentile)
        out["hha"] = normalise_hha(channels)
        if self.drop_depth:
            del out["depth"]
        return out

    def __repr__(self) -> str:
        return f"AddHHA(gravity={self.gravity!r})"
