"""KITTI depth: raw rectified RGB with the depth benchmark's annotated depth, listed by split files.

What this loader relies on (checked against public material, see the report):

- KITTI raw: ``<date>/<date>_drive_<nnnn>_sync/image_02/data/<frame>.png`` and one
  ``<date>/calib_cam_to_cam.txt`` per day, whose ``P_rect_02`` (3x4, row-major) gives fx, fy, cx, cy of
  the rectified left colour camera (``P_rect_03`` for ``image_03``); ``calib_time`` lines are text;
- KITTI depth benchmark: ``{train,val}/<drive>_sync/proj_depth/groundtruth/image_02/<frame>.png``, uint16,
  metres = v / 256, 0 = no ground truth;
- BTS/AdaBins split files: ``<image> <gt or None> <focal>`` per line, image relative to the raw root,
  gt relative to the annotated root (BTS merges ``train/`` and ``val/``; both are searched here);
- BTS's ``kb_crop``: top = H - 352, left = (W - 1216) // 2, crop 352 x 1216.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tridense.data.base import DenseDataset, Transform, check_root
from tridense.data.io import check_depth, read_depth_png, read_lines, read_rgb, require_file
from tridense.errors import DataError

#: KITTI benchmark crop (height, width), bottom-centre, used by BTS/AdaBins for training and evaluation.
KB_CROP: tuple[int, int] = (352, 1216)
DEPTH_SCALE = 256.0

LAYOUT = """\
DATA_PATH/                                              KITTI raw (synced + rectified)
  2011_09_26/calib_cam_to_cam.txt                       P_rect_02 / P_rect_03: 3x4 projection, K = P[:, :3]
  2011_09_26/2011_09_26_drive_0001_sync/image_02/data/0000000005.png     8-bit RGB
GT_PATH/                                                KITTI depth benchmark (data_depth_annotated)
  {train,val}/2011_09_26_drive_0001_sync/proj_depth/groundtruth/image_02/0000000005.png   uint16, m = v / 256
  (or the drive folders directly under GT_PATH, as BTS arranges them)
LIST_FILE                                               one sample per line (BTS/AdaBins Eigen split files):
  2011_09_26/2011_09_26_drive_0001_sync/image_02/data/0000000005.png \
      2011_09_26_drive_0001_sync/proj_depth/groundtruth/image_02/0000000005.png 721.5377      (one line)
  (gt "None" = no ground truth for that image; the focal column is optional and checked against the calib)"""


@dataclass(frozen=True)
class KITTIEntry:
    """One line of a split file."""

    image: str
    gt: str | None
    focal: float | None
    line: int


def parse_list(path: str | Path) -> list[KITTIEntry]:
    """Parse a BTS-style split file: ``image [gt|None [focal]]`` per line."""
    path = Path(path)
    entries = []
    for number, line in enumerate(read_lines(path, "KITTI split list"), start=1):
        parts = line.split()
        if len(parts) > 3:
            expected = "'image [gt|None [focal]]'"
            raise DataError(f"line {number} has {len(parts)} columns, expected {expected}: {line!r}", path)
        gt = parts[1] if len(parts) > 1 and parts[1] != "None" else None
        try:
            focal = float(parts[2]) if len(parts) > 2 else None
        except ValueError as err:
            raise DataError(f"line {number}: focal {parts[2]!r} is not a number", path) from err
        entries.append(KITTIEntry(parts[0], gt, focal, number))
    return entries


def read_calib(path: str | Path) -> dict[str, np.ndarray]:
    """Read a KITTI ``calib_*.txt`` (``KEY: numbers`` per line) into float64 arrays; text values are skipped."""
    path = require_file(path, "KITTI calibration file")
    calib: dict[str, np.ndarray] = {}
    for line in path.read_text().splitlines():
        if ":" not in line:
            continue
        key, _, values = line.partition(":")
        try:
            calib[key.strip()] = np.array([float(v) for v in values.split()], dtype=np.float64)
        except ValueError:
            continue  # calib_time: 09-Jan-2012 13:57:47
    return calib


def intrinsics_from_calib(path: str | Path, camera: int = 2) -> np.ndarray:
    """K (3x3) of rectified camera ``camera`` from ``P_rect_0<camera>`` of ``calib_cam_to_cam.txt``."""
    key = f"P_rect_0{camera}"
    calib = read_calib(path)
    if key not in calib:
        raise DataError(f"no '{key}' line (3x4 rectified projection)", path)
    if calib[key].size != 12:
        raise DataError(f"'{key}' must hold 12 numbers, found {calib[key].size}", path)
    return calib[key].reshape(3, 4)[:, :3].copy()


def kb_crop_box(height: int, width: int, path: str | Path | None = None) -> tuple[int, int]:
    """(top, left) of the KITTI benchmark crop of an image of ``height`` x ``width`` (``path`` for errors)."""
    if height < KB_CROP[0] or width < KB_CROP[1]:
        raise DataError(f"image of size {(height, width)} is smaller than the KITTI benchmark crop {KB_CROP}", path)
    return height - KB_CROP[0], (width - KB_CROP[1]) // 2


class KITTIDepth(DenseDataset):
    """KITTI raw RGB with annotated (semi-dense) metric depth and the rectified intrinsics.

    Layout::

        DATA_PATH/2011_09_26/calib_cam_to_cam.txt                             P_rect_02 -> K
        DATA_PATH/2011_09_26/2011_09_26_drive_0001_sync/image_02/data/0000000005.png
        GT_PATH/{train,val}/2011_09_26_drive_0001_sync/proj_depth/groundtruth/image_02/0000000005.png
        LIST_FILE: "<image> <gt or None> [<focal>]" per line (BTS/AdaBins Eigen split files)

    Depth is uint16 / 256 metres, 0 = no ground truth (about 80% of the pixels). A line whose gt is
    ``None`` (or any line when ``gt_path`` is ``None``) gives a sample without ``depth``. When a focal is
    listed it must agree with the calibration (a mismatch means the list and the data disagree).

    Args:
        data_path: KITTI raw root (holds the date folders).
        list_file: the split file.
        gt_path: the annotated depth root; ``None`` for images only.
        kb_crop: crop every map to the benchmark's bottom-centre 352 x 1216, shifting K's principal point.
        tasks, transform: see :class:`~tridense.data.base.DenseDataset`.
    """

    name = "kitti"
    available_tasks = ("depth",)
    layout = LAYOUT

    def __init__(
        self,
        data_path: str | Path,
        list_file: str | Path,
        *,
        gt_path: str | Path | None = None,
        kb_crop: bool = False,
        tasks: Sequence[str] | None = None,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(tasks=tasks, transform=transform)
        self.data_path = check_root(data_path, type(self))
        self.gt_path = None if gt_path is None else check_root(gt_path, type(self))
        self.list_file = Path(list_file).expanduser()
        self.entries = parse_list(self.list_file)
        self.kb_crop = kb_crop
        self._calib: dict[tuple[str, int], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def _intrinsics(self, entry: KITTIEntry) -> np.ndarray:
        date = entry.image.split("/")[0]
        match = re.search(r"image_0([0-3])", entry.image)
        if match is None:
            message = f"line {entry.line}: cannot tell the camera (image_0X) from {entry.image!r}"
            raise DataError(message, self.list_file)
        camera = int(match.group(1))
        if (date, camera) not in self._calib:
            self._calib[(date, camera)] = intrinsics_from_calib(self.data_path / date / "calib_cam_to_cam.txt", camera)
        K = self._calib[(date, camera)].copy()
        if entry.focal is not None and abs(entry.focal - K[0, 0]) > 1e-4 * K[0, 0]:
            raise DataError(
                f"line {entry.line}: focal {entry.focal} disagrees with fx {K[0, 0]} of "
                f"{self.data_path / date / 'calib_cam_to_cam.txt'}",
                self.list_file,
            )
        return K

    def _gt_file(self, gt_path: Path, gt: str) -> Path:
        candidates = [gt_path / gt, gt_path / "train" / gt, gt_path / "val" / gt]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        tried = ", ".join(str(c) for c in candidates[1:])
        raise DataError(f"missing ground-truth depth (also tried {tried})", candidates[0])

    def load(self, index: int) -> dict[str, Any]:
        entry = self.entries[index]
        image_path = self.data_path / entry.image
        image = read_rgb(image_path)
        h, w = image.shape[:2]
        K = self._intrinsics(entry)
        stem = Path(entry.image).stem
        parts = Path(entry.image).parts
        drive = parts[1] if len(parts) > 1 else ""
        camera = next((p for p in parts if p.startswith("image_0")), "image_02")
        meta: dict[str, Any] = {
            "name": f"{drive}/{camera}/{stem}" if drive else stem,
            "dataset": self.name,
            "path": str(image_path),
            "size": (h, w),
        }
        sample: dict[str, Any] = {"image": image, "K": K, "meta": meta}
        if "depth" in self.tasks and self.gt_path is not None and entry.gt is not None:
            gt_file = self._gt_file(self.gt_path, entry.gt)
            sample["depth"] = check_depth(read_depth_png(gt_file, DEPTH_SCALE), gt_file, (h, w))
            meta["gt_path"] = str(gt_file)
        if self.kb_crop:
            top, left = kb_crop_box(h, w, image_path)
            sample["image"] = image[top : top + KB_CROP[0], left : left + KB_CROP[1]]
            if "depth" in sample:
                sample["depth"] = sample["depth"][top : top + KB_CROP[0], left : left + KB_CROP[1]]
            K[0, 2] -= left
            K[1, 2] -= top
            meta["crop"] = (top, left, *KB_CROP)
        sample["K"] = K.astype(np.float32)
        return sample
