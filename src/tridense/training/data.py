"""Lightning DataModule over the dataset registry, with epoch-seeded sampling and per-sample seeding.

Reproducibility does not depend on worker count, process count or on where a run was interrupted: the
sampler's order is a function of (seed, epoch) and each sample's augmentation draws from a generator seeded
with (seed, epoch, index). A run resumed from an epoch-end checkpoint therefore sees exactly the batches the
uninterrupted run saw, and so does one resumed mid-epoch (from a Ctrl-C checkpoint): the training sampler
skips the batches of the epoch that the restored optimisation step has already trained
(:class:`StepResumableLoader`). Under DDP each process takes every ``world_size``-th index of the epoch's order
(training drops the uneven tail so all processes step together; evaluation keeps every sample once).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from tridense.data.base import DenseDataset, Transform
from tridense.data.hha import AddHHA
from tridense.data.registry import build_dataset
from tridense.data.sample import collate
from tridense.data.transforms import eval_transforms, train_transforms
from tridense.training.config import DataConfig


def mix_seed(*words: int) -> int:
    """A 63-bit seed from integers (SplitMix-style), stable across machines and Python versions."""
    x = 0x9E3779B97F4A7C15
    for w in words:
        x = (x ^ (w & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x = (x ^ (x >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return x & 0x7FFFFFFFFFFFFFFF


class EpochSampler(Sampler[tuple[int, int]]):
    """Yields ``(index, epoch)`` for this process's share of a (seed, epoch)-determined order.

    The epoch comes from ``epoch_fn`` when given (the training loader derives it from the training module's
    batch count, which a resumed run restores exactly; Lightning's own epoch counter passed to ``set_epoch`` is
    one ahead after resuming from an epoch-end checkpoint), else from ``set_epoch``.
    """

    def __init__(
        self,
        length: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        epoch_fn: Callable[[], int] | None = None,
        skip_fn: Callable[[], int] | None = None,
    ) -> None:
        self.length, self.shuffle, self.seed = length, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch_fn = epoch_fn
        #: Number of this process's indices of the epoch to skip (already trained before a resume).
        self.skip_fn = skip_fn
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.length))
        g = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
        return torch.randperm(self.length, generator=g).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.epoch_fn is not None:
            self.epoch = self.epoch_fn()
        order = self._order()
        if self.drop_last:
            order = order[: (self.length // self.world_size) * self.world_size]
        skip = self.skip_fn() if self.skip_fn is not None else 0
        for index in order[self.rank :: self.world_size][skip:]:
            yield index, self.epoch

    def __len__(self) -> int:
        if self.drop_last:
            return self.length // self.world_size
        return math.ceil((self.length - self.rank) / self.world_size)


class StepResumableLoader(DataLoader):
    """The training loader: its position in the epoch is a function of the optimisation step.

    Its :class:`EpochSampler` derives the epoch from the module's own batch count (``module.batches``) and
    skips the batches of the epoch already trained (``batches % batches_per_epoch``, zero at every epoch
    start), so restoring that count from a checkpoint restores the position. ``state_dict`` records that
    position, which tells Lightning that the loader resumes exactly; ``load_state_dict`` has nothing more to
    restore.
    """

    def state_dict(self) -> dict[str, int]:
        sampler = self.sampler
        skip = sampler.skip_fn() if isinstance(sampler, EpochSampler) and sampler.skip_fn else 0
        return {"epoch": getattr(sampler, "epoch", 0), "samples_done_in_epoch": skip}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Nothing to do: the position follows from the restored batch count (see the class docstring)."""


class SeededDataset(Dataset):
    """Wraps a dataset so that item ``(index, epoch)`` draws its random augmentation from a generator seeded
    with (seed, epoch, index), whatever process or worker loads it."""

    def __init__(self, dataset: DenseDataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int] | int) -> dict[str, Any]:
        index, epoch = item if isinstance(item, tuple) else (item, 0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(mix_seed(self.seed, epoch, index))
            return self.dataset[index]


def build_transform(cfg: DataConfig, train: bool, *, hha: bool = False, drop_depth: bool = False) -> Transform:
    """The training or evaluation transforms of ``cfg``; ``hha``: append :class:`~tridense.data.hha.AddHHA`
    (for models that read the HHA of the ground-truth depth), after the geometric augmentation, removing the
    depth afterwards when ``drop_depth`` (loaded as an input only).

    HHA's gravity is the dataset's camera tilt where the sample has one and its camera frame is untouched
    (evaluation; training without flips or rotations), else estimated from the normals (``"estimate"``).
    """
    size = tuple(cfg.size) if cfg.size else None
    if not train:
        transform = eval_transforms(size)
    else:
        aug = cfg.augment
        transform = train_transforms(
            size,
            scale=tuple(aug.scale) if aug.scale else None,
            zoom=tuple(aug.zoom) if aug.zoom else None,
            flip=aug.flip,
            rotation=aug.rotation,
            color=aug.color,
        )
    if hha:
        frame_changed = train and (cfg.augment.flip or bool(cfg.augment.rotation))
        transform.transforms.append(AddHHA(gravity="estimate" if frame_changed else "auto", drop_depth=drop_depth))
    return transform


def make_dataset(
    cfg: DataConfig, split: str, *, train: bool, tasks: Sequence[str] | None = None, hha: bool = False
) -> DenseDataset:
    """The dataset of ``split`` with the training or evaluation transforms of ``cfg`` (``hha``: with HHA)."""
    args = {**cfg.args, **cfg.split_args.get(split, {})}
    if cfg.dataset == "synthetic" and cfg.size and "size" not in args:
        args["size"] = tuple(cfg.size)  # render at the network size: exact, and faster than resizing
    drop_depth = False
    if tasks is not None:
        if hha and "depth" not in tasks:  # HHA encodes the depth: load it as an input, drop it once encoded
            tasks, drop_depth = [*tasks, "depth"], True
        args.setdefault("tasks", list(tasks))
    transform = build_transform(cfg, train, hha=hha, drop_depth=drop_depth)
    return build_dataset(cfg.dataset, cfg.root, split, transform=transform, **args)


class DenseDataModule(L.LightningDataModule):
    """Train / val / test loaders of one dataset configuration (``hha``: samples carry the HHA of their depth)."""

    def __init__(
        self, cfg: DataConfig, *, seed: int = 0, tasks: Sequence[str] | None = None, hha: bool = False
    ) -> None:
        super().__init__()
        self.cfg, self.seed, self.tasks, self.hha = cfg, seed, tasks, hha
        self._datasets: dict[str, DenseDataset] = {}

    def dataset(self, split: str, train: bool = False) -> DenseDataset:
        key = f"{split}:{train}"
        if key not in self._datasets:
            self._datasets[key] = make_dataset(self.cfg, split, train=train, tasks=self.tasks, hha=self.hha)
        return self._datasets[key]

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return trainer.global_rank, trainer.world_size

    def _loader(self, split: str, train: bool) -> DataLoader:
        dataset = self.dataset(split, train)
        rank, world = self._rank_world()
        batch = self.cfg.batch_size if train else (self.cfg.val_batch_size or self.cfg.batch_size)
        sampler = EpochSampler(
            len(dataset), shuffle=train, seed=self.seed, rank=rank, world_size=world, drop_last=train
        )
        trainer = getattr(self, "trainer", None)
        if train and trainer is not None:
            # The module's own batch count (restored exactly on resume; Lightning's global_step counts every
            # optimiser step, twice per batch for a method with two optimisers).
            batches_per_epoch = max(len(sampler) // batch, 1)
            sampler.epoch_fn = lambda: trainer.lightning_module.batches // batches_per_epoch
            sampler.skip_fn = lambda: (trainer.lightning_module.batches % batches_per_epoch) * batch
        workers = self.cfg.num_workers
        return (StepResumableLoader if train else DataLoader)(
            SeededDataset(dataset, self.seed),
            batch_size=batch,
            sampler=sampler,
            collate_fn=collate,
            num_workers=workers,
            persistent_workers=workers > 0 and train,
            drop_last=train,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.cfg.train_split, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.cfg.val_split, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.cfg.test_split, False)
