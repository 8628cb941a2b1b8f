"""Readers and writers for the on-disk encodings the datasets use, with errors that name the file.

Every reader returns NumPy arrays in the units of the sample contract (metres, unit normals, class ids)
or raises :class:`~tridense.errors.DataError` with the path and what was expected. Writers never replace
an existing file unless asked to (``overwrite=True``) and write through a temporary file, so an
interrupted write never leaves a truncated output behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from tridense.errors import DataError

PathLike = str | os.PathLike


def require_file(path: PathLike, what: str = "file") -> Path:
    """Return ``path`` as a Path if it is an existing file, else raise DataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing {what}", path)
    return path


def require_dir(path: PathLike, what: str = "folder", layout: str | None = None) -> Path:
    """Return ``path`` if it is a folder; else raise DataError, quoting the expected ``layout`` if given."""
    path = Path(path)
    if not path.is_dir():
        hint = f"\nexpected layout:\n{layout}" if layout else ""
        raise DataError(f"missing {what}{hint}", path)
    return path


def _open_image(path: PathLike) -> Image.Image:
    path = require_file(path, "image")
    try:
        image = Image.open(path)
        image.load()  # decode now: a truncated file fails here, not later in a worker
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"unreadable or truncated image ({err})", path) from err
    return image


def read_rgb(path: PathLike) -> np.ndarray:
    """Read an 8-bit image as uint8 (H, W, 3) RGB (grey and RGBA are converted)."""
    image = _open_image(path)
    if image.mode not in ("RGB", "L", "RGBA", "P", "CMYK", "YCbCr", "LA"):
        raise DataError(f"expected an 8-bit colour image, got PIL mode {image.mode!r}", path)
    return np.array(image.convert("RGB"))


def read_png_uint16(path: PathLike) -> np.ndarray:
    """Read a single-channel 16-bit PNG as uint16 (H, W)."""
    image = _open_image(path)
    array = np.asarray(image)
    if array.ndim != 2 or array.dtype not in (np.uint16, np.int32, np.uint8):
        raise DataError(f"expected a single-channel 16-bit image, got mode {image.mode!r} shape {array.shape}", path)
    if array.dtype == np.int32:  # PIL opens some 16-bit PNGs as mode "I"
        if array.min() < 0 or array.max() > 65535:
            raise DataError("16-bit PNG holds values outside 0..65535", path)
        array = array.astype(np.uint16)
    return array.astype(np.uint16, copy=False)


def read_label_png(path: PathLike) -> np.ndarray:
    """Read a label PNG (8- or 16-bit, one channel or palette indices) as int64 (H, W)."""
    image = _open_image(path)
    if image.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
        raise DataError(f"expected a single-channel label image, got PIL mode {image.mode!r}", path)
    return np.asarray(image).astype(np.int64)


def read_depth_png(path: PathLike, scale: float, invalid: int | None = 0) -> np.ndarray:
    """Read a 16-bit depth PNG and divide by ``scale`` (1000 for mm, 256 for KITTI, 512 for 2D-3D-S).

    Pixels equal to ``invalid`` become 0 (invalid).
    """
    raw = read_png_uint16(path)
    depth = raw.astype(np.float32) / float(scale)
    if invalid is not None and invalid != 0:
        depth[raw == invalid] = 0.0
    return depth


def read_npy(path: PathLike, *, shape_ndim: int | None = None, what: str = "array") -> np.ndarray:
    """Load a ``.npy`` file without pickles; check its number of dimensions."""
    path = require_file(path, what)
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"unreadable .npy {what} ({err})", path) from err
    if shape_ndim is not None and array.ndim != shape_ndim:
        raise DataError(f"{what} must have {shape_ndim} dimensions, got shape {array.shape}", path)
    return array


def check_depth(depth: np.ndarray, path: PathLike | None, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Check metric depth: finite, non-negative, of the expected size; return it as float32."""
    depth = np.asarray(depth, dtype=np.float32)
    if expected_hw is not None and depth.shape[:2] != tuple(expected_hw):
        raise DataError(f"depth has size {depth.shape[:2]}, expected {tuple(expected_hw)} (the image size)", path)
    if not np.isfinite(depth).all():
        raise DataError(f"depth has {int((~np.isfinite(depth)).sum())} NaN/inf values", path)
    if (depth < 0).any():
        raise DataError(f"depth has negative values (min {float(depth.min()):.4g}); expected metres >= 0", path)
    return depth


def read_lines(path: PathLike, what: str = "list file") -> list[str]:
    """Read the non-empty, non-comment lines of a text file; raise if there are none."""
    path = require_file(path, what)
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        raise DataError(f"{what} is empty", path)
    return lines


def read_json(path: PathLike, what: str = "JSON file") -> Any:
    path = require_file(path, what)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"invalid JSON in {what} ({err})", path) from err


@contextmanager
def atomic_write(path: PathLike, *, overwrite: bool = False, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside ``path`` and move it over ``path`` only when the block succeeds.

    Raises FileExistsError if ``path`` exists and ``overwrite`` is False, so nothing the user already had
    is lost. The file gets the usual mode under the user's umask (0644 under umask 022), not the
    temporary file's 0600.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the mode a plain open() would
        with os.fdopen(fd, mode) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it
    os.umask(mask)
    return mask


def _write_with(path: PathLike, writer: Callable[[Any], None], overwrite: bool) -> Path:
    with atomic_write(path, overwrite=overwrite) as handle:
        writer(handle)
    return Path(path)


def write_png(path: PathLike, array: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write uint8 (H, W), (H, W, 3) or uint16 (H, W) as PNG, atomically."""
    array = np.ascontiguousarray(array)
    if array.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"write_png takes uint8 or uint16, got {array.dtype}")
    image = Image.fromarray(array)
    return _write_with(path, lambda f: image.save(f, format="PNG"), overwrite)


def write_npy(path: PathLike, array: np.ndarray, *, overwrite: bool = False) -> Path:
    return _write_with(path, lambda f: np.save(f, np.asarray(array), allow_pickle=False), overwrite)


def write_json(path: PathLike, obj: Any, *, overwrite: bool = False) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    with atomic_write(path, overwrite=overwrite, mode="w") as handle:
        handle.write(text)
    return Path(path)


def depth_to_png_mm(depth: np.ndarray) -> np.ndarray:
    """Metres -> uint16 millimetres (0 stays invalid; values above 65.535 m are clipped)."""
    return np.clip(np.round(np.asarray(depth, dtype=np.float64) * 1000.0), 0, 65535).astype(np.uint16)


def normals_to_png(normals: np.ndarray) -> np.ndarray:
    """Unit normals (H, W, 3) -> uint8 RGB, channel = round((n + 1) * 127.5) clipped to 1..255.

    Invalid (zero) normals are written as (0, 0, 0); valid ones never are (channels are clipped to >= 1),
    so the encoding is unambiguous. The quantisation error is below 0.5 degree.
    """
    normals = np.asarray(normals, dtype=np.float32)
    valid = np.linalg.norm(normals, axis=-1) > 0.5
    encoded = np.clip(np.round((normals + 1.0) * 127.5), 1, 255).astype(np.uint8)
    encoded[~valid] = 0
    return encoded


def png_to_normals(encoded: np.ndarray, path: PathLike | None = None) -> np.ndarray:
    """Inverse of :func:`normals_to_png`: uint8 RGB -> unit normals, (0, 0, 0) where all channels are 0."""
    if encoded.ndim != 3 or encoded.shape[2] != 3:
        raise DataError(f"normal PNG must be RGB, got shape {encoded.shape}", path)
    valid = encoded.any(axis=-1)
    normals = encoded.astype(np.float32) / 127.5 - 1.0
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    normals = np.where(valid[..., None] & (norm > 1e-6), normals / np.maximum(norm, 1e-6), 0.0)
    return normals.astype(np.float32)


def read_matrix_txt(path: PathLike, shape: tuple[int, int], what: str = "matrix file") -> np.ndarray:
    """Read a whitespace-separated text matrix (e.g. a 3x3 ``K``) as float64 of ``shape``."""
    path = require_file(path, what)
    try:
        values = [float(v) for v in path.read_text().split()]
    except ValueError as err:
        raise DataError(f"{what} holds a value that is not a number ({err})", path) from err
    if len(values) != shape[0] * shape[1]:
        raise DataError(f"{what} must hold {shape[0]}x{shape[1]} numbers, found {len(values)}", path)
    matrix = np.asarray(values, dtype=np.float64).reshape(shape)
    if not np.isfinite(matrix).all():
        raise DataError(f"{what} holds NaN/inf values", path)
    return matrix
