"""The sample contract every dataset keeps, its validation and its collation.

A *raw* sample is what a dataset reads from disk, as NumPy arrays in the units of the contract:

=============  ======================  ==========================================================
key            type, shape             meaning
=============  ======================  ==========================================================
``image``      uint8 (H, W, 3)         RGB
``depth``      float32 (H, W)          metric z-depth in metres, 0 = invalid
``normals``    float32 (H, W, 3)       unit normals, camera frame (x right, y down, z forward),
                                       (0, 0, 0) = invalid
``semseg``     int64 (H, W)            class ids 0..C-1, 255 = ignore
``instances``  int64 (H, W)            instance ids, 0 = none (optional)
``K``          float32 (3, 3)          pinhole intrinsics in pixels
``meta``       dict                    ``name``, ``dataset``, ``size`` (original H, W), ...
=============  ======================  ==========================================================

:func:`to_tensor_sample` turns it into the tensor sample of the contract (``image`` float32 (3, H, W) in
[0, 1] until :class:`~tridense.data.transforms.Normalize`, ``depth`` (1, H, W), ``normals`` (3, H, W),
``semseg`` (H, W) int64). A task whose ground truth a sample lacks is simply absent; :func:`collate`
fills it with the invalid value and yields ``has_<task>`` bool (B,) so that losses and metrics skip it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from tridense.errors import DataError

TASKS: tuple[str, ...] = ("depth", "normals", "semseg")
IGNORE_INDEX = 255
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Value that marks "no ground truth" for each dense key, used by collation and padding.
INVALID_VALUE: dict[str, float | int] = {"depth": 0.0, "normals": 0.0, "semseg": IGNORE_INDEX, "instances": 0}
#: Extra model inputs a transform may add (e.g. GAD's ``hha``), stacked when every sample has them.
INPUT_KEYS: tuple[str, ...] = ("hha",)


def _where(meta: Mapping[str, Any] | None) -> str | None:
    """The file a sample came from (for error messages), if the dataset recorded it."""
    if not meta:
        return None
    return meta.get("path") or meta.get("name")


def validate_raw_sample(sample: Mapping[str, Any], num_classes: int | None = None, *, normal_tol: float = 1e-2) -> None:
    """Check a raw (NumPy) sample against the contract and raise :class:`DataError` naming the file.

    Checks: image uint8 (H, W, 3); every dense array has the image's (H, W); depth finite and >= 0;
    normals finite and unit length or exactly zero; labels in [0, num_classes) or 255; K finite with
    positive focal lengths.
    """
    where = _where(sample.get("meta"))
    if "image" not in sample:
        raise DataError("sample has no 'image'", where)
    image = sample["image"]
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        raise DataError(
            f"image must be uint8 (H, W, 3), got {getattr(image, 'dtype', type(image))} {getattr(image, 'shape', '')}",
            where,
        )
    hw = image.shape[:2]
    for key in (*TASKS, "instances"):
        if key in sample and sample[key] is not None and tuple(sample[key].shape[:2]) != hw:
            raise DataError(f"'{key}' has size {tuple(sample[key].shape[:2])}, expected the image size {hw}", where)
    if "depth" in sample:
        depth = sample["depth"]
        if depth.ndim != 2:
            raise DataError(f"depth must be (H, W), got shape {depth.shape}", where)
        if not np.isfinite(depth).all():
            raise DataError(
                f"depth has {int((~np.isfinite(depth)).sum())} NaN/inf values; expected metres, 0 = invalid", where
            )
        if (depth < 0).any():
            raise DataError(f"depth has negative values (min {float(depth.min()):.3f}); expected metres >= 0", where)
    if "normals" in sample:
        normals = sample["normals"]
        if normals.ndim != 3 or normals.shape[2] != 3:
            raise DataError(f"normals must be (H, W, 3), got shape {normals.shape}", where)
        if not np.isfinite(normals).all():
            raise DataError("normals have NaN/inf values; expected unit vectors or (0, 0, 0) = invalid", where)
        norm = np.linalg.norm(normals, axis=2)
        bad = (norm > normal_tol) & (np.abs(norm - 1) > normal_tol)
        if bad.any():
            raise DataError(
                f"{int(bad.sum())} normals are neither unit length nor zero (e.g. |n| = {float(norm[bad][0]):.3f})",
                where,
            )
    if "semseg" in sample:
        labels = sample["semseg"]
        if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"semseg must be integer (H, W), got {labels.dtype} {labels.shape}", where)
        if num_classes is not None:
            bad = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= num_classes))
            if bad.any():
                values = np.unique(labels[bad])[:8].tolist()
                raise DataError(
                    f"semseg has labels {values} outside 0..{num_classes - 1} (and {IGNORE_INDEX} = ignore)", where
                )
    if "K" in sample:
        K = np.asarray(sample["K"])
        if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise DataError(f"K must be a finite 3x3 matrix with positive focal lengths, got {K.tolist()}", where)


def to_tensor_sample(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a raw NumPy sample to the tensor layout of the contract (image in [0, 1], channels first)."""
    out: dict[str, Any] = {}
    image = np.ascontiguousarray(raw["image"])
    out["image"] = torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)  # (3, H, W)
    if raw.get("depth") is not None:
        out["depth"] = torch.from_numpy(np.ascontiguousarray(raw["depth"], dtype=np.float32))[None]  # (1, H, W)
    if raw.get("normals") is not None:
        normals = np.ascontiguousarray(raw["normals"], dtype=np.float32)
        out["normals"] = torch.from_numpy(normals).permute(2, 0, 1).contiguous()  # (3, H, W)
    for key in ("semseg", "instances"):
        if raw.get(key) is not None:
            out[key] = torch.from_numpy(np.ascontiguousarray(raw[key], dtype=np.int64))
    if raw.get("K") is not None:
        out["K"] = torch.as_tensor(np.asarray(raw["K"], dtype=np.float32))
    meta = dict(raw.get("meta", {}))
    meta.setdefault("size", tuple(int(s) for s in image.shape[:2]))
    out["meta"] = meta
    return out


def collate(samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack tensor samples into a batch; a task absent from a sample is filled with its invalid value.

    Returns a dict with the stacked tensors, ``has_<task>`` bool (B,) for each task of :data:`TASKS`
    (and ``has_instances``), ``K`` (B, 3, 3) when every sample has one, and ``meta`` as a list of dicts.
    """
    if not samples:
        raise ValueError("collate() got an empty list of samples")
    batch: dict[str, Any] = {}
    shapes = {tuple(s["image"].shape[-2:]) for s in samples}
    if len(shapes) != 1:
        names = [s.get("meta", {}).get("name") for s in samples]
        raise DataError(f"cannot batch images of different sizes {sorted(shapes)} ({names}); add a Resize or crop")
    batch["image"] = torch.stack([s["image"] for s in samples])
    for key in (*TASKS, "instances"):
        present = [key in s for s in samples]
        if key in TASKS or any(present):
            batch[f"has_{key}"] = torch.tensor(present, dtype=torch.bool)
        if not any(present):
            continue
        template = next(s[key] for s in samples if key in s)
        filled = [s[key] if key in s else torch.full_like(template, INVALID_VALUE[key]) for s in samples]
        batch[key] = torch.stack(filled)
    if all("K" in s for s in samples):
        batch["K"] = torch.stack([s["K"] for s in samples])
    for key in INPUT_KEYS:
        if all(key in s for s in samples):
            batch[key] = torch.stack([s[key] for s in samples])
    batch["meta"] = [dict(s.get("meta", {})) for s in samples]
    return batch
