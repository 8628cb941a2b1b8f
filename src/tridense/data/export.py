"""Writing datasets to disk: the synthetic scenes in the folder format, and normal ground truth from depth.

``tridense render`` and ``tridense prepare normals`` are thin wrappers around :func:`write_dataset` and
:func:`prepare_normals`. Neither replaces an existing file unless asked to.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tridense.data.base import DenseDataset
from tridense.data.folder import write_folder_meta, write_folder_sample, write_split
from tridense.data.io import normals_to_png, write_png
from tridense.errors import DataError
from tridense.geometry import depth_to_normals

Progress = Callable[[int, int], None]


def write_dataset(
    dataset: DenseDataset,
    out: str | Path,
    *,
    split: str,
    count: int | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the first ``count`` samples of ``dataset`` into the folder format under ``out``.

    ``meta.json`` is written on first use and must describe the same classes on later splits. Returns a
    summary (samples written, seconds).
    """
    out = Path(out)
    count = len(dataset) if count is None else min(count, len(dataset))
    if count <= 0:
        raise DataError(f"nothing to write: count must be positive, got {count}")
    meta_path = out / "meta.json"
    extra = dict(info or {})
    classes = list(dataset.class_names or [])
    if meta_path.is_file():
        from tridense.data.folder import read_folder_meta

        existing = read_folder_meta(out)
        if existing["classes"] != classes:
            raise DataError(f"meta.json lists classes {existing['classes']}, this dataset has {classes}", meta_path)
    else:
        K = extra.pop("K", None)
        write_folder_meta(out, dataset=dataset.name, classes=classes, K=K, **extra)
    split_file = out / "splits" / f"{split}.txt"
    if split_file.exists() and not overwrite:
        raise FileExistsError(f"{split_file} exists; pass --overwrite to replace the split")
    started = time.time()
    names = []
    for index in range(count):
        raw = dataset.load_raw(index)
        name = str(raw["meta"]["name"]).replace("/", "_")
        write_folder_sample(out, name, raw, overwrite=overwrite)
        names.append(name)
        if progress is not None:
            progress(index + 1, count)
    write_split(out, split, names, overwrite=overwrite)
    return {"written": count, "seconds": round(time.time() - started, 2), "root": str(out), "split": split}


def normals_relpath(dataset: DenseDataset, index: int, raw: dict[str, Any]) -> str:
    """Where the normals of sample ``index`` go, relative to the normals folder the dataset reads."""
    custom = getattr(dataset, "normals_relpath", None)
    if custom is not None:
        return custom(index, raw)
    return f"{raw['meta']['name']}.png"


def prepare_normals(
    dataset: DenseDataset,
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
    **fit: Any,
) -> dict[str, Any]:
    """Compute normal ground truth from each sample's depth and K (``geometry.depth_to_normals``, options
    in ``fit``) and write it as normal PNGs under ``out`` where the dataset's loader looks for them."""
    if "depth" not in dataset.tasks:
        raise DataError(f"{dataset.name} has no depth to compute normals from")
    out = Path(out)
    started = time.time()
    valid_fraction = []
    for index in range(len(dataset)):
        raw = dataset.load_raw(index)
        if raw.get("depth") is None or raw.get("K") is None:
            raise DataError(f"sample {index} of {dataset.name} has no depth or intrinsics")
        normals, valid = depth_to_normals(raw["depth"], raw["K"], **fit)
        n = normals[0].permute(1, 2, 0).numpy().astype(np.float32)  # (H, W, 3)
        n[~valid[0, 0].numpy()] = 0.0
        valid_fraction.append(float(valid.float().mean()))
        write_png(out / normals_relpath(dataset, index, raw), normals_to_png(n), overwrite=overwrite)
        if progress is not None:
            progress(index + 1, len(dataset))
    return {
        "written": len(dataset),
        "seconds": round(time.time() - started, 2),
        "mean_valid_fraction": round(float(np.mean(valid_fraction)), 4),
        "out": str(out),
    }
