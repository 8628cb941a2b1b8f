"""A plain folder of NYU PNGs (``nyu-mini``)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from typing import Any, ClassVar

from tridense.data.base import DenseDataset, Transform, check_root
from tridense.data.io import (
    PathLike,
    check_depth,
    read_depth_png,
    read_label_png,
    read_rgb,
    require_file,
)
from tridense.data.nyu.common import (
    CLASS_NAMES,
    NUM_LABELED,
    _check_choice,
    _check_hw,
    _empty_split,
    _split_selection,
    nyu_K,
    read_normals_tridense,
    shift_labels,
)
from tridense.errors import DataError


def read_index_csv(path: PathLike) -> list[tuple[str, int]]:
    """Read ``index.csv``: (name, 1-based labeled-set index) per row."""
    path = require_file(path, "index.csv")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise DataError("index.csv has no rows", path)
    missing = [c for c in ("name", "nyu_labeled_index_1based") if c not in rows[0]]
    if missing:
        raise DataError(f"index.csv lacks column(s) {missing}; found {list(rows[0])}", path)
    out = []
    for number, row in enumerate(rows, start=2):
        try:
            index = int(row["nyu_labeled_index_1based"])
        except (TypeError, ValueError) as err:
            raise DataError(
                f"line {number}: nyu_labeled_index_1based {row['nyu_labeled_index_1based']!r} is not an integer",
                path,
            ) from err
        if not 1 <= index <= NUM_LABELED:
            raise DataError(f"line {number}: index {index} outside 1..{NUM_LABELED}", path)
        out.append((row["name"], index))
    return out


class NYUv2Folder(DenseDataset):
    """Labeled NYU images exported as PNG files (the layout of the ``nyu-mini`` samples).

    Layout::

        ROOT/
          index.csv             columns name, nyu_labeled_index_1based (, ...)
          rgb/NAME.png          RGB 640x480
          depth/NAME.png        uint16 millimetres, 0 = invalid
          label40/NAME.png      0 = unlabeled, 1..40
          label13/NAME.png      0 = unlabeled, 1..13
          normals/NAME.png      optional, tridense normal encoding (used when the folder exists)
          meta/splits.mat       official split (trainNdxs, testNdxs, 1-based)

    Args:
        root: the folder.
        split: "all" (every row of ``index.csv``), "train" or "test" (membership from ``meta/splits.mat``).
        label_set: 40 or 13.
        tasks, transform: see :class:`~tridense.data.base.DenseDataset`.
    """

    name: ClassVar[str] = "nyuv2_folder"
    available_tasks: ClassVar[tuple[str, ...]] = ("depth", "semseg")
    layout: ClassVar[str] = (
        "ROOT/\n"
        "  index.csv           name, nyu_labeled_index_1based\n"
        "  rgb/NAME.png        RGB\n"
        "  depth/NAME.png      uint16 mm, 0 = invalid\n"
        "  label40/NAME.png    0 = unlabeled, 1..40   (label13/NAME.png: 1..13)\n"
        "  normals/NAME.png    optional, tridense normal encoding\n"
        "  meta/splits.mat     trainNdxs, testNdxs (1-based)"
    )

    def __init__(
        self,
        root: PathLike,
        *,
        split: str = "all",
        label_set: int = 40,
        tasks: Sequence[str] | None = None,
        transform: Transform | None = None,
    ) -> None:
        _check_choice("label_set", label_set, (40, 13))
        self.root = check_root(root, type(self))
        has_normals = (self.root / "normals").is_dir()
        self.available_tasks = (*type(self).available_tasks, *(("normals",) if has_normals else ()))
        super().__init__(tasks=tasks, transform=transform)
        self.split, self.label_set = split, label_set
        self.num_classes, self.class_names = label_set, CLASS_NAMES[label_set]
        rows = read_index_csv(self.root / "index.csv")
        wanted = set(_split_selection(split, self.root / "meta" / "splits.mat", [i for _, i in rows]).tolist())
        self.rows = [(name, index) for name, index in rows if index in wanted]
        if not self.rows:
            raise _empty_split(type(self), split, self.root / "index.csv")

    def __len__(self) -> int:
        return len(self.rows)

    def load(self, index: int) -> dict[str, Any]:
        name, number = self.rows[index]
        image_path = self.root / "rgb" / f"{name}.png"
        image = read_rgb(image_path)
        hw = image.shape[:2]
        sample: dict[str, Any] = {"image": image, "K": nyu_K(hw)}
        if "depth" in self.tasks:
            path = self.root / "depth" / f"{name}.png"
            sample["depth"] = check_depth(read_depth_png(path, 1000.0), path, hw)
        if "semseg" in self.tasks:
            path = self.root / f"label{self.label_set}" / f"{name}.png"
            labels = read_label_png(path)
            _check_hw(labels, hw, path, "labels")
            sample["semseg"] = shift_labels(labels, self.label_set, path)
        if "normals" in self.tasks:
            path = self.root / "normals" / f"{name}.png"
            sample["normals"] = read_normals_tridense(path)
            _check_hw(sample["normals"], hw, path, "normals")
        sample["meta"] = {"name": name, "dataset": self.name, "path": str(image_path), "index": number}
        return sample
