"""Joint transforms on tensor samples that keep image, depth, normals, labels, masks and ``K`` consistent.

Conventions (see :mod:`tridense.data.sample`): pixel ``(u, v)`` has its centre at integer coordinates,
``K`` maps camera coordinates (x right, y down, z forward) to pixels. Each transform states what it does
to every key:

==================  ==================================================================================
transform           effect
==================  ==================================================================================
Resize / scale      image bilinear (antialiased), depth / labels nearest, normals bilinear on valid
                    pixels and renormalised; ``K`` rescaled; depth unchanged (a different camera)
RandomZoom          magnify by ``s`` and crop back: the scene seen from closer. Depth / s, normals
                    (n_x, n_y, s n_z) renormalised (the normal of the z-squashed surface), fx, fy kept
HorizontalFlip      every map mirrored, n_x negated, cx -> W - 1 - cx
RandomRotation      a camera roll about the optical axis: the image is warped by K R K^-1, normals are
                    rotated by R, depth and ``K`` are unchanged, the uncovered border becomes invalid
Crop / RandomCrop   every map cropped (padded with invalid values if needed), principal point shifted
ColorJitter         gamma, brightness, contrast on the image only
Normalize           image (x - mean) / std with ImageNet statistics
==================  ==================================================================================

Random transforms draw from ``torch``'s global generator, so a seeded DataLoader is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from tridense.data.intrinsics import nyu_focal
from tridense.data.sample import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD, INVALID_VALUE
from tridense.ops import vector_norm
from tridense.tasks import TASK_SPECS, TASKS

Sample = dict[str, Any]


def _size_of(sample: Sample) -> tuple[int, int]:
    return int(sample["image"].shape[-2]), int(sample["image"].shape[-1])


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


def _normalise_normals(normals: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Unit-normalise (3, H, W) normals where ``valid`` (H, W) holds, zero elsewhere."""
    norm = vector_norm(normals, dim=0, keepdim=True)
    keep = valid[None] & (norm > 1e-6)
    return torch.where(keep, normals / norm.clamp_min(1e-6), torch.zeros_like(normals))


def _valid_normals(normals: torch.Tensor) -> torch.Tensor:
    return normals.abs().sum(dim=0) > 0  # (H, W)


def _depth_resize(depth: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    if mode == "nearest":
        return F.interpolate(depth[None], size=size, mode="nearest-exact")[0]
    if mode == "bilinear":
        return F.interpolate(depth[None], size=size, mode="bilinear", align_corners=False)[0]
    raise ValueError(f"depth_interpolation must be 'nearest' or 'bilinear', got {mode!r}")


def resize_sample(sample: Sample, size: tuple[int, int], *, depth_interpolation: str = "nearest") -> Sample:
    """Resize every map of a sample to ``size`` = (H, W) and rescale ``K`` accordingly.

    Depth is resampled ``nearest`` (default: never mixes surfaces, keeps sparse depth sparse) or
    ``bilinear`` (dense, smooth depth; exact on planes).
    """
    h0, w0 = _size_of(sample)
    h, w = int(size[0]), int(size[1])
    if (h, w) == (h0, w0):
        return sample
    out = dict(sample)
    antialias = h < h0 or w < w0
    out["image"] = F.interpolate(
        sample["image"][None], size=(h, w), mode="bilinear", align_corners=False, antialias=antialias
    )[0].clamp_(0, 1)
    if "depth" in sample:
        out["depth"] = _depth_resize(sample["depth"], (h, w), depth_interpolation)
    if "normals" in sample:
        normals = sample["normals"]
        valid = _valid_normals(normals).float()[None, None]  # (1, 1, H0, W0)
        smooth = F.interpolate(normals[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        valid_out = F.interpolate(valid, size=(h, w), mode="nearest-exact")[0, 0] > 0.5
        out["normals"] = _normalise_normals(smooth, valid_out)
    for key in ("semseg", "instances"):
        if key in sample:
            labels = sample[key][None, None].float()
            out[key] = F.interpolate(labels, size=(h, w), mode="nearest-exact")[0, 0].long()
    if "K" in sample:
        sx, sy = w / w0, h / h0
        K = sample["K"].clone()
        K[0, 0], K[1, 1] = K[0, 0] * sx, K[1, 1] * sy
        K[0, 2], K[1, 2] = (K[0, 2] + 0.5) * sx - 0.5, (K[1, 2] + 0.5) * sy - 0.5
        out["K"] = K
    return out


def crop_sample(sample: Sample, top: int, left: int, height: int, width: int) -> Sample:
    """Crop rows ``top:top+height`` and columns ``left:left+width``, padding with invalid values outside."""
    h0, w0 = _size_of(sample)
    out = dict(sample)
    pad = (max(0, -left), max(0, left + width - w0), max(0, -top), max(0, top + height - h0))
    fills = {"image": 0.0, **INVALID_VALUE}
    for key, fill in fills.items():
        if key not in sample:
            continue
        x = sample[key]
        if any(pad):
            x = F.pad(x, pad, value=fill)
        t, l = top + pad[2], left + pad[0]
        out[key] = x[..., t : t + height, l : l + width].contiguous()
    if "K" in sample:
        K = sample["K"].clone()
        K[0, 2] -= left
        K[1, 2] -= top
        out["K"] = K
    return out


def hflip_sample(sample: Sample) -> Sample:
    """Mirror left-right: every map flipped, n_x negated, cx -> W - 1 - cx."""
    _, w = _size_of(sample)
    out = dict(sample)
    for key in ("image", "instances"):
        if key in sample:
            out[key] = sample[key].flip(-1)
    for task in TASKS:  # each task's own rule (normals: n_x negated)
        if task in sample:
            out[task] = TASK_SPECS[task].flip(sample[task])
    if "K" in sample:
        K = sample["K"].clone()
        K[0, 2] = w - 1 - K[0, 2]
        out["K"] = K
    return out


def rotate_sample(sample: Sample, degrees: float, *, depth_interpolation: str = "nearest") -> Sample:
    """Roll the camera about its optical axis by ``degrees`` (clockwise on screen for positive angles).

    The image is warped by the homography K R K^-1 (exact for any fx, fy), normals are rotated by R,
    depth and K are unchanged; pixels that come from outside the image become invalid. Depth is sampled
    ``nearest`` (never mixing surfaces or holes) or ``bilinear`` (for dense, smooth depth).
    """
    if degrees == 0:
        return sample
    h, w = _size_of(sample)
    K = sample["K"] if "K" in sample else _default_K(h, w)
    theta = math.radians(degrees)
    c, s = math.cos(theta), math.sin(theta)
    R = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    # Output pixel p_out shows the scene point that was at p_src = K R^-1 K^-1 p_out.
    H_src = K.double() @ R.double().T @ torch.linalg.inv(K.double())  # (3, 3)
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    pix = torch.stack([u, v, torch.ones_like(u)], dim=-1) @ H_src.T  # (H, W, 3)
    src_u, src_v = pix[..., 0] / pix[..., 2], pix[..., 1] / pix[..., 2]
    grid = torch.stack([(src_u + 0.5) / w * 2 - 1, (src_v + 0.5) / h * 2 - 1], dim=-1)[None].float()  # (1, H, W, 2)
    out = dict(sample)

    def warp(x: torch.Tensor, mode: str) -> torch.Tensor:
        return F.grid_sample(x[None], grid, mode=mode, padding_mode="zeros", align_corners=False)[0]

    inside = warp(torch.ones(1, h, w), "nearest")[0] > 0.5  # (H, W)
    out["image"] = warp(sample["image"], "bilinear")
    if "depth" in sample:
        out["depth"] = warp(sample["depth"], depth_interpolation)
    if "normals" in sample:
        n = warp(sample["normals"], "nearest")  # (3, H, W)
        n = torch.einsum("ij,jhw->ihw", R[:3, :3], n)
        out["normals"] = _normalise_normals(n, inside & _valid_normals(n))
    for key, fill in (("semseg", IGNORE_INDEX), ("instances", 0)):
        if key in sample:
            labels = warp(sample[key][None].float(), "nearest")[0].long()
            out[key] = torch.where(inside, labels, torch.full_like(labels, fill))
    return out


def _default_K(h: int, w: int) -> torch.Tensor:
    """A pinhole camera with NYU's field of view, for samples that carry no intrinsics."""
    f = nyu_focal(w)
    return torch.tensor([[f, 0.0, (w - 1) / 2], [0.0, f, (h - 1) / 2], [0.0, 0.0, 1.0]])


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[Sample], Sample]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: Sample) -> Sample:
        for transform in self.transforms:
            sample = transform(sample)
        return sample

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


class Resize:
    """Resize to a fixed (H, W); ``K`` follows, depth is unchanged."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, sample: Sample) -> Sample:
        return resize_sample(sample, self.size)

    def __repr__(self) -> str:
        return f"Resize({self.size})"


class RandomScale:
    """Resize by a random factor in ``scale`` (a change of focal length): ``K`` scales, depth does not."""

    def __init__(self, scale: tuple[float, float] = (1.0, 1.5)) -> None:
        self.scale = scale

    def __call__(self, sample: Sample) -> Sample:
        s = _uniform(*self.scale)
        h, w = _size_of(sample)
        return resize_sample(sample, (round(h * s), round(w * s)))

    def __repr__(self) -> str:
        return f"RandomScale({self.scale})"


class RandomZoom:
    """Magnify by ``s`` and crop back to the input size, as if the camera had moved closer.

    Depth is divided by ``s`` and the normals of the z-squashed surface become (n_x, n_y, s n_z),
    renormalised; fx and fy are kept and the principal point follows the crop, so back-projecting the new
    depth with the new ``K`` is consistent. The crop is random within the magnified image.
    """

    def __init__(self, scale: tuple[float, float] = (1.0, 1.5), *, depth_interpolation: str = "nearest") -> None:
        if scale[0] < 1.0:
            raise ValueError(f"RandomZoom scale must be >= 1 (magnification), got {scale}")
        self.scale = scale
        self.depth_interpolation = depth_interpolation

    def __call__(self, sample: Sample) -> Sample:
        s = _uniform(*self.scale)
        if s == 1.0:
            return sample
        h, w = _size_of(sample)
        K = sample["K"].clone() if "K" in sample else None
        big = resize_sample(sample, (round(h * s), round(w * s)), depth_interpolation=self.depth_interpolation)
        top = int(torch.randint(0, big["image"].shape[-2] - h + 1, ()))
        left = int(torch.randint(0, big["image"].shape[-1] - w + 1, ()))
        out = crop_sample(big, top, left, h, w)
        if "depth" in out:
            out["depth"] = out["depth"] / s
        if "normals" in out:
            n = out["normals"].clone()
            n[2] = n[2] * s
            out["normals"] = _normalise_normals(n, _valid_normals(n))
        if K is not None:
            K_out = out["K"]
            K_out[0, 0], K_out[1, 1] = K[0, 0], K[1, 1]  # same camera, nearer scene
            out["K"] = K_out
        return out

    def __repr__(self) -> str:
        return f"RandomZoom({self.scale})"


class Crop:
    """Crop a fixed window; ``anchor`` = "center" or an explicit (top, left)."""

    def __init__(self, size: tuple[int, int], anchor: str | tuple[int, int] = "center") -> None:
        self.size = (int(size[0]), int(size[1]))
        self.anchor = anchor

    def __call__(self, sample: Sample) -> Sample:
        h, w = _size_of(sample)
        if self.anchor == "center":
            top, left = (h - self.size[0]) // 2, (w - self.size[1]) // 2
        else:
            top, left = self.anchor  # type: ignore[misc]
        return crop_sample(sample, top, left, *self.size)

    def __repr__(self) -> str:
        return f"Crop({self.size}, anchor={self.anchor!r})"


class RandomCrop:
    """Crop a random window of ``size``; pads with invalid values when the image is smaller."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, sample: Sample) -> Sample:
        h, w = _size_of(sample)
        top = int(torch.randint(0, max(h - self.size[0], 0) + 1, ()))
        left = int(torch.randint(0, max(w - self.size[1], 0) + 1, ()))
        return crop_sample(sample, top, left, *self.size)

    def __repr__(self) -> str:
        return f"RandomCrop({self.size})"


class RandomHorizontalFlip:
    """Flip with probability ``p`` (n_x negated, cx mirrored)."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, sample: Sample) -> Sample:
        return hflip_sample(sample) if float(torch.rand(())) < self.p else sample

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomRotation:
    """Roll the camera by a uniform angle in [-degrees, degrees] (normals rotate with it)."""

    def __init__(self, degrees: float = 5.0) -> None:
        self.degrees = float(degrees)

    def __call__(self, sample: Sample) -> Sample:
        return rotate_sample(sample, _uniform(-self.degrees, self.degrees))

    def __repr__(self) -> str:
        return f"RandomRotation({self.degrees})"


class ColorJitter:
    """Random gamma, brightness and contrast on the image (in [0, 1]); other keys untouched."""

    def __init__(
        self,
        gamma: tuple[float, float] = (0.9, 1.1),
        brightness: tuple[float, float] = (0.8, 1.2),
        contrast: tuple[float, float] = (0.8, 1.2),
    ) -> None:
        self.gamma, self.brightness, self.contrast = gamma, brightness, contrast

    def __call__(self, sample: Sample) -> Sample:
        image = sample["image"].clamp(0, 1) ** _uniform(*self.gamma)
        image = image * _uniform(*self.brightness)
        mean = image.mean()
        image = (image - mean) * _uniform(*self.contrast) + mean
        out = dict(sample)
        out["image"] = image.clamp_(0, 1)
        return out

    def __repr__(self) -> str:
        return f"ColorJitter(gamma={self.gamma}, brightness={self.brightness}, contrast={self.contrast})"


class Normalize:
    """(image - mean) / std, ImageNet statistics by default."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)

    def __call__(self, sample: Sample) -> Sample:
        out = dict(sample)
        out["image"] = (sample["image"] - self.mean) / self.std
        return out

    def __repr__(self) -> str:
        return "Normalize()"


def denormalize(
    image: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """Inverse of :class:`Normalize` for (3, H, W) or (B, 3, H, W) images, clamped to [0, 1]."""
    shape = (3, 1, 1) if image.dim() == 3 else (1, 3, 1, 1)
    m = torch.tensor(mean, device=image.device).view(shape)
    s = torch.tensor(std, device=image.device).view(shape)
    return (image * s + m).clamp(0, 1)


def train_transforms(
    size: tuple[int, int] | None,
    *,
    scale: tuple[float, float] | None = None,
    zoom: tuple[float, float] | None = None,
    flip: bool = True,
    rotation: float = 0.0,
    color: bool = True,
) -> Compose:
    """The usual training pipeline: [resize] -> [scale + random crop] -> [zoom] -> flip -> [rotation]
    -> colour jitter -> normalise. ``size`` is the network input (H, W); ``None`` keeps the data size."""
    steps: list[Callable[[Sample], Sample]] = []
    if size is not None:
        steps.append(Resize(size))
    if scale is not None:
        steps.append(RandomScale(scale))
        if size is not None:
            steps.append(RandomCrop(size))
    if zoom is not None:
        steps.append(RandomZoom(zoom))
    if flip:
        steps.append(RandomHorizontalFlip())
    if rotation:
        steps.append(RandomRotation(rotation))
    if color:
        steps.append(ColorJitter())
    steps.append(Normalize())
    return Compose(steps)


def eval_transforms(size: tuple[int, int] | None) -> Compose:
    """Evaluation pipeline: [resize] -> normalise."""
    steps: list[Callable[[Sample], Sample]] = [] if size is None else [Resize(size)]
    steps.append(Normalize())
    return Compose(steps)
