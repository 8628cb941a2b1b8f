"""Weizmann horse (Borenstein and Ullman, ECCV 2002): side-view horse images with figure-ground masks.

Two release layouts are common and both are read:

- the original ``weizmann_horse_db`` release: ``horse/rgb/horseNNN.jpg`` (colour) and
  ``horse/figure_ground/horseNNN.jpg``, masks stored as **JPEG** grey images (white = horse). JPEG is
  lossy, so a mask pixel is foreground when its value is >= 128;
- the re-packaged release (e.g. on Kaggle): ``weizmann_horse_db/horse/horseNNN.png`` and
  ``weizmann_horse_db/mask/horseNNN.png``, masks stored as **PNG** with values {0, 1} or {0, 255}
  (anything else is an error: a PNG mask is lossless, other values mean a wrong file).

Images and masks are paired by file stem. The dataset has 328 images; the ASM paper (after Ke et al.'s
adaptive affinity fields) trains on 200 and validates on 128. Without a split file the first
``num_train`` stems in natural order (``horse2`` before ``horse10``) are ``train`` and the rest ``val``;
``all`` is every image.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tridense.data.base import DenseDataset, Transform, check_root
from tridense.data.io import read_label_png, read_lines, read_rgb
from tridense.errors import DataError

CLASSES: tuple[str, ...] = ("background", "horse")
#: Images of the training split in the literature's 200 / 128 split.
NUM_TRAIN = 200
SPLITS: tuple[str, ...] = ("train", "val", "all")
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp")

#: (image folder, mask folder) relative to the root, tried in this order.
LAYOUTS: tuple[tuple[str, str], ...] = (
    ("rgb", "figure_ground"),
    ("horse/rgb", "horse/figure_ground"),
    ("horse", "mask"),
    ("weizmann_horse_db/horse", "weizmann_horse_db/mask"),
)

LAYOUT = """\
ROOT/                                   either the original release
  rgb/horseNNN.jpg                      colour images
  figure_ground/horseNNN.jpg            JPEG grey masks, horse where value >= 128
                                        (ROOT may also be the folder above: ROOT/horse/rgb, ...)
ROOT/                                   or the re-packaged release
  horse/horseNNN.png                    colour images
  mask/horseNNN.png                     PNG masks, values {0, 1} or {0, 255}
                                        (ROOT may also be the folder above: ROOT/weizmann_horse_db/...)
  <split>.txt                           optional: image stems of a split, one per line"""


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key that orders embedded numbers by value: ``horse2`` < ``horse10``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def decode_mask(mask: np.ndarray, lossy: bool, path: str | Path | None = None) -> np.ndarray:
    """A figure-ground mask image (H, W) -> class ids int64 (0 background, 1 horse).

    Args:
        mask: grey values as read from the file.
        lossy: the file is a JPEG: foreground where value >= 128.
        path: the file, for error messages.
    """
    if lossy:
        return (mask >= 128).astype(np.int64)
    values = np.unique(mask)
    if not (set(values.tolist()) <= {0, 1} or set(values.tolist()) <= {0, 255}):
        raise DataError(f"a PNG figure-ground mask must hold {{0, 1}} or {{0, 255}}, found {values[:8].tolist()}", path)
    return (mask > 0).astype(np.int64)


def _images_by_stem(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")}


class WeizmannHorse(DenseDataset):
    """Weizmann horse figure-ground segmentation: RGB image and a 2-class mask (background, horse).

    Layout (either release, see the module docstring)::

        ROOT/rgb/horseNNN.jpg + ROOT/figure_ground/horseNNN.jpg     JPEG masks, horse where >= 128
        ROOT/horse/horseNNN.png + ROOT/mask/horseNNN.png            PNG masks, {0, 1} or {0, 255}

    Samples have no ``K`` (the images come from the web) and no depth or normals.

    Args:
        root: the release folder (or the folder above it).
        split: ``train`` (the first ``num_train`` in natural order), ``val`` (the rest), ``all``, or any
            name with a ``ROOT/<split>.txt`` list of stems.
        split_file: an explicit list of image stems (overrides ``split``).
        num_train: size of ``train`` when no list is given (200 in the literature).
        tasks, transform: see :class:`~tridense.data.base.DenseDataset`.
    """

    name = "weizmann_horse"
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
        num_train: int = NUM_TRAIN,
        tasks: Sequence[str] | None = None,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(tasks=tasks, transform=transform)
        self.root = check_root(root, type(self))
        self.image_dir, self.mask_dir = self._find_layout()
        images, masks = _images_by_stem(self.image_dir), _images_by_stem(self.mask_dir)
        unpaired = sorted(set(images) - set(masks), key=natural_key)
        if unpaired:
            raise DataError(f"{len(unpaired)} images have no mask in {self.mask_dir}, e.g. {unpaired[0]!r}", self.root)
        stems = sorted(images, key=natural_key)
        if not stems:
            raise DataError(f"no images in {self.image_dir}\nexpected layout:\n{self.layout}")
        if split_file is None and (self.root / f"{split}.txt").is_file():
            split_file = self.root / f"{split}.txt"
        if split_file is not None:
            listed = [Path(line).stem for line in read_lines(split_file, "split file")]
            missing = [s for s in listed if s not in images]
            if missing:
                message = f"{len(missing)} listed images are not in {self.image_dir}, e.g. {missing[0]!r}"
                raise DataError(message, split_file)
            stems = listed
        elif split == "train":
            stems = stems[:num_train]
        elif split == "val":
            stems = stems[num_train:]
        elif split != "all":
            raise DataError(f"unknown split {split!r}; valid: {list(SPLITS)} or a ROOT/<split>.txt list", self.root)
        if not stems:
            raise DataError(f"split {split!r} is empty ({len(images)} images, num_train={num_train})", self.root)
        self.split = split
        self.items = [(images[s], masks[s]) for s in stems]

    def _find_layout(self) -> tuple[Path, Path]:
        for image_dir, mask_dir in LAYOUTS:
            if (self.root / image_dir).is_dir() and (self.root / mask_dir).is_dir():
                return self.root / image_dir, self.root / mask_dir
        raise DataError(f"no image/mask folder pair found\nexpected layout:\n{self.layout}", self.root)

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int) -> dict[str, Any]:
        image_path, mask_path = self.items[index]
        image = read_rgb(image_path)
        sample: dict[str, Any] = {"image": image, "meta": {"name": image_path.stem, "path": str(image_path)}}
        if "semseg" in self.tasks:
            lossy = mask_path.suffix.lower() in (".jpg", ".jpeg")
            grey = np.asarray(read_rgb(mask_path)).max(axis=-1) if lossy else read_label_png(mask_path)
            labels = decode_mask(grey, lossy, mask_path)
            if labels.shape != image.shape[:2]:
                raise DataError(f"mask has size {labels.shape}, expected the image size {image.shape[:2]}", mask_path)
            sample["semseg"] = labels
        return sample
