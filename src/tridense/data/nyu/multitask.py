"""The extracted multi-task layout ``NYUD_MT`` (ASTMT, MTI-Net, ATRC)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tridense.data.base import Transform
from tridense.data.io import (
    PathLike,
    check_depth,
    read_label_png,
    read_lines,
    read_npy,
    read_rgb,
    require_file,
)
from tridense.data.nyu.common import (
    NYU40_CLASSES,
    NYUSplitRelease,
    _check_hw,
    _empty_split,
    nyu_K,
    read_normals_npy,
    read_normals_png_signed,
    shift_labels,
    to_camera_frame,
)
from tridense.data.sample import TASKS
from tridense.errors import DataError


def _find_with_suffix(stem: Path, suffixes: Sequence[str], what: str) -> Path:
    for suffix in suffixes:
        path = stem.with_name(stem.name + suffix)
        if path.is_file():
            return path
    raise DataError(f"missing {what} (looked for {' or '.join(suffixes)})", stem.with_name(stem.name + suffixes[0]))


class NYUv2MultiTask(NYUSplitRelease):
    """The extracted multi-task NYUD release ``NYUD_MT`` (Maninis et al.'s ASTMT, Vandenhende et al.'s
    Multi-Task-Learning-PyTorch, MTI-Net, ATRC): 795 train / 654 val images, 40 classes.

    Layout::

        ROOT/
          images/NAME.jpg         RGB (or .png); 425x560 in the public release (standard crop) or 480x640
          depth/NAME.npy          float metres, (H, W) or (H, W, 1), 0 = invalid
          segmentation/NAME.png   0 = unlabeled, 1..40 = the 40 classes
          normals/NAME.npy        float (H, W, 3) in [-1, 1], zero = invalid
                                  (or NAME.png with n = 2 v / 255 - 1)
          gt_sets/{train,val}.txt one NAME per line

    Normal frame: the release does not document it. Its augmentations treat channel 0 as image-right
    (a flip negates it) and channels 0, 1 as the image plane; we assume the NYU toolbox convention
    ``normals_frame="toward"`` (x right, y down, z towards the viewer), converted with n_cam = (x, y, -z).
    Pass another name of :data:`NORMAL_FRAMES` or a 3x3 matrix if your copy differs. ``K`` is the NYU
    camera of :func:`nyu_K` for the image size (the 425x560 standard crop is recognised).

    Args:
        root: the NYUD_MT folder.
        split: "train" or "val".
        normals_frame: the frame of the stored normals (see above).
        tasks, transform: see :class:`~tridense.data.base.DenseDataset`.
    """

    name: ClassVar[str] = "nyuv2_multitask"
    available_tasks: ClassVar[tuple[str, ...]] = TASKS
    num_classes = 40
    class_names = NYU40_CLASSES
    layout: ClassVar[str] = (
        "ROOT/\n"
        "  images/NAME.jpg          RGB (.jpg or .png)\n"
        "  depth/NAME.npy           float32 metres, (H, W) or (H, W, 1), 0 = invalid\n"
        "  segmentation/NAME.png    uint8, 0 = unlabeled, 1..40\n"
        "  normals/NAME.npy         float (H, W, 3) in [-1, 1] (or NAME.png, n = 2 v / 255 - 1)\n"
        "  gt_sets/train.txt, val.txt   one NAME per line"
    )

    def __init__(
        self,
        root: PathLike,
        *,
        split: str = "train",
        normals_frame: str | np.ndarray = "toward",
        tasks: Sequence[str] | None = None,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(root, split=split, normals_frame=normals_frame, tasks=tasks, transform=transform)
        list_path = require_file(self.root / "gt_sets" / f"{split}.txt", f"{split} list (gt_sets/{split}.txt)")
        self.names = read_lines(list_path, f"{split} list")
        if not self.names:  # pragma: no cover - read_lines raises on an empty list
            raise _empty_split(type(self), split, list_path)

    def __len__(self) -> int:
        return len(self.names)

    def load(self, index: int) -> dict[str, Any]:
        name = self.names[index]
        image_path = _find_with_suffix(self.root / "images" / name, (".jpg", ".png"), "image")
        image = read_rgb(image_path)
        hw = image.shape[:2]
        sample: dict[str, Any] = {"image": image, "K": nyu_K(hw)}
        if "depth" in self.tasks:
            path = self.root / "depth" / f"{name}.npy"
            depth = read_npy(path, what="depth")
            if depth.ndim == 3 and depth.shape[2] == 1:
                depth = depth[..., 0]
            if depth.ndim != 2:
                raise DataError(f"depth must be (H, W) or (H, W, 1), got shape {depth.shape}", path)
            sample["depth"] = check_depth(depth, path, hw)
        if "semseg" in self.tasks:
            path = self.root / "segmentation" / f"{name}.png"
            labels = read_label_png(path)
            _check_hw(labels, hw, path, "segmentation")
            sample["semseg"] = shift_labels(labels, self.num_classes, path)
        if "normals" in self.tasks:
            path = _find_with_suffix(self.root / "normals" / name, (".npy", ".png"), "normals")
            stored = read_normals_npy(path) if path.suffix == ".npy" else read_normals_png_signed(path)
            _check_hw(stored, hw, path, "normals")
            sample["normals"] = to_camera_frame(stored, self.normals_matrix)
        sample["meta"] = {"name": name, "dataset": self.name, "path": str(image_path)}
        return sample
