"""NYU Depth V2 (Silberman et al., ECCV 2012) in the on-disk releases that papers train and evaluate on.

==========================  ================================================  ===========================
loader                      release                                           tasks
==========================  ================================================  ===========================
:class:`NYUv2Labeled`       the official ``nyu_depth_v2_labeled.mat`` (v7.3)  depth, semseg (+normals)
:class:`NYUv2MultiTask`     the extracted multi-task layout ``NYUD_MT``       depth, normals, semseg
:class:`NYUv2Preprocessed`  the 288x384 ``.npy`` release of MTAN (Liu et al)  depth, normals, semseg (13)
:class:`NYUv2Raw`           the raw "sync" frames with a BTS-style file list  depth (+normals)
:class:`NYUv2Folder`        a plain folder of PNGs (``nyu-mini``)             depth, semseg (+normals)
==========================  ================================================  ===========================

Conventions shared by every loader (see :mod:`tridense.data.sample`): labels 0 = unlabeled become 255
(ignore) and classes 1..C become 0..C-1; depth is metres with 0 = invalid; normals are unit vectors in the
OpenCV camera frame (x right, y down, z forward; a surface facing the camera has n_z < 0), (0, 0, 0) =
invalid. Releases that store normals in another frame are converted by a fixed signed permutation, chosen
with the ``normals_frame`` argument (:data:`NORMAL_FRAMES`). ``K`` is the NYU colour camera
(:data:`NYU_INTRINSICS`, 640x480) carried through each release's crop and resize.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import h5py
import numpy as np
import scipy.io

from tridense.data.base import DenseDataset, Transform, check_root
from tridense.data.io import (
    PathLike,
    check_depth,
    png_to_normals,
    read_depth_png,
    read_label_png,
    read_lines,
    read_npy,
    read_rgb,
    require_dir,
    require_file,
)
from tridense.data.sample import IGNORE_INDEX
from tridense.errors import ConfigError, DataError

# --------------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------------
#: Size (H, W) of every NYU Depth V2 frame.
NYU_SIZE: tuple[int, int] = (480, 640)
#: Colour camera intrinsics of the NYU toolbox, in pixels, for the 640x480 frame.
NYU_INTRINSICS: dict[str, float] = {"fx": 518.8579, "fy": 519.4696, "cx": 325.5824, "cy": 253.7362}
#: Number of images of the labeled set (``nyu_depth_v2_labeled.mat``).
NUM_LABELED = 1449
#: Number of raw object classes of the labeled set (ids 1..894; 0 = unlabeled).
NUM_RAW_CLASSES = 894

#: The 40 classes of Gupta et al. (CVPR 2013), in the order of ids 1..40 (official spelling kept).
NYU40_CLASSES: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
    "picture", "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror",
    "floor mat", "clothes", "ceiling", "books", "refridgerator", "television", "paper", "towel",
    "shower curtain", "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp",
    "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)  # fmt: skip
#: The 13 classes of Couprie et al. (``class13Mapping.mat``), in the order of ids 1..13.
NYU13_CLASSES: tuple[str, ...] = (
    "bed", "books", "ceiling", "chair", "floor", "furniture", "objects", "picture", "sofa", "table", "tv",
    "wall", "window",
)  # fmt: skip
CLASS_NAMES: dict[int, tuple[str, ...]] = {40: NYU40_CLASSES, 13: NYU13_CLASSES}

#: The "standard crop" of Gupta et al.'s toolbox (top, left, height, width): 425x560 images, as in NYUD_MT.
NYU_STANDARD_CROP: tuple[int, int, int, int] = (44, 40, 425, 560)
#: The crop of the MTAN release (top, left, height, width): rows 53:467, cols 44:596, then resized.
MTAN_CROP: tuple[int, int, int, int] = (53, 44, 414, 552)
#: Size (H, W) of the MTAN release.
MTAN_SIZE: tuple[int, int] = (288, 384)

#: Frames in which releases store normals, as the matrix M with n_camera = M @ n_stored.
NORMAL_FRAMES: dict[str, np.ndarray] = {
    # x right, y down, z forward (OpenCV): nothing to do.
    "camera": np.eye(3, dtype=np.float32),
    # x right, y down, z towards the viewer (NYU toolbox colouring: red right, green down, blue to camera).
    "toward": np.diag([1.0, 1.0, -1.0]).astype(np.float32),
    # x right, y up, z towards the viewer (OpenGL).
    "opengl": np.diag([1.0, -1.0, -1.0]).astype(np.float32),
    # MTAN: x right, y away from the camera, z up (relative to the camera, not gravity): n_cam = (x, -z, y).
    "mtan": np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=np.float32),
}


# --------------------------------------------------------------------------------------------------
# Intrinsics
# --------------------------------------------------------------------------------------------------
def _nyu_K_full() -> np.ndarray:
    p = NYU_INTRINSICS
    return np.array([[p["fx"], 0.0, p["cx"]], [0.0, p["fy"], p["cy"]], [0.0, 0.0, 1.0]], dtype=np.float64)


def crop_resize_K(K: np.ndarray, crop: tuple[int, int, int, int], size: tuple[int, int]) -> np.ndarray:
    """Intrinsics after cropping ``crop`` = (top, left, height, width) and resizing it to ``size`` (H, W).

    Pixel centres sit at integer coordinates, as in :mod:`tridense.data.transforms`: a resize by s maps
    u to (u + 0.5) s - 0.5.
    """
    top, left, height, width = crop
    sy, sx = size[0] / height, size[1] / width
    out = np.array(K, dtype=np.float64)
    out[0, 2] = (out[0, 2] - left + 0.5) * sx - 0.5
    out[1, 2] = (out[1, 2] - top + 0.5) * sy - 0.5
    out[0, 0] *= sx
    out[1, 1] *= sy
    return out.astype(np.float32)


def nyu_K(size: tuple[int, int] = NYU_SIZE) -> np.ndarray:
    """NYU colour intrinsics (float32 3x3) for an image of ``size`` (H, W).

    480x640 is the original frame, 425x560 the standard crop of :data:`NYU_STANDARD_CROP`; any other size
    is taken to be the full frame resized.
    """
    h, w = int(size[0]), int(size[1])
    crop = NYU_STANDARD_CROP if (h, w) == NYU_STANDARD_CROP[2:] else (0, 0, *NYU_SIZE)
    return crop_resize_K(_nyu_K_full(), crop, (h, w))


def mtan_K(size: tuple[int, int] = MTAN_SIZE) -> np.ndarray:
    """Intrinsics of the MTAN release: NYU K cropped to rows 53:467, cols 44:596, resized to ``size``.

    For 288x384: fx 360.945, fy 361.370, cx 195.731, cy 139.490.
    """
    return crop_resize_K(_nyu_K_full(), MTAN_CROP, size)


# --------------------------------------------------------------------------------------------------
# Shared helpers: arguments, labels, normals, MATLAB files
# --------------------------------------------------------------------------------------------------
def _check_choice(what: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ConfigError(f"{what} must be one of {list(choices)}, got {value!r}")


def _check_hw(array: np.ndarray, hw: tuple[int, ...], path: PathLike, what: str) -> None:
    if tuple(array.shape[:2]) != tuple(hw):
        raise DataError(f"{what} has size {tuple(array.shape[:2])}, expected the image size {tuple(hw)}", path)


def shift_labels(labels: np.ndarray, num_classes: int, path: PathLike | None) -> np.ndarray:
    """Map NYU label ids to the contract: 0 (unlabeled) -> 255, 1..C -> 0..C-1, as int64.

    Raises DataError naming ``path`` if a value lies outside 0..C.
    """
    labels = np.asarray(labels).astype(np.int64)
    bad = (labels < 0) | (labels > num_classes)
    if bad.any():
        values = np.unique(labels[bad])[:8].tolist()
        raise DataError(f"labels {values} outside 0..{num_classes} (0 = unlabeled, 1..{num_classes} classes)", path)
    return np.where(labels == 0, IGNORE_INDEX, labels - 1)


def _frame_matrix(frame: str | np.ndarray) -> np.ndarray:
    if isinstance(frame, str):
        _check_choice("normals_frame", frame, list(NORMAL_FRAMES))
        return NORMAL_FRAMES[frame]
    matrix = np.asarray(frame, dtype=np.float32)
    if matrix.shape != (3, 3) or not np.allclose(matrix @ matrix.T, np.eye(3), atol=1e-5):
        raise ConfigError(f"normals_frame must be a name in {list(NORMAL_FRAMES)} or a 3x3 rotation, got {frame!r}")
    return matrix


def to_camera_frame(normals: np.ndarray, frame: str | np.ndarray) -> np.ndarray:
    """Express (H, W, 3) normals stored in ``frame`` (a name of :data:`NORMAL_FRAMES` or a matrix M with
    n_cam = M n) in the camera frame. Zero vectors stay zero."""
    matrix = _frame_matrix(frame)
    return (np.asarray(normals, dtype=np.float32) @ matrix.T).astype(np.float32)  # (H, W, 3)


def decode_normals(
    vectors: np.ndarray, path: PathLike, *, min_norm: float = 0.5, max_norm: float = float("inf")
) -> np.ndarray:
    """Unit-normalise (H, W, 3) float normals; a norm outside [min_norm, max_norm] makes a vector (0, 0, 0).

    Raises DataError naming ``path`` for a wrong shape or NaN/inf values.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 3 or vectors.shape[2] != 3:
        raise DataError(f"normals must have shape (H, W, 3), got {vectors.shape}", path)
    if not np.isfinite(vectors).all():
        raise DataError("normals have NaN/inf values; expected unit vectors or (0, 0, 0) = invalid", path)
    norm = np.linalg.norm(vectors, axis=2, keepdims=True)  # (H, W, 1)
    valid = (norm >= min_norm) & (norm <= max_norm)
    return np.where(valid, vectors / np.maximum(norm, 1e-6), 0.0).astype(np.float32)


def read_normals_npy(path: PathLike) -> np.ndarray:
    """Read float normals (H, W, 3) with components in [-1, 1]; zero (or very short) vectors are invalid."""
    vectors = read_npy(path, shape_ndim=3, what="normals")
    if not np.issubdtype(vectors.dtype, np.floating):
        raise DataError(f"normals .npy must be float with components in [-1, 1], got {vectors.dtype}", path)
    if vectors.size and np.nanmax(np.abs(vectors)) > 1.0 + 1e-3:
        raise DataError(
            f"normals .npy must hold components in [-1, 1], got max |n_i| = {np.nanmax(np.abs(vectors)):.3g}",
            path,
        )
    return decode_normals(vectors, path)


def read_normals_png_signed(path: PathLike) -> np.ndarray:
    """Read normals stored as 8-bit RGB with n = 2 v / 255 - 1 (the NYUD_MT/ASTMT encoding).

    The encoding has no invalid value of its own: pixels whose decoded vector is not unit length within 25%
    (black (0, 0, 0) or grey (128, 128, 128) borders) are marked invalid.
    """
    encoded = read_rgb(path)
    return decode_normals(2.0 * encoded.astype(np.float32) / 255.0 - 1.0, path, min_norm=0.75, max_norm=1.25)


def read_normals_tridense(path: PathLike) -> np.ndarray:
    """Read a normal PNG in tridense's encoding (:func:`tridense.data.io.normals_to_png`)."""
    return png_to_normals(read_rgb(path), path)


def _loadmat(path: PathLike, what: str, keys: Sequence[str]) -> dict[str, Any]:
    """Load a MATLAB (v5) file with scipy and check it has ``keys``."""
    path = require_file(path, what)
    try:
        data = scipy.io.loadmat(path)
    except NotImplementedError as err:  # v7.3 files are HDF5
        raise DataError(f"{what} is a MATLAB v7.3 (HDF5) file; expected a v5 .mat ({err})", path) from err
    except (ValueError, OSError, TypeError) as err:
        raise DataError(f"unreadable MATLAB {what} ({err})", path) from err
    missing = [k for k in keys if k not in data]
    if missing:
        present = [k for k in data if not k.startswith("__")]
        raise DataError(f"{what} has no variable(s) {missing}; found {present}", path)
    return data


def read_nyu_splits(path: PathLike) -> dict[str, np.ndarray]:
    """Read the official ``splits.mat``: {"train": trainNdxs, "test": testNdxs} as 1-based int64 indices."""
    data = _loadmat(path, "NYU splits file", ("trainNdxs", "testNdxs"))
    splits = {
        "train": np.asarray(data["trainNdxs"]).ravel().astype(np.int64),
        "test": np.asarray(data["testNdxs"]).ravel().astype(np.int64),
    }
    for split, indices in splits.items():
        bad = (indices < 1) | (indices > NUM_LABELED)
        if bad.any():
            raise DataError(f"{split} indices {indices[bad][:5].tolist()} outside 1..{NUM_LABELED} (1-based)", path)
    return splits


def read_class_mapping(label_set: int, mapping40_path: PathLike, mapping13_path: PathLike | None = None) -> np.ndarray:
    """Look-up table raw id (0..894) -> class id of ``label_set`` (0 = unlabeled, 1..label_set), uint8 (895,).

    Uses ``classMapping40.mat`` (``mapClass``, raw -> 1..40) and, for 13 classes, ``class13Mapping.mat``
    (``classMapping13.labels13``, 40 classes -> 1..13).
    """
    _check_choice("label_set", label_set, (40, 13))
    map40 = np.asarray(_loadmat(mapping40_path, "40-class mapping", ("mapClass",))["mapClass"]).ravel()
    if map40.size != NUM_RAW_CLASSES or map40.min() < 1 or map40.max() > 40:
        raise DataError(
            f"mapClass must hold {NUM_RAW_CLASSES} values in 1..40, got {map40.size} values "
            f"in {map40.min()}..{map40.max()}",
            mapping40_path,
        )
    lut = np.concatenate([[0], map40]).astype(np.uint8)  # raw 0 = unlabeled
    if label_set == 40:
        return lut
    if mapping13_path is None:
        raise ConfigError("label_set=13 needs the class13Mapping.mat file (mapping13_path)")
    struct = _loadmat(mapping13_path, "13-class mapping", ("classMapping13",))["classMapping13"]
    try:
        map13 = np.asarray(struct["labels13"][0, 0]).ravel()
    except (ValueError, IndexError, KeyError) as err:
        raise DataError("classMapping13 has no field 'labels13'", mapping13_path) from err
    if map13.size != 40 or map13.min() < 1 or map13.max() > 13:
        raise DataError(f"labels13 must hold 40 values in 1..13, got {map13.size} values", mapping13_path)
    return np.concatenate([[0], map13]).astype(np.uint8)[lut]


def _split_selection(split: str, splits_path: PathLike, available: Sequence[int] | None = None) -> np.ndarray:
    """1-based labeled-set indices of ``split`` ("train", "test" or "all")."""
    _check_choice("split", split, ("train", "test", "all"))
    if split == "all":
        return np.arange(1, NUM_LABELED + 1) if available is None else np.asarray(sorted(available))
    return read_nyu_splits(splits_path)[split]


def _empty_split(cls: type[DenseDataset], split: str, where: PathLike) -> DataError:
    return DataError(f"{cls.name}: split {split!r} has no samples; check the split name and the list", where)


def _labeled_name(index: int) -> str:
    return f"{index:04d}"


# --------------------------------------------------------------------------------------------------
# 1. The official labeled set
# --------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------
# 2. The extracted multi-task layout (NYUD_MT)
# --------------------------------------------------------------------------------------------------
def _find_with_suffix(stem: Path, suffixes: Sequence[str], what: str) -> Path:
    for suffix in suffixes:
        path = stem.with_name(stem.name + suffix)
        if path.is_file():
            return path
    raise DataError(f"missing {what} (looked for {' or '.join(suffixes)})", stem.with_name(stem.name + suffixes[0]))


class NYUv2MultiTask(DenseDataset):
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
    available_tasks: ClassVar[tuple[str, ...]] = ("depth", "normals", "semseg")
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
        super().__init__(tasks=tasks, transform=transform)
        _check_choice("split", split, ("train", "val"))
        self.root = check_root(root, type(self))
        self.split = split
        self.normals_matrix = _frame_matrix(normals_frame)
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


# --------------------------------------------------------------------------------------------------
# 3. The MTAN 288x384 .npy release
# --------------------------------------------------------------------------------------------------
class NYUv2Preprocessed(DenseDataset):
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
    available_tasks: ClassVar[tuple[str, ...]] = ("depth", "normals", "semseg")
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
        super().__init__(tasks=tasks, transform=transform)
        _check_choice("split", split, ("train", "val"))
        self.root = check_root(root, type(self))
        self.split = split
        self.normals_matrix = _frame_matrix(normals_frame)
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


# --------------------------------------------------------------------------------------------------
# 4. Raw "sync" frames with a file list
# --------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------
# 5. A plain folder of PNGs (nyu-mini)
# --------------------------------------------------------------------------------------------------
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
