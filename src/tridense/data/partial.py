"""Partial supervision: keep a task's ground truth on a deterministic fraction of a dataset's samples.

GAD's Table 5 trains with depth on 0-100 % of the training images. :class:`PartialTasks` wraps any dataset
and drops the ground truth of ``task`` from every sample outside a fixed subset, so that :func:`collate` sets
``has_<task>`` False for it and the losses skip it (and GAD's depth branch runs forward only there).

The subset is ``round(fraction * len(dataset))`` indices chosen by a permutation seeded with ``seed`` alone:
the same samples on every machine, epoch and worker, whatever the augmentation, and nested (the 20 % subset
lies inside the 40 % one for the same seed). Configs reach it through the dataset registry:
``data.split_args.train: {partial: {depth: 0.2}}`` (and ``partial_seed``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tridense.data.base import DenseDataset
from tridense.data.sample import TASKS
from tridense.errors import ConfigError


def kept_indices(length: int, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of the ``round(fraction * length)`` samples that keep their ground truth."""
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"a partial-supervision fraction must lie in [0, 1], got {fraction!r}")
    order = np.random.default_rng(np.random.SeedSequence([int(seed), 0x6AD])).permutation(length)
    return np.sort(order[: round(fraction * length)])


class PartialTasks(DenseDataset):
    """``dataset`` with the ground truth of each task in ``fractions`` kept on that fraction of the samples.

    Args:
        dataset: any dataset of the library (its transform runs first; the task is dropped afterwards).
        fractions: task -> fraction of samples that keep it, e.g. ``{"depth": 0.2}``.
        seed: selects the subset (see :func:`kept_indices`).

    Attributes of the wrapped dataset (``K``, ``nyu40_ids``, ...) are reachable through the wrapper.
    """

    def __init__(self, dataset: DenseDataset, fractions: Mapping[str, float], *, seed: int = 0) -> None:
        unknown = [t for t in fractions if t not in TASKS]
        if unknown:
            raise ConfigError(f"partial: unknown task(s) {unknown}; valid: {list(TASKS)}")
        missing = [t for t in fractions if t not in dataset.tasks]
        if missing:
            raise ConfigError(f"partial: {dataset.name} does not provide {missing} (its tasks: {list(dataset.tasks)})")
        self.dataset = dataset
        self.tasks, self.transform = dataset.tasks, None
        self.name, self.num_classes, self.class_names = dataset.name, dataset.num_classes, dataset.class_names
        self.fractions = {t: float(f) for t, f in fractions.items()}
        self.seed = int(seed)
        self.kept = {t: frozenset(kept_indices(len(dataset), f, seed).tolist()) for t, f in self.fractions.items()}

    def __len__(self) -> int:
        return len(self.dataset)

    def keeps(self, task: str, index: int) -> bool:
        """Whether sample ``index`` keeps the ground truth of ``task``."""
        return task not in self.kept or index in self.kept[task]

    def load(self, index: int) -> dict[str, Any]:
        raw = self.dataset.load_raw(index)
        for task in self.kept:
            if index not in self.kept[task]:
                raw.pop(task, None)
        return raw

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.dataset[index]
        for task in self.kept:
            if index not in self.kept[task]:
                sample.pop(task, None)
        return sample

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":  # during unpickling, before __dict__ is restored
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def describe(self) -> str:
        parts = ", ".join(f"{t} on {len(k)}/{len(self)}" for t, k in self.kept.items())
        return f"{self.dataset.describe()} (partial: {parts})"
