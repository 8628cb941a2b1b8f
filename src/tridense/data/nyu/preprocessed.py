"""The 288x384 ``.npy`` release of MTAN (Liu et al., CVPR 2019)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tridense.data.base import Transform
from tridense.data.io import (
    PathLike,
    check_depth,
    read_npy,
    require_dir,
)
from tridense.data.nyu.common import (
    NYU13_CLASSES,
    NYUSplitRelease,
    _check_hw,
    _empty_split,
    mtan_K,
    read_normals_npy,
    shift_labels,
    to_camera_frame,
)
from tridense.data.sample import TASKS
from tridense.errors import DataError


class NYUv2Preprocessed(NYUSplitRelease):
    """The 288x384 ``.npy`` release of MTAN (Liu et al., CVPR 2019), also used by LibMTL and others.

    Images were cropped to rows 53:467, cols 44:596 of the 640x480 frame and resized to 288x384, so ``K``
    is :func:`mtan_K` (fx 360.945, fy 361.370, cx 195.731, cy 139.490). Labels are the 13 classes, -1 =
    ignore. Normals are stored in a frame with x = image right, y = away from the camera, z = up (relative
    to the camera); they are converted to the camera frame as n_cam = (x, -z, y). Checked on real samples:
    after the conversion, floor normals point up (n_y ~ -0.95) and normals fitted to the back-projected
    depth agree within a median of 5-11 degrees, with a best-fit residual rotation under 1.2 degrees.

    Layout::

        ROOT/{train,val}/
          image/<i>.npy    float (288, 384, 3) RGB in [0, 1]
          depth/<i>.npy    float (288, 384, 1) or (288, 384) metres, 0 = invalid
          label/<i>.npy    float or int (288, 384), -1 = ignore, 0..12
          normal/<i>.npy   float (288, 384, 3), x right, y away, z up; (0, 0, 0) = invalid

    Args:
        root: the folder holding ``train/`` and ``val/``.
        split: "train" (795) or "val" (654).
        normals_frame: the frame of the stored normals (default "mtan").
        tasks, transform: see :class:`~tridense.data.base.DenseDataset`.
    """

    name: ClassVar[str] = "nyuv2_mtan"
    available_tasks: ClassVar[tuple[str, ...]] = TASKS
    num_classes = 13
    class_names = NYU13_CLASSES
    layout: ClassVar[str] = (
        "ROOT/{train,val}/\n"
        "  image/<i>.npy    float (288, 384, 3) in [0, 1]\n"
        "  depth/<i>.npy    float (288, 384, 1) metres, 0 = invalid\n"
        "  label/<i>.npy    (288, 384), -1 = ignore, 0..12 (13 classes)\n"
        "  normal/<i>.npy   float (288, 384, 3), x right, y away from the camera, z up; 0 = invalid"
    )

    def __init__(
        self,
        root: PathLike,
        *,
        split: str = "train",
        normals_frame: str | np.ndarray = "mtan",
        tasks: Sequence[str] | None = None,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(root, split=split, normals_frame=normals_frame, tasks=tasks, transform=transform)
        self.folder = require_dir(self.root / split, f"{split} folder", self.layout)
        image_dir = require_dir(self.folder / "image", "image folder", self.layout)
        stems = [p.stem for p in image_dir.glob("*.npy")]
        bad = [s for s in stems if not s.isdigit()]
        if bad:
            raise DataError(f"file names must be <i>.npy with an integer i, got {bad[:3]}", image_dir)
        self.ids = sorted(int(s) for s in stems)
        if not self.ids:
            raise _empty_split(type(self), split, image_dir)

    def __len__(self) -> int:
        return len(self.ids)

    def _path(self, kind: str, index: int) -> Path:
        return self.folder / kind / f"{self.ids[index]}.npy"

    def load(self, index: int) -> dict[str, Any]:
        path = self._path("image", index)
        raw = read_npy(path, shape_ndim=3, what="image")
        if raw.shape[2] != 3:
            raise DataError(f"image must be (H, W, 3), got shape {raw.shape}", path)
        if raw.dtype == np.uint8:
            image = raw
        else:
            if not np.isfinite(raw).all() or raw.min() < -1e-3 or raw.max() > 1.0 + 1e-3:
                raise DataError(
                    f"float image must hold RGB in [0, 1], got range {raw.min():.3g}..{raw.max():.3g}", path
                )
            image = np.clip(np.round(raw * 255.0), 0, 255).astype(np.uint8)
        hw = image.shape[:2]
        sample: dict[str, Any] = {"image": image, "K": mtan_K(hw)}
        if "depth" in self.tasks:
            path = self._path("depth", index)
            depth = read_npy(path, what="depth")
            depth = depth[..., 0] if depth.ndim == 3 and depth.shape[2] == 1 else depth
            if depth.ndim != 2:
                raise DataError(f"depth must be (H, W, 1) or (H, W), got shape {depth.shape}", path)
            sample["depth"] = check_depth(depth, path, hw)
        if "semseg" in self.tasks:
            path = self._path("label", index)
            labels = read_npy(path, shape_ndim=2, what="label")
            _check_hw(labels, hw, path, "label")
            if not np.isfinite(labels).all() or (labels != np.round(labels)).any():
                raise DataError("labels must be integer-valued (-1 = ignore, 0..12)", path)
            sample["semseg"] = shift_labels(labels.astype(np.int64) + 1, self.num_classes, path)  # -1 -> 0 -> 255
        if "normals" in self.tasks:
            path = self._path("normal", index)
            stored = read_normals_npy(path)
            _check_hw(stored, hw, path, "normals")
            sample["normals"] = to_camera_frame(stored, self.normals_matrix)
        sample["meta"] = {
            "name": f"{self.split}/{self.ids[index]}",
            "dataset": self.name,
            "path": str(self._path("image", index)),
        }
        return sample
