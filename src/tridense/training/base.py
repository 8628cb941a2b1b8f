"""What every training method shares: its own step and batch counters, the stop at ``max_steps``, gradient
clipping before each optimiser step, the clock of the time budget, and the checkpoint entries.

Lightning's ``trainer.global_step`` counts every ``optimizer.step()``: with two optimisers under manual
optimisation it advances twice per batch. Nothing in tridense reads it; the module counts:

* ``step``: optimisation steps of the method (automatic optimisation: one per optimiser step; manual: one per
  training batch, whatever number of optimisers the batch stepped),
* ``batches``: training batches seen.

Both are saved in checkpoints (``checkpoint["counters"]``) and restored on resume. They seed the randomness
of each step (:meth:`MethodModule.seed_step`), give the sampler its epoch (exact resume), name the panels, and
stop training at ``max_steps``: a manual-optimisation module sets ``trainer.should_stop`` when it has made
``max_steps`` steps (its Trainer gets no step limit, see :func:`tridense.training.run.build_trainer`); an
automatic one has one optimiser step per batch, so the Trainer's ``max_steps`` is the module's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from tridense.training.data import mix_seed
from tridense.training.optim import build_optimizer, build_scheduler, clip_grad_norm

if TYPE_CHECKING:
    from tridense.losses.multitask import MultiTaskLoss
    from tridense.training.config import Config, GroupConfig, OptimConfig


class MethodModule(L.LightningModule):
    """Base class of the training methods (see the module docstring).

    Args:
        seed: run seed (mixed with the step and the rank for each step's randomness).
        max_steps: optimisation steps to train (-1: no limit; the schedule then decays over the Trainer's
            estimate, or on the clock only).
        grad_clip: global gradient norm each optimiser's parameters are clipped to before its step (None: off).
        info: plain data stored in every checkpoint under ``"tridense"`` (config, class names, ...), so a
            checkpoint can be rebuilt without this code's objects (and loaded with ``weights_only=True``).
    """

    def __init__(
        self, *, seed: int = 0, max_steps: int = -1, grad_clip: float | None = None, info: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.seed, self.max_steps, self.grad_clip = seed, max_steps, grad_clip
        self.info = dict(info or {})
        self.step = 0
        self.batches = 0

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        *,
        model: nn.Module,
        loss: MultiTaskLoss,
        tasks: tuple[str, ...],
        num_classes: int | None,
        info: dict[str, Any],
    ) -> MethodModule:
        """Build the method for an experiment (the edge where the config's method section becomes arguments)."""
        raise NotImplementedError(f"{cls.__name__} must define from_config to be a registered training method")

    # ---------------------------------------------------------------------------------------------- counters
    def seed_step(self) -> None:
        """Seed the randomness of this step (e.g. PAP's random pixel pairs) with (seed, step, rank), so a
        resumed run draws exactly what the uninterrupted run drew."""
        torch.manual_seed(mix_seed(self.seed, self.step, self.global_rank))

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        self.step += 1  # automatic optimisation only: Lightning calls this once per optimiser step

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._batch_open = True

    def finish_batch(self) -> None:
        """Count the training batch that just ended (once per batch).

        Called by :meth:`on_train_batch_end`; Lightning runs the callbacks' ``on_train_batch_end`` before the
        module's, so a callback that saves a checkpoint there (``InterruptCheckpoint``) calls it first, and the
        checkpoint holds the counts of the step it was written at.
        """
        if not getattr(self, "_batch_open", False):
            return
        self._batch_open = False
        self.batches += 1
        if not self.automatic_optimization:
            self.step += 1
            if 0 < self.max_steps <= self.step:
                self.trainer.should_stop = True

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.finish_batch()

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip by global norm right before every optimiser step, under automatic and manual optimisation
        (after a grad scaler unscaled the gradients). Lightning's own clipping is not used: it refuses manual
        optimisation and fused optimisers under mixed precision, though without a grad scaler (32-bit, bf16,
        the only cases that use them) their gradients are the true ones."""
        clip_grad_norm(optimizer, self.grad_clip)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tridense"] = self.info
        checkpoint["counters"] = {"step": self.step, "batches": self.batches}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        counters = checkpoint.get("counters")
        if counters is None:  # written before the module counted (one optimiser: global_step is both counts)
            counters = {"step": checkpoint.get("global_step", 0), "batches": checkpoint.get("global_step", 0)}
        self.step, self.batches = int(counters["step"]), int(counters["batches"])

    # ---------------------------------------------------------------------------------------------- schedule
    def total_steps(self) -> float:
        """Steps the schedule decays over: ``max_steps``, else the Trainer's estimate (may be infinite)."""
        if self.max_steps > 0:
            return float(self.max_steps)
        return float(self.trainer.estimated_stepping_batches)

    def time_fraction(self, anneal_by_time: bool = True) -> Callable[[], float]:
        """Fraction of ``trainer.max_time`` spent so far (Lightning's Timer, which survives a resume), or 0."""
        timer = next((c for c in self.trainer.callbacks if isinstance(c, Timer)), None)
        if not anneal_by_time or timer is None:
            return lambda: 0.0
        if torch.are_deterministic_algorithms_enabled():  # trainer.deterministic
            rank_zero_warn("optim.anneal_by_time is ignored in deterministic mode: the schedule counts steps only")
            return lambda: 0.0

        def fraction() -> float:
            remaining = timer.time_remaining("train")
            elapsed = timer.time_elapsed("train")
            return elapsed / (elapsed + remaining) if remaining is not None and elapsed + remaining > 0 else 0.0

        return fraction

    def optimizer_and_scheduler(
        self,
        named_parameters: Iterable[tuple[str, nn.Parameter]],
        cfg: OptimConfig,
        groups: Mapping[str, GroupConfig] | None = None,
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        """An optimiser over ``named_parameters`` (in ``cfg.groups``, or ``groups``) and its schedule per step
        (``cfg``), for this trainer's precision, step budget and clock."""
        precision = str(self.trainer.precision)
        optimizer = build_optimizer(named_parameters, cfg, groups=groups, precision=precision)
        scheduler = build_scheduler(optimizer, cfg, self.total_steps(), self.time_fraction(cfg.anneal_by_time))
        return optimizer, scheduler
