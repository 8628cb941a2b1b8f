"""NYU Depth V2 raw "sync" frames with a BTS-style file list."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from tridense.data.base import DenseDataset, Transform, check_root
from tridense.data.io import (
    PathLike,
    check_depth,
    read_depth_png,
    read_lines,
    read_rgb,
    require_dir,
    require_file,
)
from tridense.data.nyu.common import (
    NYU_INTRINSICS,
    _check_hw,
    nyu_K,
    read_normals_tridense,
)
from tridense.errors import DataError


def parse_file_list(path: PathLike) -> list[tuple[str, str | None, float | None]]:
    """Parse a BTS-style list: ``rgb depth [focal]`` per line, paths relative to the data root.

    Leading slashes are dropped; a depth column ``None`` means no ground truth. Raises DataError naming
    the file and line for a malformed line.
    """
    path = Path(path)
    entries: list[tuple[str, str | None, float | None]] = []
    for number, line in enumerate(read_lines(path, "file list"), start=1):
        parts = line.split()
        if len(parts) not in (2, 3):
            raise DataError(f"line {number} {line!r}: expected 'rgb_path depth_path [focal]'", path)
        focal = None
        if len(parts) == 3:
            try:
                focal = float(parts[2])
            except ValueError as err:
                raise DataError(f"line {number}: focal {parts[2]!r} is not a number", path) from err
            if not focal > 0:
                raise DataError(f"line {number}: focal {focal} must be > 0", path)
        depth = None if parts[1] == "None" else parts[1].lstrip("/")
        entries.append((parts[0].lstrip("/"), depth, focal))
    return entries


def raw_normal_path(rgb_rel: str) -> str:
    """Relative path of a raw frame's normals: ``SCENE/rgb_00000.jpg`` -> ``SCENE/sync_normal_00000.png``
    (other names: ``STEM_normal.png``)."""
    rel = Path(rgb_rel)
    match = re.fullmatch(r"rgb_(\d+)", rel.stem)
    name = f"sync_normal_{match.group(1)}.png" if match else f"{rel.stem}_normal.png"
    return str(rel.with_name(name))


class NYUv2Raw(DenseDataset):
    """Raw NYU frames synchronised with their depth (the ~24k/12k-frame "sync" sets of BTS, Laina et al.).

    Layout::

        ROOT/SCENE/rgb_00000.jpg          RGB, 640x480
        ROOT/SCENE/sync_depth_00000.png   uint16 millimetres, 0 = invalid
        LIST_FILE                         lines "/SCENE/rgb_00000.jpg /SCENE/sync_depth_00000.png 518.8579"
                                          (leading slash and focal column optional; depth "None" = no GT)
        NORMALS_DIR/SCENE/sync_normal_00000.png   optional normals, tridense encoding

    ``K`` is the NYU camera for the image size; a focal column scales both focal lengths by
    focal / 518.8579 (so the standard lists give exactly :data:`NYU_INTRINSICS`).

    Args:
        root: the folder the list's paths are relative to (e.g. ``sync/`` or ``official_splits/test/``).
        list_file: the file list.
        normals_dir: optional folder of normals at the same relative paths (:func:`raw_normal_path`).
        depth_scale: PNG units per metre (1000: millimetres).
        tasks, transform: see :class:`~tridense.data.base.DenseDataset`.
    """

    name: ClassVar[str] = "nyuv2_raw"
    available_tasks: ClassVar[tuple[str, ...]] = ("depth",)
    layout: ClassVar[str] = (
        "ROOT/SCENE/rgb_00000.jpg, ROOT/SCENE/sync_depth_00000.png (uint16 mm, 0 = invalid)\n"
        "LIST_FILE: lines '/SCENE/rgb_00000.jpg /SCENE/sync_depth_00000.png 518.8579' (focal optional)\n"
        "NORMALS_DIR/SCENE/sync_normal_00000.png (optional, tridense normal encoding)"
    )

    def __init__(
        self,
        root: PathLike,
        *,
        list_file: PathLike,
        normals_dir: PathLike | None = None,
        depth_scale: float = 1000.0,
        tasks: Sequence[str] | None = None,
        transform: Transform | None = None,
    ) -> None:
        self.root = check_root(root, type(self))
        self.normals_dir = require_dir(normals_dir, "normals folder", self.layout) if normals_dir else None
        self.available_tasks = (*type(self).available_tasks, *(("normals",) if self.normals_dir else ()))
        super().__init__(tasks=tasks, transform=transform)
        self.list_file = require_file(list_file, "file list")
        self.entries = parse_file_list(self.list_file)
        self.depth_scale = float(depth_scale)

    def __len__(self) -> int:
        return len(self.entries)

    def load(self, index: int) -> dict[str, Any]:
        rgb_rel, depth_rel, focal = self.entries[index]
        image_path = self.root / rgb_rel
        image = read_rgb(image_path)
        hw = image.shape[:2]
        K = nyu_K(hw)
        if focal is not None:
            K[:2, :2] *= focal / NYU_INTRINSICS["fx"]
        sample: dict[str, Any] = {"image": image, "K": K}
        if "depth" in self.tasks and depth_rel is not None:
            path = self.root / depth_rel
            sample["depth"] = check_depth(read_depth_png(path, self.depth_scale), path, hw)
        if "normals" in self.tasks:
            path = self.normals_dir / raw_normal_path(rgb_rel)
            sample["normals"] = read_normals_tridense(path)
            _check_hw(sample["normals"], hw, path, "normals")
        sample["meta"] = {
            "name": str(Path(rgb_rel).with_suffix("")),
            "dataset": self.name,
            "path": str(image_path),
        }
        return sample

    def normals_relpath(self, index: int, raw: dict[str, Any] | None = None) -> str:
        """Where ``tridense prepare normals`` writes the normals of frame ``index`` (see :func:`raw_normal_path`)."""
        return raw_normal_path(self.entries[index][0])
