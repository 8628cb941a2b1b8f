"""The base class of every dataset: read a raw sample, check it, convert it, transform it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from torch.utils.data import Dataset

from tridense.data.sample import TASKS, to_tensor_sample, validate_raw_sample
from tridense.errors import DataError

Transform = Callable[[dict[str, Any]], dict[str, Any]]


class DenseDataset(Dataset):
    """A dataset of RGB images with any subset of depth, normals and semantic labels.

    Subclasses set the class attributes and implement :meth:`__len__` and :meth:`load`, which returns a
    raw NumPy sample (see :mod:`tridense.data.sample`). ``__getitem__`` validates it, converts it to
    tensors and applies ``transform``; any failure is re-raised as :class:`DataError` naming the sample,
    so a broken file never surfaces as an anonymous crash inside a DataLoader worker.

    Args:
        tasks: the tasks to return (default: all the dataset has); ground truth of other tasks is dropped.
        transform: a callable on tensor samples, e.g. :func:`tridense.data.transforms.train_transforms`.
    """

    #: Short name used by the registry and in ``meta["dataset"]`` (an instance may refine it).
    name: str = "dataset"
    #: Tasks with ground truth in this dataset (an instance may narrow it, e.g. to the folders present).
    available_tasks: tuple[str, ...] = TASKS
    #: The on-disk layout, printed when the root is wrong.
    layout: ClassVar[str] = ""

    def __init__(self, *, tasks: Sequence[str] | None = None, transform: Transform | None = None) -> None:
        requested = tuple(tasks) if tasks is not None else self.available_tasks
        unknown = [t for t in requested if t not in TASKS]
        if unknown:
            raise DataError(f"unknown task(s) {unknown}; valid tasks are {list(TASKS)}")
        self.tasks = tuple(t for t in requested if t in self.available_tasks)
        self.transform = transform

    # Subclasses override these ------------------------------------------------------------------
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, index: int) -> dict[str, Any]:  # pragma: no cover - abstract
        """Read sample ``index`` from disk as a raw NumPy sample (before any transform)."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------------------------
    def load_raw(self, index: int) -> dict[str, Any]:
        """:meth:`load`, restricted to the requested tasks and validated against the contract."""
        if not 0 <= index < len(self):
            raise IndexError(f"{self.name}: index {index} out of range for {len(self)} samples")
        try:
            raw = self.load(index)
        except DataError:
            raise
        except Exception as err:  # a decoder or h5py error: add which sample it was
            raise DataError(f"{self.name}: failed to read sample {index} ({type(err).__name__}: {err})") from err
        for task in TASKS:
            if task not in self.tasks:
                raw.pop(task, None)
        raw.setdefault("meta", {}).setdefault("dataset", self.name)
        validate_raw_sample(raw, self.num_classes)
        return raw

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = to_tensor_sample(self.load_raw(index))
        if self.transform is not None:
            try:
                sample = self.transform(sample)
            except Exception as err:
                where = sample["meta"].get("path") or sample["meta"].get("name")
                raise DataError(f"transform failed ({type(err).__name__}: {err})", where) from err
        return sample

    def describe(self) -> str:
        """One line for ``tridense info`` and logs."""
        classes = f", {self.num_classes} classes" if self.num_classes else ""
        return f"{self.name}: {len(self)} samples, tasks {list(self.tasks)}{classes}"


def check_root(root: str | Path, cls: type[DenseDataset]) -> Path:
    """Return ``root`` as a Path, or raise DataError quoting the dataset's expected layout."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{cls.name} root is not a folder\nexpected layout:\n{cls.layout}", root)
    return root
