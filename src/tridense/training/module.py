"""The LightningModule that trains and evaluates any model of the library on any dataset.

It owns the model, the multi-task loss and the metrics; optimisation follows :class:`OptimConfig`
(parameter groups encoder / rest, warm-up then poly, cosine or step decay per step). A non-finite loss term
stops training with the term and the step named; the last good checkpoint is left as it was.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from tridense.errors import TridenseError
from tridense.layers.blocks import upsample_to
from tridense.losses.multitask import MultiTaskLoss
from tridense.metrics.multitask import TaskMetrics, flatten_results
from tridense.ops import unit_vectors
from tridense.training.config import EvalConfig, OptimConfig
from tridense.training.data import mix_seed

#: Metric of each task whose mean is ``val/score`` (all higher-is-better, fractions).
SCORE_KEYS = {"depth": ("delta1", 1.0), "normals": ("within_22.5", 0.01), "semseg": ("miou", 1.0)}


class TrainingDivergedError(TridenseError, FloatingPointError):
    """A loss term became NaN or infinite."""


def score(results: Mapping[str, Mapping[str, Any]]) -> float:
    """Mean of delta1, within_22.5 / 100 and mIoU over the tasks present (higher is better)."""
    values = [results[t][k] * s for t, (k, s) in SCORE_KEYS.items() if t in results and k in results[t]]
    values = [v for v in values if math.isfinite(v)]
    return float(sum(values) / len(values)) if values else float("nan")


def outputs_at(outputs: Mapping[str, Any], size: torch.Size | tuple[int, int]) -> dict[str, torch.Tensor]:
    """Task outputs resized to the ground-truth size (normals renormalised)."""
    resized: dict[str, torch.Tensor] = {}
    for task in ("depth", "normals", "semseg"):
        if task in outputs:
            x = upsample_to(outputs[task].float(), size)
            if task == "normals":
                x = unit_vectors(x)
            resized[task] = x
    return resized


def lr_factor(step: int, total: int, cfg: OptimConfig, clock: float = 0.0) -> float:
    """Learning-rate multiplier at optimisation ``step`` of ``total``: linear warm-up, then the schedule.

    ``clock`` is the fraction of the time budget spent (0 when there is none); the decay's progress is the
    larger of it and the step fraction (``OptimConfig.anneal_by_time``).
    """
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "step":
        return cfg.gamma ** ((step - cfg.warmup_steps) // max(cfg.step_every, 1))
    span = max(total - cfg.warmup_steps, 1)
    progress = min(max((step - cfg.warmup_steps) / span, clock, 0.0), 1.0)
    floor = cfg.min_lr_ratio
    if cfg.schedule == "poly":
        return floor + (1 - floor) * (1 - progress) ** cfg.poly_power
    if cfg.schedule == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    raise ValueError(f"unknown schedule {cfg.schedule!r}; valid: constant, poly, step, cosine")


class DenseModule(L.LightningModule):
    """Train / validate / test a dense prediction model.

    Args:
        model: maps a normalised image batch to the model contract's dict.
        loss: the multi-task loss.
        tasks: tasks trained and evaluated.
        num_classes: segmentation classes.
        optim: optimiser and schedule settings.
        evaluation: metric settings (depth range, crop, reduction).
        info: plain data stored in every checkpoint under ``"tridense"`` (config, class names, ...), so a
            checkpoint can be rebuilt without this code's objects (and loaded with ``weights_only=True``).
    """

    def __init__(
        self,
        model: nn.Module,
        loss: MultiTaskLoss,
        *,
        tasks: Sequence[str],
        num_classes: int | None,
        optim: OptimConfig,
        evaluation: EvalConfig,
        info: dict[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.seed = seed
        self.model = model
        self.loss = loss
        self.tasks = tuple(tasks)
        self.optim_cfg = optim
        self.eval_cfg = evaluation
        self.info = dict(info or {})

        def metrics() -> TaskMetrics:
            return TaskMetrics(
                self.tasks,
                num_classes=num_classes,
                min_depth=evaluation.min_depth,
                max_depth=evaluation.max_depth,
                crop=evaluation.crop,
                reduction=evaluation.reduction,
                kitti=evaluation.kitti,
                protocol=evaluation.protocol,
            )

        self.val_metrics = metrics()
        self.test_metrics = metrics()
        self.test_results: dict[str, Any] = {}
        self.val_results: dict[str, Any] = {}

    def forward(self, image: torch.Tensor) -> dict[str, Any]:
        return self.model(image)

    # ----------------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        # Randomness inside a step (e.g. PAP's random pixel pairs) is a function of (seed, step, rank), so a
        # resumed run draws exactly what the uninterrupted run drew.
        torch.manual_seed(mix_seed(self.seed, self.global_step, self.global_rank))
        outputs = self.model(batch["image"])
        terms = self.loss(outputs, batch)
        self._check_finite(terms)
        bs = batch["image"].shape[0]
        for name, value in terms.items():
            self.log(f"train/{name}", value.detach(), batch_size=bs, prog_bar=name == "total")
        return terms["total"]

    def _check_finite(self, terms: Mapping[str, torch.Tensor]) -> None:
        bad = [name for name, value in terms.items() if not torch.isfinite(value.detach()).all()]
        flag = torch.tensor(float(bool(bad)), device=self.device)
        if self.trainer is not None and self.trainer.world_size > 1:
            flag = self.trainer.strategy.reduce(flag, reduce_op="sum")  # every process stops together
        if float(flag) > 0:
            detail = ", ".join(f"{n} = {float(terms[n].detach())}" for n in bad) or "on another process"
            raise TrainingDivergedError(
                f"non-finite loss at step {self.global_step} (epoch {self.current_epoch}): {detail}; training "
                "stopped, the last good checkpoint is untouched (lower the learning rate, enable gradient "
                "clipping, or check the data)"
            )

    def _evaluate(self, batch: dict[str, Any], metrics: TaskMetrics) -> None:
        outputs = self.model(batch["image"])
        metrics.update(outputs_at(outputs, batch["image"].shape[-2:]), batch)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics)

    def _finish(self, metrics: TaskMetrics, prefix: str) -> dict[str, Any]:
        results = metrics.compute()
        metrics.reset()
        flat = flatten_results(results)
        flat["score"] = score(results)
        self.log_dict({f"{prefix}/{k}": v for k, v in flat.items()}, sync_dist=False, rank_zero_only=False)
        return results

    def on_validation_epoch_end(self) -> None:
        self.val_results = self._finish(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        self.test_results = self._finish(self.test_metrics, "test")

    # ----------------------------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict[str, Any]]:
        """Trainable parameters split into the encoder (``encoder_lr``) and the rest (``lr``)."""
        cfg = self.optim_cfg
        encoder, rest = [], []
        for name, param in self.model.named_parameters():
            if param.requires_grad:
                (encoder if name.startswith("encoder.") else rest).append(param)
        groups = []
        if encoder:
            groups.append({"params": encoder, "lr": cfg.encoder_lr or cfg.lr, "name": "encoder"})
        if rest:
            groups.append({"params": rest, "lr": cfg.lr, "name": "decoder"})
        if not groups:
            raise TridenseError("every parameter is frozen: nothing to train (check init.freeze)")
        return groups

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: Any = None,
    ) -> None:
        """Clip by global norm here: Lightning refuses to for fused optimisers under mixed precision, though
        without a grad scaler (32-bit, bf16, the only cases that use them) the gradients are the true ones."""
        if gradient_clip_val:
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], gradient_clip_val)

    def _clock(self) -> Callable[[], float]:
        """Fraction of ``trainer.max_time`` spent so far (Lightning's Timer, which survives a resume), or 0."""
        timer = next((c for c in self.trainer.callbacks if isinstance(c, Timer)), None)
        if not self.optim_cfg.anneal_by_time or timer is None:
            return lambda: 0.0
        if torch.are_deterministic_algorithms_enabled():  # trainer.deterministic
            rank_zero_warn("optim.anneal_by_time is ignored in deterministic mode: the schedule counts steps only")
            return lambda: 0.0

        def fraction() -> float:
            remaining = timer.time_remaining("train")
            elapsed = timer.time_elapsed("train")
            return elapsed / (elapsed + remaining) if remaining is not None and elapsed + remaining > 0 else 0.0

        return fraction

    def configure_optimizers(self) -> dict[str, Any]:
        cfg = self.optim_cfg
        groups = self.parameter_groups()
        # The fused Adam kernels (CPU and CUDA) update every parameter in one pass (~10 % of a CPU step). With
        # fp16's grad scaler they would unscale internally, after clipping; so not there.
        fused = str(self.trainer.precision) != "16-mixed" and all(
            p.device.type in ("cpu", "cuda") for g in groups for p in g["params"]
        )
        if cfg.optimizer == "adam":
            opt = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
        elif cfg.optimizer == "adamw":
            opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused)
        elif cfg.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        else:
            raise ValueError(f"unknown optimizer {cfg.optimizer!r}; valid: adam, adamw, sgd")
        total = int(self.trainer.estimated_stepping_batches)
        clock = self._clock()
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, total, cfg, clock()))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ----------------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tridense"] = self.info
