"""SUN RGB-D (Song et al., CVPR 2015) read from its official per-frame folders.

What this loader relies on (checked against public material, see the search notes in the report):

- the dataset README (``SUNRGBD.zip``): each frame folder holds ``image/``, ``depth/``, ``depth_bfx/``,
  ``extrinsics/`` ("the rotation matrix to align the point cloud with gravity"), ``intrinsics.txt`` and
  ``scene.txt``; the toolbox's ``read3dPoints`` decodes depth as ``bitor(bitshift(v, -3), bitshift(v, 13))``
  millimetres and back-projects to ``Rtilt * [x; z; -y]``;
- the toolbox README: ``SUNRGBD2Dseg(i).seglabel`` indexes ``seg37list`` (the 37 classes of the
  literature), ``seglabelall`` indexes ``seglistall``; ``traintestSUNRGBD/allsplit.mat`` holds
  ``alltrain`` (5285) and ``alltest`` (5050) frame paths starting with ``/n/fs/sun3d/data/SUNRGBD/``;
- the per-frame ``seg.mat`` as read by public code: ``seglabel`` (H, W), 0 = unlabeled and k > 0 the k-th
  entry of ``names`` (the annotator's object names of that frame).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.io

from tridense.data.base import DenseDataset, Transform, check_root
from tridense.data.io import check_depth, read_lines, read_matrix_txt, read_png_uint16, read_rgb, require_dir
from tridense.data.sample import IGNORE_INDEX
from tridense.errors import DataError

#: The 37 classes of ``SUNRGBDtoolbox/Metadata/seg37list.mat``, in order (class id = position).
SEG37_CLASSES: tuple[str, ...] = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture",
    "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor_mat", "clothes",
    "ceiling", "books", "fridge", "tv", "paper", "towel", "shower_curtain", "box", "whiteboard", "person",
    "night_stand", "toilet", "sink", "lamp", "bathtub", "bag",
)  # fmt: skip

#: Common spellings of the 37 class names in the per-frame ``names`` (after normalisation).
NAME_ALIASES: dict[str, str] = {
    "refrigerator": "fridge", "refridgerator": "fridge", "television": "tv", "tv_monitor": "tv",
    "nightstand": "night_stand", "night_table": "night_stand", "book_shelf": "bookshelf",
    "bookcase": "bookshelf", "white_board": "whiteboard", "floormat": "floor_mat", "rug": "floor_mat",
    "bath_tub": "bathtub", "shelf": "shelves", "book": "books", "cloth": "clothes", "papers": "paper",
    "showercurtain": "shower_curtain", "blind": "blinds", "boxes": "box",
}  # fmt: skip

SENSORS: tuple[str, ...] = ("kv1", "kv2", "realsense", "xtion")

# OpenCV camera (x right, y down, z forward) -> the toolbox's pre-tilt frame (x right, y forward, z up):
# read3dPoints builds points as [x, z, -y] before applying Rtilt.
_CV_TO_TOOLBOX = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])

LAYOUT = """\
ROOT/                                   the SUNRGBD folder of SUNRGBD.zip
  kv1/NYUdata/NYU0001/                  one folder per frame (also kv1/b3dodata, kv2/kinect2data,
                                        realsense/..., xtion/...)
    image/<name>.jpg                    8-bit RGB
    depth/<name>.png                    uint16 raw depth, bit-rotated: mm = (v >> 3) | (v << 13), 0 = hole
    depth_bfx/<name>.png                the same, hole-filled
    intrinsics.txt                      3x3 K
    extrinsics/<stamp>.txt              3x4 [Rtilt | 0] gravity alignment (the last one sorted is used)
    scene.txt                           scene category (optional)
    seg.mat                             optional: 'seglabel' (H, W), 0 = unlabeled, k = names{k}; 'names' cell
  <split>.txt                           frame folders relative to ROOT, one per line; or
  allsplit.mat                          the toolbox's traintestSUNRGBD/allsplit.mat ('alltrain', 'alltest')
                                        (also found at ROOT/../SUNRGBDtoolbox/traintestSUNRGBD/allsplit.mat)"""


def decode_sunrgbd_depth(raw: np.ndarray) -> np.ndarray:
    """SUN RGB-D depth PNG values (uint16) -> metres: mm = (v >> 3) | (v << 13) in 16 bits, 0 = invalid."""
    v = np.asarray(raw).astype(np.uint16)
    mm = (v >> np.uint16(3)) | (v << np.uint16(13))  # uint16 arithmetic wraps the rotated bits
    return mm.astype(np.float32) / 1000.0


def encode_sunrgbd_depth(depth: np.ndarray) -> np.ndarray:
    """Inverse of :func:`decode_sunrgbd_depth`: metres -> bit-rotated uint16 (rounded to 1 mm)."""
    mm = np.clip(np.round(np.asarray(depth, dtype=np.float64) * 1000.0), 0, 65535).astype(np.uint16)
    return (mm << np.uint16(3)) | (mm >> np.uint16(13))


def frame_from_split_path(path: str) -> str:
    """A frame folder from a split entry (the part after ``SUNRGBD/``, without slashes at the ends).

    ``/n/fs/sun3d/data/SUNRGBD/kv1/NYUdata/NYU0001/`` -> ``kv1/NYUdata/NYU0001``.
    """
    path = path.strip().replace("\\", "/")
    if "SUNRGBD/" in path:
        path = path.split("SUNRGBD/", 1)[1]
    return path.strip("/")


def _mat_string(value: Any) -> str:
    """A MATLAB string as scipy.io.loadmat returns it (char array, possibly nested in cells) -> str."""
    while isinstance(value, np.ndarray):
        if value.size == 0:
            return ""
        if value.dtype.kind == "U":
            return "".join(str(v) for v in value.ravel())
        value = value.ravel()[0]
    return str(value)


def _load_mat(path: Path, what: str) -> dict[str, Any]:
    try:
        return scipy.io.loadmat(path)
    except NotImplementedError as err:  # scipy's message for MATLAB v7.3 (HDF5) files
        raise DataError(f"{what} is a MATLAB v7.3 file; save it with -v7 (scipy.io reads v4-v7.2)", path) from err
    except (ValueError, OSError, TypeError) as err:
        raise DataError(f"unreadable {what} ({err})", path) from err


def read_split(path: str | Path, split: str) -> list[str]:
    """Frame folders of ``split`` from a ``.txt`` list or the toolbox's ``allsplit.mat`` (``all<split>``)."""
    path = Path(path)
    if path.suffix == ".mat":
        if not path.is_file():
            raise DataError("missing split file", path)
        mat = _load_mat(path, "split file")
        key = f"all{split}"
        if key not in mat:
            keys = sorted(k for k in mat if not k.startswith("__"))
            raise DataError(f"split '{split}' needs variable '{key}', the file holds {keys}", path)
        frames = [frame_from_split_path(_mat_string(v)) for v in np.asarray(mat[key]).ravel()]
        if not frames:
            raise DataError(f"'{key}' is empty", path)
        return frames
    return [frame_from_split_path(line) for line in read_lines(path, "split list")]


def normalise_name(name: str) -> str:
    """Lower case, spaces and hyphens -> underscores, so ``"Night Stand"`` matches ``night_stand``."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def seg37_index(name: str, extra: Mapping[str, int] | None = None) -> int:
    """Class id (0..36) of a per-frame object name, or 255 when it is none of the 37 classes.

    Order of lookup: ``extra`` (normalised names), the 37 names, :data:`NAME_ALIASES`, the singular of a
    plural (``"chairs"`` -> ``chair``).
    """
    key = normalise_name(name)
    if extra and key in extra:
        return int(extra[key])
    key = NAME_ALIASES.get(key, key)
    if key in SEG37_CLASSES:
        return SEG37_CLASSES.index(key)
    if key.endswith("s") and key[:-1] in SEG37_CLASSES:
        return SEG37_CLASSES.index(key[:-1])
    return IGNORE_INDEX


def read_seg_mat(path: str | Path, extra: Mapping[str, int] | None = None) -> np.ndarray:
    """Read a per-frame ``seg.mat`` as int64 (H, W) ids of the 37 classes, 255 = unlabeled or other."""
    path = Path(path)
    mat = _load_mat(path, "seg.mat")
    missing = [k for k in ("seglabel", "names") if k not in mat]
    if missing:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(f"seg.mat needs variables 'seglabel' and 'names'; missing {missing}, found {keys}", path)
    seglabel = np.asarray(mat["seglabel"])
    if seglabel.ndim != 2 or seglabel.dtype.kind not in "iuf":
        raise DataError(f"'seglabel' must be a numeric (H, W) array, got {seglabel.dtype} {seglabel.shape}", path)
    if seglabel.dtype.kind == "f" and not np.array_equal(seglabel, np.round(seglabel)):
        raise DataError("'seglabel' holds non-integer values", path)
    names = [_mat_string(v) for v in np.asarray(mat["names"]).ravel()]
    index = seglabel.astype(np.int64)
    bad = (index < 0) | (index > len(names))
    if bad.any():
        values = np.unique(index[bad])[:8].tolist()
        raise DataError(
            f"'seglabel' has indices {values} outside 0..{len(names)} (0 = unlabeled, k = the k-th of "
            f"{len(names)} names)",
            path,
        )
    lut = np.array([IGNORE_INDEX] + [seg37_index(n, extra) for n in names], dtype=np.int64)
    return lut[index]


def _single_file(folder: Path, pattern: str, what: str, layout: str) -> Path:
    files = sorted(require_dir(folder, f"{what} folder", layout).glob(pattern))
    if len(files) != 1:
        raise DataError(f"expected one {what} file ({pattern}), found {len(files)}", folder)
    return files[0]


class SUNRGBD(DenseDataset):
    """SUN RGB-D frames: RGB, metric depth (raw or hole-filled), 37-class labels, K and gravity.

    Layout::

        ROOT/                                   the SUNRGBD folder of SUNRGBD.zip
          kv1/NYUdata/NYU0001/                  one folder per frame (kv1, kv2, realsense, xtion sensors)
            image/<name>.jpg                    8-bit RGB
            depth/<name>.png                    uint16 raw depth, bit-rotated: mm = (v >> 3) | (v << 13)
            depth_bfx/<name>.png                the same, hole-filled
            intrinsics.txt                      3x3 K
            extrinsics/<stamp>.txt              3x4 [Rtilt | 0]; the last one sorted is used (as the toolbox)
            scene.txt                           scene category (optional)
            seg.mat                             optional: 'seglabel' (H, W) indices into 'names'
          <split>.txt or allsplit.mat           frame folders (see ``split_file``)

    Labels: the per-frame ``seg.mat`` holds the annotators' object ``names`` of that frame, not the
    37-class ids; names are mapped to the 37 classes of ``seg37list`` by :func:`seg37_index` (exact name,
    aliases, plurals); any other object and 0 (unlabeled) become 255. The official 37-class maps of
    ``SUNRGBD2Dseg.mat`` come from the toolbox's curated mapping of ~6,000 raw names; pass ``class_map``
    (normalised name -> id) to reproduce it. A frame without ``seg.mat`` simply has no ``semseg``.

    Depth: ``depth="bfx"`` (hole-filled, the default) or ``"raw"`` (holes = 0). Values above ``max_depth``
    (the toolbox clips at 8 m, beyond the sensors' range) become invalid.

    ``meta`` carries ``R_tilt`` (the 3x3 of the extrinsics file, toolbox convention) and
    ``R_world_from_cam`` (OpenCV camera frame -> gravity-aligned frame with z up), plus ``sensor`` and
    ``scene`` when known.

    Args:
        root: the ``SUNRGBD`` folder.
        split: ``"train"`` or ``"test"`` (any name with a ``<split>.txt`` list or ``all<split>`` in the .mat).
        split_file: a ``.txt`` list of frame folders or ``allsplit.mat``; by default ``ROOT/<split>.txt``,
            then ``ROOT/allsplit.mat``, then ``ROOT/../SUNRGBDtoolbox/traintestSUNRGBD/allsplit.mat``.
        depth: which depth folder to read, ``"bfx"`` or ``"raw"``.
        max_depth: metres above which depth is invalid (``None``: keep all).
        class_map: extra normalised object name -> class id (0..36 or 255) rules, checked first.
        tasks, transform: see :class:`~tridense.data.base.DenseDataset`.
    """

    name = "sunrgbd"
    available_tasks = ("depth", "semseg")
    num_classes = len(SEG37_CLASSES)
    class_names = SEG37_CLASSES
    layout = LAYOUT

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        split_file: str | Path | None = None,
        depth: Literal["bfx", "raw"] = "bfx",
        max_depth: float | None = 8.0,
        class_map: Mapping[str, int] | None = None,
        tasks: Sequence[str] | None = None,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(tasks=tasks, transform=transform)
        self.root = check_root(root, type(self))
        if depth not in ("bfx", "raw"):
            raise DataError(f"depth must be 'bfx' or 'raw', got {depth!r}")
        self.depth_folder = "depth_bfx" if depth == "bfx" else "depth"
        self.max_depth = max_depth
        self.class_map = {normalise_name(k): int(v) for k, v in (class_map or {}).items()}
        bad = {k: v for k, v in self.class_map.items() if not (0 <= v < self.num_classes or v == IGNORE_INDEX)}
        if bad:
            raise DataError(f"class_map values must be 0..{self.num_classes - 1} or {IGNORE_INDEX}, got {bad}")
        self.split = split
        self.split_file = self._find_split_file(split, split_file)
        self.frames = read_split(self.split_file, split)
        missing = [f for f in self.frames if not (self.root / f).is_dir()]
        if missing:
            raise DataError(
                f"{len(missing)} of {len(self.frames)} frame folders listed in {self.split_file} are missing, "
                f"e.g. {missing[0]!r}\nexpected layout:\n{self.layout}",
                self.root / missing[0],
            )

    def _find_split_file(self, split: str, split_file: str | Path | None) -> Path:
        if split_file is not None:
            return Path(split_file).expanduser()
        candidates = [
            self.root / f"{split}.txt",
            self.root / "allsplit.mat",
            self.root.parent / "SUNRGBDtoolbox" / "traintestSUNRGBD" / "allsplit.mat",
        ]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        tried = "\n  ".join(str(c) for c in candidates)
        raise DataError(f"no split file for split '{split}'; tried:\n  {tried}\nexpected layout:\n{self.layout}")

    def __len__(self) -> int:
        return len(self.frames)

    def load(self, index: int) -> dict[str, Any]:
        rel = self.frames[index]
        frame = self.root / rel
        image_path = _single_file(frame / "image", "*.jpg", "image", self.layout)
        image = read_rgb(image_path)
        hw = image.shape[:2]
        K = read_matrix_txt(frame / "intrinsics.txt", (3, 3), "intrinsics file")
        extrinsics = sorted(require_dir(frame / "extrinsics", "extrinsics folder", self.layout).glob("*.txt"))
        if not extrinsics:
            raise DataError("no extrinsics/*.txt (3x4 gravity alignment)", frame / "extrinsics")
        R_tilt = read_matrix_txt(extrinsics[-1], (3, 4), "extrinsics file")[:, :3]
        meta: dict[str, Any] = {
            "name": rel,
            "dataset": self.name,
            "path": str(image_path),
            "R_tilt": R_tilt.astype(np.float32),
            "R_world_from_cam": (R_tilt @ _CV_TO_TOOLBOX).astype(np.float32),
        }
        if rel.split("/")[0] in SENSORS:
            meta["sensor"] = rel.split("/")[0]
        if (frame / "scene.txt").is_file():
            meta["scene"] = (frame / "scene.txt").read_text().strip()
        sample: dict[str, Any] = {"image": image, "K": K.astype(np.float32), "meta": meta}
        if "depth" in self.tasks:
            depth_path = _single_file(frame / self.depth_folder, "*.png", "depth", self.layout)
            depth = decode_sunrgbd_depth(read_png_uint16(depth_path))
            if self.max_depth is not None:
                depth[depth > self.max_depth] = 0.0
            sample["depth"] = check_depth(depth, depth_path, hw)
        seg_path = frame / "seg.mat"
        if "semseg" in self.tasks and seg_path.is_file():
            labels = read_seg_mat(seg_path, self.class_map)
            if labels.shape != hw:
                raise DataError(f"'seglabel' has size {labels.shape}, expected the image size {hw}", seg_path)
            sample["semseg"] = labels
        return sample
