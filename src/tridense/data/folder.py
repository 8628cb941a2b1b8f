"""The generic folder format that ``tridense render`` and ``tridense prepare`` write, its reader and writers.

Format (version 1)::

    ROOT/meta.json              {"format": "tridense-folder", "version": 1, "dataset": "<name>",
                                 "classes": [names...], "depth_scale": 1000.0,
                                 "K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (optional default K),
                                 ...other keys, kept in FolderDataset.info}
    ROOT/splits/<split>.txt     one sample name per line
    ROOT/rgb/<name>.png         (or .jpg) 8-bit RGB
    ROOT/depth/<name>.png       uint16, metres * depth_scale, 0 = invalid                [folder optional]
    ROOT/normals/<name>.png     uint8 RGB, io.normals_to_png encoding, (0,0,0) = invalid [folder optional]
    ROOT/semseg/<name>.png      uint8 (or uint16) class id, 255 = ignore                 [folder optional]
    ROOT/instances/<name>.png   uint16 instance id, 0 = none                             [folder optional]
    ROOT/intrinsics/<name>.txt  3x3 K, overrides meta.json's K                           [optional]

The tasks of a dataset are the folders present. Writing then reading a sample gives the same arrays up to
the quantisation of the format: depth to 1 / depth_scale m (0.5 mm rounding at 1000), normals below
0.5 degree, image, labels and K exactly (K to the 9 significant digits written).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tridense.data.base import DenseDataset, Transform, check_root
from tridense.data.io import (
    atomic_write,
    check_depth,
    normals_to_png,
    png_to_normals,
    read_json,
    read_label_png,
    read_lines,
    read_matrix_txt,
    read_png_uint16,
    read_rgb,
    write_json,
    write_png,
)
from tridense.data.sample import IGNORE_INDEX, TASKS, validate_raw_sample
from tridense.errors import DataError

FORMAT = "tridense-folder"
VERSION = 1
#: Keys of meta.json this module interprets; any other key is kept in :attr:`FolderDataset.info`.
META_KEYS = ("format", "version", "dataset", "classes", "depth_scale", "K")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")

LAYOUT = """\
ROOT/meta.json              {"format": "tridense-folder", "version": 1, "dataset": "<name>", "classes": [...],
                             "depth_scale": 1000.0, "K": [[fx,0,cx],[0,fy,cy],[0,0,1]] (optional)}
ROOT/splits/<split>.txt     one sample name per line
ROOT/rgb/<name>.png         (or .jpg) 8-bit RGB
ROOT/depth/<name>.png       uint16, metres * depth_scale, 0 = invalid               [folder optional]
ROOT/normals/<name>.png     uint8 RGB (io.normals_to_png), (0,0,0) = invalid       [folder optional]
ROOT/semseg/<name>.png      uint8 (or uint16) class id, 255 = ignore                [folder optional]
ROOT/instances/<name>.png   uint16 instance id, 0 = none                            [folder optional]
ROOT/intrinsics/<name>.txt  3x3 K, overrides meta.json's K                          [optional]"""


def _check_name(name: str, where: str | Path | None = None) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise DataError(
            f"sample name {name!r} is not valid: use letters, digits, '_', '-', '.' (no path separators, "
            "no spaces, not starting with '.' or '-')",
            where,
        )
    return name


def _check_K(K: Any, where: str | Path | None = None) -> np.ndarray:
    try:
        K = np.asarray(K, dtype=np.float64)
    except (TypeError, ValueError):
        K = np.empty(0)
    if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        got = np.asarray(K).tolist()
        raise DataError(f"K must be a finite 3x3 matrix with positive focal lengths, got {got}", where)
    return K


def read_folder_meta(root: str | Path) -> dict[str, Any]:
    """Read and check ``ROOT/meta.json``; return it with defaults filled in (``depth_scale``, ``classes``)."""
    path = Path(root) / "meta.json"
    meta = read_json(path, "meta.json")
    if not isinstance(meta, dict):
        raise DataError(f"meta.json must hold a JSON object, got {type(meta).__name__}", path)
    if meta.get("format") != FORMAT:
        raise DataError(f"'format' must be {FORMAT!r}, got {meta.get('format')!r}", path)
    if meta.get("version") != VERSION:
        raise DataError(f"'version' {meta.get('version')!r} is not supported; this reader reads {VERSION}", path)
    meta = dict(meta)
    meta.setdefault("dataset", Path(root).name)
    meta.setdefault("classes", [])
    meta.setdefault("depth_scale", 1000.0)
    if not isinstance(meta["classes"], list) or not all(isinstance(c, str) for c in meta["classes"]):
        raise DataError(f"'classes' must be a list of class names, got {meta['classes']!r}", path)
    scale = meta["depth_scale"]
    if not isinstance(scale, int | float) or isinstance(scale, bool) or not scale > 0:
        raise DataError(f"'depth_scale' must be a positive number (units per metre), got {scale!r}", path)
    if meta.get("K") is not None:
        meta["K"] = _check_K(meta["K"], path)
    return meta


def write_folder_meta(
    root: str | Path,
    *,
    dataset: str,
    classes: Sequence[str] = (),
    depth_scale: float = 1000.0,
    K: np.ndarray | Sequence[Sequence[float]] | None = None,
    overwrite: bool = False,
    **info: Any,
) -> Path:
    """Write ``ROOT/meta.json`` atomically (never over an existing one unless ``overwrite``).

    Args:
        root: dataset folder (created if needed).
        dataset: the dataset's name (``meta["dataset"]`` of its samples).
        classes: class names; class id = position.
        depth_scale: depth PNG units per metre (1000 = millimetres, range 65.535 m).
        K: default intrinsics of every sample (a sample's ``intrinsics/<name>.txt`` overrides it).
        overwrite: replace an existing meta.json.
        **info: other JSON-serialisable keys, returned by :attr:`FolderDataset.info`.
    """
    clash = sorted(set(info) & set(META_KEYS))
    if clash:
        raise DataError(f"extra keys {clash} clash with the format's own keys {list(META_KEYS)}")
    if not depth_scale > 0:
        raise DataError(f"depth_scale must be positive, got {depth_scale}")
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "dataset": str(dataset),
        "classes": [str(c) for c in classes],
        "depth_scale": float(depth_scale),
    }
    if K is not None:
        meta["K"] = _check_K(K).tolist()
    meta.update(info)
    return write_json(Path(root) / "meta.json", meta, overwrite=overwrite)


def write_split(root: str | Path, split: str, names: Sequence[str], *, overwrite: bool = False) -> Path:
    """Write ``ROOT/splits/<split>.txt`` (one name per line) atomically; names must be valid and unique."""
    _check_name(split)
    names = [_check_name(n) for n in names]
    if not names:
        raise DataError(f"split '{split}' has no sample names")
    if len(set(names)) != len(names):
        duplicates = sorted({n for n in names if names.count(n) > 1})[:5]
        raise DataError(f"split '{split}' lists names more than once: {duplicates}")
    with atomic_write(Path(root) / "splits" / f"{split}.txt", overwrite=overwrite, mode="w") as handle:
        handle.write("\n".join(names) + "\n")
    return Path(root) / "splits" / f"{split}.txt"


def _sample_pngs(raw: Mapping[str, Any], depth_scale: float, where: str) -> dict[str, np.ndarray]:
    """Encode the dense maps of a raw sample as the PNG arrays of the format."""
    arrays = {"rgb": np.asarray(raw["image"], dtype=np.uint8)}
    if raw.get("depth") is not None:
        units = np.round(np.asarray(raw["depth"], dtype=np.float64) * depth_scale)
        if units.max(initial=0) > 65535:
            raise DataError(
                f"depth up to {float(np.max(raw['depth'])):.2f} m does not fit 16 bits at depth_scale "
                f"{depth_scale} (max {65535 / depth_scale:.2f} m); write meta.json with a smaller depth_scale",
                where,
            )
        arrays["depth"] = units.astype(np.uint16)
    if raw.get("normals") is not None:
        arrays["normals"] = normals_to_png(raw["normals"])
    for key in ("semseg", "instances"):
        if raw.get(key) is None:
            continue
        labels = np.asarray(raw[key])
        if labels.size and (labels.min() < 0 or labels.max() > 65535):
            raise DataError(f"{key} values must be 0..65535, got {labels.min()}..{labels.max()}", where)
        small = key == "semseg" and labels.max(initial=0) <= 255
        arrays[key] = labels.astype(np.uint8 if small else np.uint16)
    return arrays


def write_folder_sample(
    root: str | Path, name: str, raw_sample: Mapping[str, Any], *, overwrite: bool = False
) -> dict[str, Path]:
    """Write one raw sample (see :mod:`tridense.data.sample`) into a folder dataset; return the files.

    ``ROOT/meta.json`` must exist (:func:`write_folder_meta`): its ``depth_scale`` encodes depth and its
    classes bound the labels. ``K`` is written to ``intrinsics/<name>.txt`` unless it equals meta.json's K.
    The sample is validated first and nothing is written if any target exists (unless ``overwrite``);
    each file is written atomically.
    """
    root = Path(root)
    if not (root / "meta.json").is_file():
        raise DataError("missing meta.json; call write_folder_meta() before writing samples", root / "meta.json")
    meta = read_folder_meta(root)
    _check_name(name, root)
    where = f"{root}/{name}"
    num_classes = len(meta["classes"]) or None
    validate_raw_sample({**raw_sample, "meta": {"path": where}}, num_classes)
    arrays = _sample_pngs(raw_sample, float(meta["depth_scale"]), where)
    targets = {key: root / key / f"{name}.png" for key in arrays}
    K = None if raw_sample.get("K") is None else _check_K(raw_sample["K"], where)
    # float32 K of a sample equals meta.json's float64 K to ~6e-8 relative
    write_K = K is not None and (meta.get("K") is None or not np.allclose(K, meta["K"], rtol=1e-6, atol=0))
    if write_K:
        targets["K"] = root / "intrinsics" / f"{name}.txt"
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"sample '{name}' already has {existing}; pass overwrite=True to replace it")
    for key, array in arrays.items():
        write_png(targets[key], array, overwrite=overwrite)
    stale_K = root / "intrinsics" / f"{name}.txt"
    if not write_K and overwrite and stale_K.is_file():
        stale_K.unlink()  # it would override meta.json's K, which this sample now uses
    if write_K:
        with atomic_write(targets["K"], overwrite=overwrite, mode="w") as handle:
            handle.write("\n".join(" ".join(f"{v:.9g}" for v in row) for row in K) + "\n")
    return targets


class FolderDataset(DenseDataset):
    """A dataset in the generic folder format (what ``tridense render`` writes).

    Layout::

        ROOT/meta.json              format, version, dataset, classes, depth_scale, K (optional), ...
        ROOT/splits/<split>.txt     one sample name per line
        ROOT/rgb/<name>.png|.jpg    8-bit RGB
        ROOT/depth/<name>.png       uint16, metres * depth_scale, 0 = invalid          [folder optional]
        ROOT/normals/<name>.png     uint8 RGB (io.normals_to_png), (0,0,0) = invalid   [folder optional]
        ROOT/semseg/<name>.png      uint8/uint16 class id, 255 = ignore                [folder optional]
        ROOT/instances/<name>.png   uint16 instance id, 0 = none                       [folder optional]
        ROOT/intrinsics/<name>.txt  3x3 K, overrides meta.json's K                     [optional]

    The available tasks are the folders present; ``instances`` are returned whenever their folder exists.
    A sample without K (no intrinsics file and no K in meta.json) has no ``K``.

    Args:
        root: the dataset folder.
        split: name of a list in ``ROOT/splits``.
        allow_missing: a sample whose file is missing in a present task folder has no ground truth for
            that task (semi-supervised data) instead of raising.
        tasks, transform: see :class:`~tridense.data.base.DenseDataset`.
    """

    name = "folder"
    layout = LAYOUT

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        allow_missing: bool = False,
        tasks: Sequence[str] | None = None,
        transform: Transform | None = None,
    ) -> None:
        self.root = check_root(root, type(self))
        if not (self.root / "meta.json").is_file():
            raise DataError(f"missing meta.json\nexpected layout:\n{self.layout}", self.root / "meta.json")
        meta = read_folder_meta(self.root)
        self.name = str(meta["dataset"])
        self.available_tasks = tuple(t for t in TASKS if (self.root / t).is_dir())
        super().__init__(tasks=tasks, transform=transform)
        self.class_names = tuple(meta["classes"]) or None
        self.num_classes = len(meta["classes"]) or None
        self.depth_scale = float(meta["depth_scale"])
        self.default_K = meta.get("K")
        self.info = {k: v for k, v in meta.items() if k not in META_KEYS}
        self.has_instances = (self.root / "instances").is_dir()
        self.allow_missing = allow_missing
        self.split = split
        split_file = self.root / "splits" / f"{split}.txt"
        if not split_file.is_file():
            available = sorted(p.stem for p in (self.root / "splits").glob("*.txt"))
            message = f"missing split list (splits present: {available})\nexpected layout:\n{self.layout}"
            raise DataError(message, split_file)
        self.names = [_check_name(n, split_file) for n in read_lines(split_file, "split list")]

    def __len__(self) -> int:
        return len(self.names)

    def _file(self, folder: str, name: str, required: bool) -> Path | None:
        path = self.root / folder / f"{name}.png"
        if path.is_file():
            return path
        if folder == "rgb" and (self.root / "rgb" / f"{name}.jpg").is_file():
            return self.root / "rgb" / f"{name}.jpg"
        if required or not self.allow_missing:
            raise DataError(f"missing {folder} file of sample '{name}'", path)
        return None

    def load(self, index: int) -> dict[str, Any]:
        name = self.names[index]
        image_path = self._file("rgb", name, required=True)
        image = read_rgb(image_path)
        hw = image.shape[:2]
        sample: dict[str, Any] = {"image": image, "meta": {"name": name, "dataset": self.name, "path": str(image_path)}}
        K_path = self.root / "intrinsics" / f"{name}.txt"
        if K_path.is_file():
            sample["K"] = _check_K(read_matrix_txt(K_path, (3, 3), "intrinsics file"), K_path).astype(np.float32)
        elif self.default_K is not None:
            sample["K"] = self.default_K.astype(np.float32)
        if "depth" in self.tasks and (path := self._file("depth", name, required=False)):
            depth = read_png_uint16(path).astype(np.float32) / self.depth_scale
            sample["depth"] = check_depth(depth, path, hw)
        if "normals" in self.tasks and (path := self._file("normals", name, required=False)):
            encoded = read_rgb(path)
            sample["normals"] = self._checked(png_to_normals(encoded, path), path, hw, "normals")
        if "semseg" in self.tasks and (path := self._file("semseg", name, required=False)):
            labels = self._checked(read_label_png(path), path, hw, "semseg")
            if self.num_classes is not None:
                bad = (labels != IGNORE_INDEX) & (labels >= self.num_classes)
                if bad.any():
                    values = np.unique(labels[bad])[:8].tolist()
                    raise DataError(f"labels {values} outside 0..{self.num_classes - 1} (and 255 = ignore)", path)
            sample["semseg"] = labels
        if self.has_instances and (path := self._file("instances", name, required=False)):
            sample["instances"] = self._checked(read_label_png(path), path, hw, "instances")
        return sample

    @staticmethod
    def _checked(array: np.ndarray, path: Path, hw: tuple[int, ...], what: str) -> np.ndarray:
        if array.shape[:2] != tuple(hw):
            raise DataError(f"{what} has size {array.shape[:2]}, expected the image size {tuple(hw)}", path)
        return array
