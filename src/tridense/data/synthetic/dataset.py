"""``SyntheticScenes``: the embedded default dataset, generated on the fly with exact ground truth."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from tridense.data.base import DenseDataset, Transform
from tridense.data.synthetic.render import render
from tridense.data.synthetic.scene import CLASS_NAMES, NYU40_IDS, generate_scene, intrinsics
from tridense.errors import DataError

#: Split codes mixed into the seed: train, val and test scenes come from disjoint seed sequences.
SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
DEFAULT_LENGTH: dict[str, int] = {"train": 2000, "val": 100, "test": 500}
#: ``cache=None`` keeps the generated samples in memory when the split needs at most this much.
AUTO_CACHE_BYTES = 1 << 30
#: Bytes per pixel of a compact cached sample (uint8 image, float32 depth, float16 normals, uint8 labels,
#: uint16 instances).
CACHED_BYTES_PER_PIXEL = 3 + 4 + 6 + 1 + 2


class SyntheticScenes(DenseDataset):
    """Procedurally generated indoor rooms rendered by ray casting, with exact depth, normals and labels.

    Sample ``index`` of ``split`` is generated from ``numpy.random.SeedSequence([seed, split_code, index])``
    and is the same bit for bit on every machine (the renderer uses only IEEE arithmetic and ``sqrt``).
    Nothing is stored: a sample costs a few tens of milliseconds at 240x320 (see
    ``benchmarks/synthetic_speed.py``); ``tridense render`` writes a split to disk in the folder format.

    Args:
        split: ``train``, ``val`` or ``test``.
        size: output (H, W); intrinsics are NYU's scaled to it.
        length: number of samples (default 2000 / 100 / 500; train scenes are drawn again with fresh
            augmentation every epoch).
        seed: base seed; different seeds give different datasets.
        sensor_invalid: mark depth invalid on window glass and at some depth edges, as a real sensor.
        shadows: cast shadows (slower, more realistic).
        noise: sensor noise on the image.
        min_objects, max_objects: number of objects per room.
        cache: keep every generated sample in memory (compactly: float16 normals, uint8 labels), so that
            later epochs cost nothing; about 16 bytes per pixel (0.2 MB per sample at 96x128). ``None``
            (default): cache when the whole split needs at most ``AUTO_CACHE_BYTES`` (1 GiB). Each
            DataLoader worker keeps its own cache (use persistent workers, or none).
    """

    name: ClassVar[str] = "synthetic"
    layout: ClassVar[str] = "(generated on the fly; nothing to download)"
    num_classes = len(CLASS_NAMES)
    class_names = CLASS_NAMES
    nyu40_ids = NYU40_IDS

    def __init__(
        self,
        split: str = "train",
        *,
        size: tuple[int, int] = (240, 320),
        length: int | None = None,
        seed: int = 0,
        sensor_invalid: bool = True,
        shadows: bool = True,
        noise: bool = True,
        min_objects: int = 3,
        max_objects: int = 15,
        cache: bool | None = None,
        tasks: Sequence[str] | None = None,
        transform: Transform | None = None,
    ) -> None:
        super().__init__(tasks=tasks, transform=transform)
        if split not in SPLITS:
            raise DataError(f"unknown synthetic split {split!r}; valid splits are {list(SPLITS)}")
        if len(size) != 2 or min(size) < 8:
            raise DataError(f"size must be (H, W) with both >= 8, got {size}")
        if not 0 <= min_objects <= max_objects:
            raise DataError(f"need 0 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
        self.split = split
        self.size = (int(size[0]), int(size[1]))
        self.length = DEFAULT_LENGTH[split] if length is None else int(length)
        if self.length <= 0:
            raise DataError(f"length must be positive, got {self.length}")
        self.seed = int(seed)
        self.sensor_invalid, self.shadows, self.noise = sensor_invalid, shadows, noise
        self.min_objects, self.max_objects = min_objects, max_objects
        if cache is None:
            cache = self.length * self.size[0] * self.size[1] * CACHED_BYTES_PER_PIXEL <= AUTO_CACHE_BYTES
        self.cache = bool(cache)
        self._cache: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return self.length

    @property
    def K(self) -> np.ndarray:
        return intrinsics(self.size).astype(np.float32)

    def load(self, index: int) -> dict[str, Any]:
        if self.cache:
            if index not in self._cache:
                self._cache[index] = _compact(self._generate(index))
            return _expand(self._cache[index])
        return self._generate(index)

    def _generate(self, index: int) -> dict[str, Any]:
        seq = np.random.SeedSequence([self.seed, SPLITS[self.split], int(index)])
        scene_rng, render_rng = (np.random.Generator(np.random.PCG64(s)) for s in seq.spawn(2))
        scene = generate_scene(scene_rng, self.size, min_objects=self.min_objects, max_objects=self.max_objects)
        raw = render(scene, render_rng, shadows=self.shadows, sensor_invalid=self.sensor_invalid, noise=self.noise)
        raw["meta"] = {
            "name": f"{self.split}_{index:06d}",
            "dataset": self.name,
            "split": self.split,
            "index": int(index),
            "seed": self.seed,
        }
        return raw

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = {}  # workers start empty rather than copying the parent's cache
        return state

    def info(self) -> dict[str, Any]:
        """What ``meta.json`` records when the dataset is written to disk."""
        return {
            "dataset": self.name,
            "classes": list(CLASS_NAMES),
            "nyu40_ids": list(NYU40_IDS),
            "K": self.K.tolist(),
            "size": list(self.size),
            "seed": self.seed,
            "settings": json.loads(
                json.dumps(
                    {
                        "sensor_invalid": self.sensor_invalid,
                        "shadows": self.shadows,
                        "noise": self.noise,
                        "min_objects": self.min_objects,
                        "max_objects": self.max_objects,
                    }
                )
            ),
        }


def _compact(raw: dict[str, Any]) -> dict[str, Any]:
    """A cached copy: labels as uint8/uint16, normals as float16 (error < 0.05 degree)."""
    out = dict(raw)
    out["normals"] = raw["normals"].astype(np.float16)
    out["semseg"] = raw["semseg"].astype(np.uint8)
    out["instances"] = raw["instances"].astype(np.uint16)
    return out


def _expand(cached: dict[str, Any]) -> dict[str, Any]:
    """A fresh sample from the cached copy (its own arrays: a transform that works in place leaves the cache)."""
    out = {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in cached.items()}
    normals = cached["normals"].astype(np.float32)
    norm = np.linalg.norm(normals, axis=-1, keepdims=True)
    out["normals"] = np.where(norm > 0, normals / np.maximum(norm, 1e-6), 0.0).astype(np.float32)
    out["semseg"] = cached["semseg"].astype(np.int64)
    out["instances"] = cached["instances"].astype(np.int64)
    out["meta"] = dict(cached["meta"])
    return out
