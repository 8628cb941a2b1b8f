"""Stanford 2D-3D-Semantics (Armeni et al., 2017): the perspective images of ``area_*/data``.

What this loader relies on (the dataset README, ``assets/utils.py`` and issue #13 of
``alexsax/2D-3D-Semantics``, read with the search tool):

- file names ``camera_<uuid>_<room>_frame_<k>_domain_<modality>.png`` in ``data/{rgb,depth,normal,
  semantic,pose}``, 1080 x 1080;
- depth: 16-bit PNG, 1/512 m per unit (max 128 m), missing = 2^16 - 1; z-depth for ``data/`` images;
- normals: "127.5-centered per-channel"; for the images in ``data/`` (not the panoramas) they are "defined
  relative to the direction the camera is facing": red = horizontal (more red to the right), green =
  vertical (more green downwards), blue = towards the camera; missing mesh = #808080. So the file holds
  (x right, y down, z towards the camera) and the OpenCV camera frame (z forward) is (x, y, -z);
- semantic: the RGB value R*256*256 + G*256 + B indexes ``semantic_labels.json``, whose entries are
  ``<class>_<instance>_<roomType>_<roomNum>_<area>`` (``<UNK>_0_<UNK>_0_0`` first); missing = #0D0D0D,
  beyond the list;
- pose json: ``camera_k_matrix`` (3x3) among other camera fields.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tridense.data.base import DenseDataset, Transform, check_root
from tridense.data.io import (
    check_depth,
    read_depth_png,
    read_json,
    read_rgb,
    require_dir,
    require_file,
)
from tridense.data.sample import IGNORE_INDEX, TASKS
from tridense.errors import DataError

#: The 13 classes of the 2D-3D-S / S3DIS benchmarks, in their usual order (class id = position).
CLASSES_13: tuple[str, ...] = (
    "ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair", "sofa", "bookcase",
    "board", "clutter",
)  # fmt: skip

#: Train / test areas of the three folds of the literature; area "5" is area_5a and area_5b.
FOLDS: dict[int, dict[str, tuple[str, ...]]] = {
    1: {"train": ("1", "2", "3", "4", "6"), "test": ("5",)},
    2: {"train": ("1", "3", "5", "6"), "test": ("2", "4")},
    3: {"train": ("2", "4", "5"), "test": ("1", "3", "6")},
}

DEPTH_SCALE = 512.0
DEPTH_MISSING = 65535
NORMAL_MISSING = (128, 128, 128)

LAYOUT = """\
ROOT/
  semantic_labels.json                  ["<class>_<instance>_<roomType>_<roomNum>_<area>", ...]
                                        (or ROOT/assets/semantic_labels.json)
  area_1/ area_2/ area_3/ area_4/ area_5a/ area_5b/ area_6/
    data/rgb/camera_<uuid>_<room>_frame_<k>_domain_rgb.png            8-bit RGB, 1080x1080
    data/depth/camera_<uuid>_<room>_frame_<k>_domain_depth.png        uint16, m = v / 512, 65535 = missing
    data/normal/camera_<uuid>_<room>_frame_<k>_domain_normals.png     RGB, n = (v - 127.5) / 127.5 with
                                                                      x right, y down, z to the camera;
                                                                      128 gray = missing
    data/semantic/camera_<uuid>_<room>_frame_<k>_domain_semantic.png  RGB, R*65536 + G*256 + B indexes
                                                                      semantic_labels.json
    data/pose/camera_<uuid>_<room>_frame_<k>_domain_pose.json         "camera_k_matrix": 3x3"""

_NAME = re.compile(r"^camera_(?P<camera>[0-9A-Za-z]+)_(?P<room>.+)_frame_(?P<frame>\d+)_domain_rgb\.png$")


def expand_areas(areas: Sequence[str | int]) -> list[str]:
    """Area names -> folder names: ``5`` -> ``area_5a``, ``area_5b``; ``"5a"`` -> ``area_5a``."""
    folders: list[str] = []
    for area in areas:
        key = str(area).removeprefix("area_")
        if key not in ("1", "2", "3", "4", "5", "5a", "5b", "6"):
            raise DataError(f"unknown area {area!r}; valid areas are 1, 2, 3, 4, 5 (= 5a + 5b), 5a, 5b, 6")
        folders += ["area_5a", "area_5b"] if key == "5" else [f"area_{key}"]
    return folders


def class_lut(labels: Sequence[Any], path: str | Path | None = None) -> np.ndarray:
    """Map each entry of ``semantic_labels.json`` to a class id of :data:`CLASSES_13` (others, <UNK>: 255)."""
    lut = np.full(len(labels), IGNORE_INDEX, dtype=np.int64)
    for index, label in enumerate(labels):
        if not isinstance(label, str):
            raise DataError(f"entry {index} is {label!r}, expected a string '<class>_<instance>_<room>_...'", path)
        name = label.split("_", 1)[0]
        if name in CLASSES_13:
            lut[index] = CLASSES_13.index(name)
    return lut


def decode_semantic(encoded: np.ndarray, lut: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """RGB semantic PNG (H, W, 3) uint8 -> class ids via the label index R*65536 + G*256 + B; beyond -> 255."""
    if encoded.ndim != 3 or encoded.shape[2] < 3 or encoded.dtype != np.uint8:
        raise DataError(f"semantic image must be 8-bit RGB, got {encoded.dtype} {encoded.shape}", path)
    rgb = encoded[..., :3].astype(np.int64)
    index = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]  # (H, W)
    inside = index < len(lut)
    return np.where(inside, lut[np.minimum(index, len(lut) - 1)], IGNORE_INDEX).astype(np.int64)


def decode_instances(encoded: np.ndarray, num_labels: int, path: str | Path | None = None) -> np.ndarray:
    """RGB semantic PNG -> instance ids: the label index R*65536 + G*256 + B (each entry of
    ``semantic_labels.json`` is one object instance), 0 for ``<UNK>`` (index 0) and indices beyond the list."""
    if encoded.ndim != 3 or encoded.shape[2] < 3 or encoded.dtype != np.uint8:
        raise DataError(f"semantic image must be 8-bit RGB, got {encoded.dtype} {encoded.shape}", path)
    rgb = encoded[..., :3].astype(np.int64)
    index = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]  # (H, W)
    return np.where(index < num_labels, index, 0)


def decode_normals(encoded: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """2D-3D-S normal PNG (x right, y down, z to camera; 127.5-centred) -> unit OpenCV-frame normals.

    #808080 (missing mesh) and pixels whose decoded length is far from 1 become (0, 0, 0).
    """
    if encoded.ndim != 3 or encoded.shape[2] < 3 or encoded.dtype != np.uint8:
        raise DataError(f"normal image must be 8-bit RGB, got {encoded.dtype} {encoded.shape}", path)
    rgb = encoded[..., :3]
    n = (rgb.astype(np.float32) - 127.5) / 127.5  # (H, W, 3)
    n[..., 2] = -n[..., 2]  # z towards the camera -> z forward
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    valid = ~np.all(rgb == np.array(NORMAL_MISSING, dtype=np.uint8), axis=-1) & (np.abs(norm[..., 0] - 1) < 0.1)
    return np.where(valid[..., None], n / np.maximum(norm, 1e-6), 0.0).astype(np.float32)


def _k_matrix(pose: Any, path: Path) -> np.ndarray:
    value = pose.get("camera_k_matrix") if isinstance(pose, dict) else None
    try:
        K = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        K = np.empty(0)
    if K.shape != (3, 3) or not np.isfinite(K).all():
        raise DataError(f"'camera_k_matrix' must be a 3x3 list of lists of numbers, got {value!r}", path)
    return K


class Stanford2D3DS(DenseDataset):
    """Stanford 2D-3D-S perspective images: RGB, z-depth, camera-frame normals, 13-class labels, K.

    Layout::

        ROOT/semantic_labels.json               (or ROOT/assets/semantic_labels.json)
        ROOT/area_{1,2,3,4,5a,5b,6}/data/
          rgb/camera_<uuid>_<room>_frame_<k>_domain_rgb.png             8-bit RGB
          depth/..._domain_depth.png            uint16, m = v / 512, 65535 = missing
          normal/..._domain_normals.png         RGB, n = (v - 127.5) / 127.5 in (x right, y down, z to the
                                                camera), 128 gray = missing; returned in the OpenCV frame
          semantic/..._domain_semantic.png      RGB, R*65536 + G*256 + B indexes semantic_labels.json
          pose/..._domain_pose.json             "camera_k_matrix": 3x3

    Labels: the class is the first ``_`` field of the indexed label; ``<UNK>``, classes outside
    :data:`CLASSES_13` and indices beyond the list (#0D0D0D = missing) become 255. With ``semseg``, the
    sample also has ``instances``: the label index itself (one entry per object instance; the same id in
    every image of the object), 0 for ``<UNK>`` and missing.

    Args:
        root: the dataset root (holds the ``area_*`` folders).
        split: ``"train"`` or ``"test"`` of ``fold`` (ignored when ``areas`` is given).
        fold: 1 (test area 5), 2 (test areas 2, 4) or 3 (test areas 1, 3, 6), see :data:`FOLDS`.
        areas: explicit areas instead of a fold, e.g. ``["1", "5a"]``.
        tasks, transform: see :class:`~tridense.data.base.DenseDataset`.
    """

    name = "stanford2d3ds"
    available_tasks = TASKS
    num_classes = len(CLASSES_13)
    class_names = CLASSES_13
    layout = LAYOUT

    def __init__(
        self,
        root: str | Path,
        split: Literal["train", "test"] = "train",
        *,
        fold: int = 1,
        areas: Sequence[str | int] | None = None,
        tasks: Sequence[str] | None = None,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(tasks=tasks, transform=transform)
        self.root = check_root(root, type(self))
        if areas is None:
            if fold not in FOLDS:
                raise DataError(f"fold must be one of {sorted(FOLDS)}, got {fold!r}")
            if split not in FOLDS[fold]:
                raise DataError(f"split must be 'train' or 'test', got {split!r}")
            areas = FOLDS[fold][split]
        self.areas = expand_areas(areas)
        self.files: list[tuple[str, Path]] = []
        for area in self.areas:
            rgb_dir = require_dir(self.root / area / "data" / "rgb", f"{area} rgb folder", self.layout)
            self.files += [(area, p) for p in sorted(rgb_dir.glob("*_domain_rgb.png"))]
        if not self.files:
            message = f"no *_domain_rgb.png images in areas {self.areas}\nexpected layout:\n{self.layout}"
            raise DataError(message, self.root)
        self.lut: np.ndarray | None = None
        if "semseg" in self.tasks:
            labels_file = self.root / "semantic_labels.json"
            if not labels_file.is_file() and (self.root / "assets" / "semantic_labels.json").is_file():
                labels_file = self.root / "assets" / "semantic_labels.json"
            labels = read_json(labels_file, "semantic_labels.json")
            if not isinstance(labels, list) or not labels:
                raise DataError("semantic_labels.json must be a non-empty list of label strings", labels_file)
            self.lut = class_lut(labels, labels_file)

    def __len__(self) -> int:
        return len(self.files)

    def _modality(self, area: str, rgb: Path, folder: str, suffix: str) -> Path:
        name = rgb.name.removesuffix("_domain_rgb.png") + suffix
        return require_file(self.root / area / "data" / folder / name, f"{folder} file")

    def load(self, index: int) -> dict[str, Any]:
        area, rgb_path = self.files[index]
        image = read_rgb(rgb_path)
        hw = image.shape[:2]
        pose_path = self._modality(area, rgb_path, "pose", "_domain_pose.json")
        pose = read_json(pose_path, "pose file")
        K = _k_matrix(pose, pose_path)
        match = _NAME.match(rgb_path.name)
        meta: dict[str, Any] = {
            "name": f"{area}/{rgb_path.name.removesuffix('_domain_rgb.png')}",
            "dataset": self.name,
            "path": str(rgb_path),
            "area": area,
        }
        if match:
            meta.update(camera=match["camera"], room=match["room"], frame=int(match["frame"]))
        sample: dict[str, Any] = {"image": image, "K": K.astype(np.float32), "meta": meta}
        if "depth" in self.tasks:
            depth_path = self._modality(area, rgb_path, "depth", "_domain_depth.png")
            depth = read_depth_png(depth_path, DEPTH_SCALE, invalid=DEPTH_MISSING)
            sample["depth"] = check_depth(depth, depth_path, hw)
        if "normals" in self.tasks:
            normal_path = self._modality(area, rgb_path, "normal", "_domain_normals.png")
            normals = decode_normals(read_rgb(normal_path), normal_path)
            if normals.shape[:2] != hw:
                raise DataError(f"normals have size {normals.shape[:2]}, expected the image size {hw}", normal_path)
            sample["normals"] = normals
        if "semseg" in self.tasks and self.lut is not None:
            semantic_path = self._modality(area, rgb_path, "semantic", "_domain_semantic.png")
            encoded = read_rgb(semantic_path)
            labels = decode_semantic(encoded, self.lut, semantic_path)
            if labels.shape != hw:
                raise DataError(f"semantic image has size {labels.shape}, expected the image size {hw}", semantic_path)
            sample["semseg"] = labels
            sample["instances"] = decode_instances(encoded, len(self.lut), semantic_path)
        return sample
