"""NYU Depth V2: constants, intrinsics and the helpers every loader shares (labels, normals, MATLAB files)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.io

from tridense.data.base import DenseDataset, Transform, check_root
from tridense.data.intrinsics import NYU_INTRINSICS, NYU_SIZE
from tridense.data.io import (
    PathLike,
    png_to_normals,
    read_npy,
    read_rgb,
    require_file,
)
from tridense.data.sample import IGNORE_INDEX
from tridense.errors import ConfigError, DataError

# --------------------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------------------
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


class NYUSplitRelease(DenseDataset):
    """Base of the releases with a train / val split and normals stored in a named frame.

    Args:
        root: the release folder.
        split: "train" or "val".
        normals_frame: a name of :data:`NORMAL_FRAMES` or a 3x3 matrix (n_camera = M @ n_stored).
        tasks, transform: see :class:`~tridense.data.base.DenseDataset`.
    """

    def __init__(
        self,
        root: PathLike,
        *,
        split: str,
        normals_frame: str | np.ndarray,
        tasks: Sequence[str] | None = None,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(tasks=tasks, transform=transform)
        _check_choice("split", split, ("train", "val"))
        self.root = check_root(root, type(self))
        self.split = split
        self.normals_matrix = _frame_matrix(normals_frame)
