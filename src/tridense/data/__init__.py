"""Datasets in their real on-disk formats, the synthetic scenes, the sample contract and transforms.

The dataset classes users reach for are attributes of this package (``from tridense.data import
SyntheticScenes, NYUv2Labeled``). They are imported on first access, so ``import tridense.data`` (which
every submodule import runs first) loads no dataset module and none of their dependencies (h5py, SciPy).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "DenseDataset": "tridense.data.base",
    "FolderDataset": "tridense.data.folder",
    "SyntheticScenes": "tridense.data.synthetic",
    "NYUv2Labeled": "tridense.data.nyu",
    "NYUv2MultiTask": "tridense.data.nyu",
    "NYUv2Preprocessed": "tridense.data.nyu",
    "NYUv2Raw": "tridense.data.nyu",
    "NYUv2Folder": "tridense.data.nyu",
    "SUNRGBD": "tridense.data.sunrgbd",
    "KITTIDepth": "tridense.data.kitti",
    "Stanford2D3DS": "tridense.data.stanford",
    "build_dataset": "tridense.data.registry",
    "list_datasets": "tridense.data.registry",
    "collate": "tridense.data.sample",
    "IGNORE_INDEX": "tridense.data.sample",
    "TASKS": "tridense.data.sample",
}

__all__ = [
    "IGNORE_INDEX",
    "SUNRGBD",
    "TASKS",
    "DenseDataset",
    "FolderDataset",
    "KITTIDepth",
    "NYUv2Folder",
    "NYUv2Labeled",
    "NYUv2MultiTask",
    "NYUv2Preprocessed",
    "NYUv2Raw",
    "Stanford2D3DS",
    "SyntheticScenes",
    "build_dataset",
    "collate",
    "list_datasets",
]

if TYPE_CHECKING:
    from tridense.data.base import DenseDataset
    from tridense.data.folder import FolderDataset
    from tridense.data.kitti import KITTIDepth
    from tridense.data.nyu import NYUv2Folder, NYUv2Labeled, NYUv2MultiTask, NYUv2Preprocessed, NYUv2Raw
    from tridense.data.registry import build_dataset, list_datasets
    from tridense.data.sample import IGNORE_INDEX, TASKS, collate
    from tridense.data.stanford import Stanford2D3DS
    from tridense.data.sunrgbd import SUNRGBD
    from tridense.data.synthetic import SyntheticScenes


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tridense.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
