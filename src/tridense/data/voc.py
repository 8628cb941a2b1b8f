"""PASCAL VOC 2012 segmentation (Everingham et al., IJCV 2010), with the optional SBD-augmented train set.

What this loader relies on (the VOC2012 development kit's documentation):

- ``VOCdevkit/VOC2012/JPEGImages/<id>.jpg`` colour images;
- ``SegmentationClass/<id>.png``: **palette** (mode ``P``) PNGs whose palette *indices* are the class ids
  0..20 (0 = background) and 255 the "void" band around object boundaries and difficult regions; the
  colours are only the devkit's colour map, the indices are the labels;
- ``SegmentationObject/<id>.png``: palette PNGs of object instances (1..N, 0 background, 255 void);
- ``ImageSets/Segmentation/{train,val,trainval}.txt``: ids, one per line (1464 / 1449 images).

The SBD-augmented training set (Hariharan et al. 2011, as converted by the DeepLab authors) is a folder
``SegmentationClassAug/<id>.png`` of **grey** (mode ``L``) PNGs with the same ids 0..20 and 255, and a
list ``train_aug.txt`` (10582 ids) either of ids or in DeepLab's two-column form
``/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png`` (paths relative to ``VOC2012``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tridense.data.base import DenseDataset, Transform, check_root
from tridense.data.io import read_label_png, read_lines, read_rgb, require_file
from tridense.data.sample import IGNORE_INDEX
from tridense.errors import DataError

CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

LAYOUT = """\
ROOT/                                   VOCdevkit/VOC2012 (or a folder holding VOCdevkit/VOC2012)
  JPEGImages/<id>.jpg                   colour images
  SegmentationClass/<id>.png            palette PNG: index = class id 0..20, 255 = void (boundaries)
  SegmentationObject/<id>.png           optional: palette PNG of instances 1..N, 0 = none, 255 = void
  ImageSets/Segmentation/train.txt      ids, one per line (also val.txt, trainval.txt, test.txt)
  SegmentationClassAug/<id>.png         optional (SBD-augmented): grey PNG, class ids 0..20, 255 = void
  ImageSets/Segmentation/train_aug.txt  optional: ids, or lines '/JPEGImages/<id>.jpg
                                        /SegmentationClassAug/<id>.png' (also ROOT/train_aug.txt)"""

LabelSource = Literal["auto", "class", "aug"]


def voc_colormap(n: int = 256) -> np.ndarray:
    """The devkit's colour map (``VOClabelcolormap.m``): uint8 (n, 3), index k -> RGB from the bits of k."""
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for k in range(n):
        c, r, g, b = k, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[k] = (r, g, b)
    return cmap


def resolve_root(root: Path) -> Path:
    """``root`` itself if it holds ``JPEGImages``, else ``root/VOCdevkit/VOC2012`` or ``root/VOC2012``."""
    for candidate in (root, root / "VOCdevkit" / "VOC2012", root / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    tried = "tried ROOT, ROOT/VOCdevkit/VOC2012, ROOT/VOC2012"
    raise DataError(f"no JPEGImages folder found ({tried})\nexpected layout:\n{LAYOUT}", root)


def parse_list_line(line: str, list_file: Path) -> tuple[str, str | None]:
    """One split-list line -> (image id, label path relative to VOC2012 or None for the default one)."""
    parts = line.split()
    if len(parts) == 1:
        return Path(parts[0]).stem, None
    if len(parts) == 2:
        return Path(parts[0]).stem, parts[1].lstrip("/")
    raise DataError(f"list line {line!r} must be '<id>' or '<image path> <label path>'", list_file)


class VOC2012(DenseDataset):
    """PASCAL VOC 2012 semantic segmentation, 21 classes (0 = background), 255 = void (ignored).

    Layout::

        VOC2012/JPEGImages/<id>.jpg, SegmentationClass/<id>.png (palette indices), SegmentationObject/
        VOC2012/ImageSets/Segmentation/{train,val,trainval,train_aug}.txt
        VOC2012/SegmentationClassAug/<id>.png (optional, SBD-augmented, grey indices)

    ``instances`` come from ``SegmentationObject`` when the file exists (void -> 0 = none). The ``test``
    split has no labels; its samples carry only the image.

    Args:
        root: ``VOCdevkit/VOC2012`` or a folder that holds it.
        split: ``train``, ``val``, ``trainval``, ``train_aug``, ``test`` or any name with a list in
            ``ImageSets/Segmentation/<split>.txt`` (or ``ROOT/<split>.txt``).
        split_file: an explicit list file (overrides ``split``).
        labels: ``class`` (``SegmentationClass``), ``aug`` (``SegmentationClassAug``) or ``auto``: ``aug``
            for ``train_aug``, else ``class``. A two-column list line names its label file itself.
        tasks, transform: see :class:`~tridense.data.base.DenseDataset`.
    """

    name = "voc2012"
    available_tasks = ("semseg",)
    num_classes = len(CLASSES)
    class_names = CLASSES
    layout = LAYOUT

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        split_file: str | Path | None = None,
        labels: LabelSource = "auto",
        tasks: Sequence[str] | None = None,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(tasks=tasks, transform=transform)
        self.root = resolve_root(check_root(root, type(self)))
        if labels not in ("auto", "class", "aug"):
            raise DataError(f"labels must be 'auto', 'class' or 'aug', got {labels!r}")
        if labels == "auto":
            labels = "aug" if split == "train_aug" else "class"
        self.label_dir = "SegmentationClassAug" if labels == "aug" else "SegmentationClass"
        self.split = split
        if split_file is None:
            candidates = [self.root / "ImageSets" / "Segmentation" / f"{split}.txt", self.root / f"{split}.txt"]
            split_file = next((c for c in candidates if c.is_file()), None)
            if split_file is None:
                tried = "\n  ".join(str(c) for c in candidates)
                raise DataError(f"no list for split {split!r}; tried:\n  {tried}\nexpected layout:\n{self.layout}")
        self.split_file = Path(split_file)
        self.items = [parse_list_line(line, self.split_file) for line in read_lines(self.split_file, "split list")]
        self.has_labels = split != "test"
        first = self.root / "JPEGImages" / f"{self.items[0][0]}.jpg"
        require_file(first, f"image of the first id of {self.split_file.name}")

    def __len__(self) -> int:
        return len(self.items)

    def label_path(self, index: int) -> Path:
        image_id, label = self.items[index]
        return self.root / label if label is not None else self.root / self.label_dir / f"{image_id}.png"

    def load(self, index: int) -> dict[str, Any]:
        image_id, _ = self.items[index]
        image_path = self.root / "JPEGImages" / f"{image_id}.jpg"
        image = read_rgb(image_path)
        hw = image.shape[:2]
        sample: dict[str, Any] = {"image": image, "meta": {"name": image_id, "path": str(image_path)}}
        if "semseg" in self.tasks and self.has_labels:
            path = self.label_path(index)
            labels = read_label_png(path)
            if labels.shape != hw:
                raise DataError(f"label image has size {labels.shape}, expected the image size {hw}", path)
            sample["semseg"] = labels
        object_path = self.root / "SegmentationObject" / f"{image_id}.png"
        if object_path.is_file():
            objects = read_label_png(object_path)
            if objects.shape != hw:
                raise DataError(f"object image has size {objects.shape}, expected the image size {hw}", object_path)
            sample["instances"] = np.where(objects == IGNORE_INDEX, 0, objects)
        return sample
