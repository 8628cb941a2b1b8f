"""Dataset names for configs and the command line, and how each is built for a split.

``build_dataset(name, root, split, transform=..., **args)`` hides the small differences between loader
signatures (KITTI and the raw NYU frames take a file list per split instead of a split name); every other
argument goes to the dataset class unchanged, so its docstring is the reference. Two arguments apply to every
dataset: ``partial`` (task -> fraction of samples that keep its ground truth, GAD's Table 5) and
``partial_seed`` (see :mod:`tridense.data.partial`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tridense.data.base import DenseDataset, Transform
from tridense.errors import ConfigError, DataError


@dataclass(frozen=True)
class DatasetSpec:
    cls: Callable[[], type[DenseDataset]]  # imported lazily
    description: str
    needs_root: bool = True
    #: The split is chosen by a file list (``list_file``) rather than a split name.
    list_per_split: bool = False


def _lazy(module: str, name: str) -> Callable[[], type[DenseDataset]]:
    def load() -> type[DenseDataset]:
        import importlib

        return getattr(importlib.import_module(module), name)

    return load


DATASETS: dict[str, DatasetSpec] = {
    "synthetic": DatasetSpec(
        _lazy("tridense.data.synthetic", "SyntheticScenes"),
        "procedural indoor rooms with exact ground truth (embedded default)",
        needs_root=False,
    ),
    "folder": DatasetSpec(_lazy("tridense.data.folder", "FolderDataset"), "the folder format of `tridense render`"),
    "nyuv2_labeled": DatasetSpec(
        _lazy("tridense.data.nyu", "NYUv2Labeled"), "NYUD-v2 nyu_depth_v2_labeled.mat + splits.mat (795/654)"
    ),
    "nyuv2_multitask": DatasetSpec(
        _lazy("tridense.data.nyu", "NYUv2MultiTask"), "NYUD-v2 extracted multi-task layout (images/, depth/, ...)"
    ),
    "nyuv2_mtan": DatasetSpec(_lazy("tridense.data.nyu", "NYUv2Preprocessed"), "NYUD-v2 288x384 .npy release (MTAN)"),
    "nyuv2_raw": DatasetSpec(
        _lazy("tridense.data.nyu", "NYUv2Raw"), "NYUD-v2 raw sync frames with a file list", list_per_split=True
    ),
    "nyuv2_folder": DatasetSpec(_lazy("tridense.data.nyu", "NYUv2Folder"), "NYUD-v2 simple folder (nyu-mini)"),
    "sunrgbd": DatasetSpec(_lazy("tridense.data.sunrgbd", "SUNRGBD"), "SUN RGB-D official per-frame folders"),
    "kitti": DatasetSpec(
        _lazy("tridense.data.kitti", "KITTIDepth"), "KITTI depth with Eigen split file lists", list_per_split=True
    ),
    "weizmann_horse": DatasetSpec(
        _lazy("tridense.data.horse", "WeizmannHorse"),
        "Weizmann horse figure-ground (rgb/+figure_ground/ or horse/+mask/)",
    ),
    "voc2012": DatasetSpec(
        _lazy("tridense.data.voc", "VOC2012"), "PASCAL VOC 2012 VOCdevkit layout (palette PNGs, optional SBD train_aug)"
    ),
    "stanford2d3ds": DatasetSpec(
        _lazy("tridense.data.stanford", "Stanford2D3DS"), "Stanford 2D-3D-S area_N/data folders, folds 1-3"
    ),
}


def list_datasets() -> list[str]:
    return sorted(DATASETS)


def dataset_class(name: str) -> type[DenseDataset]:
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; valid datasets: {list_datasets()}")
    return DATASETS[name].cls()


def build_dataset(
    name: str, root: str | Path | None, split: str, *, transform: Transform | None = None, **args: Any
) -> DenseDataset:
    """Build dataset ``name`` for ``split``; ``args`` go to the dataset class (except ``partial``, ``partial_seed``)."""
    partial, partial_seed = args.pop("partial", None), args.pop("partial_seed", 0)
    dataset = _build(name, root, split, transform=transform, **args)
    if partial is None:
        return dataset
    from tridense.data.partial import PartialTasks

    if not isinstance(partial, dict):
        raise ConfigError(f"data partial must map tasks to fractions (e.g. {{depth: 0.2}}), got {partial!r}")
    return PartialTasks(dataset, partial, seed=partial_seed)


def _build(
    name: str, root: str | Path | None, split: str, *, transform: Transform | None = None, **args: Any
) -> DenseDataset:
    cls = dataset_class(name)
    spec = DATASETS[name]
    if not spec.needs_root:
        return cls(split, transform=transform, **args)
    if root is None:
        raise DataError(f"dataset {name!r} needs a root folder (data.root / --root)\nexpected layout:\n{cls.layout}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{name} root is not a folder\nexpected layout:\n{cls.layout}", root)
    if spec.list_per_split:
        list_file = args.pop("list_file", None) or root / f"{split}.txt"
        if not Path(list_file).is_file():
            raise DataError(
                f"{name}: no file list for split {split!r}; pass list_file (data.split_args.{split}.list_file) "
                f"or put the list at ROOT/{split}.txt",
                list_file,
            )
        if name == "kitti":
            return cls(root, list_file, transform=transform, **args)
        return cls(root, list_file=list_file, transform=transform, **args)
    return cls(root, split=split, transform=transform, **args)
