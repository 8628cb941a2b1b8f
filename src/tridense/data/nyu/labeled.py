"""The official labeled set ``nyu_depth_v2_labeled.mat`` (Silberman et al.)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import h5py
import numpy as np

from tridense.data.base import DenseDataset, Transform, check_root
from tridense.data.io import (
    PathLike,
    check_depth,
    require_dir,
    require_file,
)
from tridense.data.nyu.common import (
    CLASS_NAMES,
    NUM_RAW_CLASSES,
    _check_choice,
    _check_hw,
    _empty_split,
    _labeled_name,
    _split_selection,
    nyu_K,
    read_class_mapping,
    read_normals_tridense,
    shift_labels,
)
from tridense.errors import ConfigError, DataError


class NYUv2Labeled(DenseDataset):
    """The official labeled set ``nyu_depth_v2_labeled.mat`` (1449 images, 640x480), read with h5py.

    The file is MATLAB v7.3, i.e. HDF5 behind a 512-byte MATLAB header, with MATLAB's column-major axes
    reversed: ``images`` (1449, 3, 640, 480) uint8, ``depths`` / ``rawDepths`` (1449, 640, 480) float32
    metres, ``labels`` (1449, 640, 480) uint16 raw ids 0..894. Labels are mapped to 40 (or 13) classes with
    the official mapping files, then to the contract (unlabeled -> 255, k -> k-1). The HDF5 file is opened
    lazily, once per process, so the dataset pickles into DataLoader workers.

    Layout::

        ROOT/
          nyu_depth_v2_labeled.mat
          splits.mat            trainNdxs (795), testNdxs (654), 1-based
          classMapping40.mat    mapClass (1, 894): raw id -> 1..40
          class13Mapping.mat    classMapping13.labels13 (1, 40): 40 classes -> 1..13 (label_set=13)
        NORMALS_DIR/NNNN.png    optional normals (tridense encoding), NNNN = 1-based index

    Args:
        root: folder with the four files; each can instead be given by its own path argument.
        mat_path: the labeled ``.mat`` file (default ``ROOT/nyu_depth_v2_labeled.mat``).
        split: "train" (795), "test" (654) or "all" (1449).
        label_set: 40 or 13 classes.
        splits_path, mapping40_path, mapping13_path: the official split and mapping files.
        normals_dir: folder of normals written by ``tridense prepare normals``; normals become a task.
        depth_key: "depths" (hole-filled) or "rawDepths" (projected sensor depth, 0 = missing).
        tasks, transform: see :class:`~tridense.data.base.DenseDataset`.
    """

    name: ClassVar[str] = "nyuv2_labeled"
    available_tasks: ClassVar[tuple[str, ...]] = ("depth", "semseg")
    layout: ClassVar[str] = (
        "ROOT/\n"
        "  nyu_depth_v2_labeled.mat   MATLAB v7.3 (HDF5): images (1449, 3, 640, 480) uint8,\n"
        "                             depths (1449, 640, 480) float32 metres,\n"
        "                             labels (1449, 640, 480) uint16 raw ids 0..894\n"
        "  splits.mat                 trainNdxs (795), testNdxs (654): 1-based indices\n"
        "  classMapping40.mat         mapClass (1, 894): raw id -> 1..40\n"
        "  class13Mapping.mat         classMapping13.labels13 (1, 40): 40 -> 1..13 (label_set=13 only)\n"
        "NORMALS_DIR/NNNN.png         optional normals in tridense's PNG encoding, NNNN = 1-based index"
    )

    def __init__(
        self,
        root: PathLike | None = None,
        *,
        mat_path: PathLike | None = None,
        split: str = "train",
        label_set: int = 40,
        splits_path: PathLike | None = None,
        mapping40_path: PathLike | None = None,
        mapping13_path: PathLike | None = None,
        normals_dir: PathLike | None = None,
        depth_key: str = "depths",
        tasks: Sequence[str] | None = None,
        transform: Transform | None = None,
    ) -> None:
        _check_choice("label_set", label_set, (40, 13))
        _check_choice("depth_key", depth_key, ("depths", "rawDepths"))
        if root is None and mat_path is None:
            raise ConfigError(f"{self.name}: give root (a folder) or mat_path\nexpected layout:\n{self.layout}")
        base = check_root(root, type(self)) if root is not None else Path(mat_path).parent  # type: ignore[arg-type]
        self.mat_path = require_file(mat_path or base / "nyu_depth_v2_labeled.mat", "NYU labeled .mat file")
        self.normals_dir = require_dir(normals_dir, "normals folder", self.layout) if normals_dir else None
        self.available_tasks = (*type(self).available_tasks, *(("normals",) if self.normals_dir else ()))
        super().__init__(tasks=tasks, transform=transform)
        self.split, self.label_set, self.depth_key = split, label_set, depth_key
        self.num_classes, self.class_names = label_set, CLASS_NAMES[label_set]

        self._num_images = self._check_file()
        self.indices = _split_selection(split, splits_path or base / "splits.mat")
        if len(self.indices) == 0:
            raise _empty_split(type(self), split, splits_path or base / "splits.mat")
        if self.indices.max() > self._num_images:
            raise DataError(
                f"split {split!r} refers to image {int(self.indices.max())} but the file holds {self._num_images}",
                self.mat_path,
            )
        self._lut = None
        if "semseg" in self.tasks:
            self._lut = read_class_mapping(
                label_set,
                mapping40_path or base / "classMapping40.mat",
                mapping13_path or base / "class13Mapping.mat",
            )
        self._h5: h5py.File | None = None
        self._h5_pid: int | None = None

    def _check_file(self) -> int:
        """Check the datasets and their shapes; return the number of images. Leaves the file closed."""
        if not h5py.is_hdf5(self.mat_path):
            raise DataError(
                "not a MATLAB v7.3 (HDF5) file; the official nyu_depth_v2_labeled.mat is v7.3, "
                "re-save a v5 export with save(..., '-v7.3')",
                self.mat_path,
            )
        keys = ["images", self.depth_key, *(["labels"] if "semseg" in self.tasks else [])]
        with h5py.File(self.mat_path, "r") as f:
            missing = [k for k in keys if k not in f]
            if missing:
                raise DataError(f"no dataset(s) {missing} in the labeled file; found {sorted(f.keys())}", self.mat_path)
            images = f["images"]
            if images.ndim != 4 or images.shape[1] != 3 or images.dtype != np.uint8:
                raise DataError(
                    f"'images' must be uint8 (N, 3, W, H) as h5py shows MATLAB's (H, W, 3, N), got "
                    f"{images.dtype} {images.shape}",
                    self.mat_path,
                )
            expected = (images.shape[0], images.shape[2], images.shape[3])
            for key in keys[1:]:
                if f[key].shape != expected:
                    raise DataError(
                        f"'{key}' has shape {f[key].shape}, expected {expected} to match 'images'",
                        self.mat_path,
                    )
            return int(images.shape[0])

    def _file(self) -> h5py.File:
        """The HDF5 file, opened once per process (a forked DataLoader worker opens its own handle)."""
        if self._h5 is None or self._h5_pid != os.getpid():
            self._h5 = h5py.File(self.mat_path, "r")
            self._h5_pid = os.getpid()
        return self._h5

    def close(self) -> None:
        """Close the HDF5 file of this process (it is reopened on the next read)."""
        if self._h5 is not None and self._h5_pid == os.getpid():
            self._h5.close()
        self._h5, self._h5_pid = None, None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_h5"], state["_h5_pid"] = None, None  # h5py handles do not pickle; each process opens its own
        return state

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, index: int) -> dict[str, Any]:
        number = int(self.indices[index])  # 1-based, as in splits.mat
        f, i = self._file(), number - 1
        image = np.ascontiguousarray(f["images"][i].transpose(2, 1, 0))  # (3, W, H) -> (H, W, 3)
        hw = image.shape[:2]
        sample: dict[str, Any] = {"image": image, "K": nyu_K(hw)}
        where = f"{self.mat_path}:{{}}[{i}]"
        if "depth" in self.tasks:
            sample["depth"] = check_depth(f[self.depth_key][i].T, where.format(self.depth_key), hw)  # (H, W)
        if "semseg" in self.tasks:
            raw = f["labels"][i].T  # (W, H) -> (H, W)
            if raw.max() > NUM_RAW_CLASSES:
                raise DataError(
                    f"raw labels up to {int(raw.max())}, expected 0..{NUM_RAW_CLASSES}",
                    where.format("labels"),
                )
            sample["semseg"] = shift_labels(self._lut[raw], self.label_set, where.format("labels"))
        if "normals" in self.tasks:
            path = self.normals_dir / f"{_labeled_name(number)}.png"
            sample["normals"] = read_normals_tridense(path)
            _check_hw(sample["normals"], hw, path, "normals")
        sample["meta"] = {
            "name": _labeled_name(number),
            "dataset": self.name,
            "path": str(self.mat_path),
            "index": number,
        }
        return sample
