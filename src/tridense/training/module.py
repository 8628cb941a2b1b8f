"""The LightningModule that trains and evaluates any model of the library on any dataset.

It owns the model, the multi-task loss and the metrics; optimisation follows :class:`OptimConfig` through
:mod:`tridense.training.optim` (parameter groups by name pattern, warm-up then poly, cosine or step decay per
step). The training method ``dense`` (the default): one optimiser, automatic optimisation; its step counting,
clipping and checkpoint entries come from :class:`~tridense.training.base.MethodModule`. A non-finite loss
term stops training with the term and the step named; the last good checkpoint is left as it was.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Self

import torch
from torch import nn

from tridense.errors import TridenseError
from tridense.inference import model_inputs
from tridense.layers.blocks import upsample_to
from tridense.losses.multitask import MultiTaskLoss
from tridense.metrics.multitask import TaskMetrics, flatten_results
from tridense.ops import unit_vectors
from tridense.training.base import MethodModule
from tridense.training.config import Config, EvalConfig, OptimConfig
from tridense.training.methods.registry import register_method
from tridense.training.optim import lr_factor

__all__ = ["SCORE_KEYS", "DenseModule", "TrainingDivergedError", "lr_factor", "outputs_at", "score"]

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


@register_method("dense")
class DenseModule(MethodModule):
    """Train / validate / test a dense prediction model (method ``dense``).

    Args:
        model: maps a normalised image batch to the model contract's dict.
        loss: the multi-task loss.
        tasks: tasks trained and evaluated.
        num_classes: segmentation classes.
        optim: optimiser and schedule settings.
        evaluation: metric settings (depth range, crop, reduction).
        info, seed, max_steps: see :class:`~tridense.training.base.MethodModule`; the gradient clipping is
            ``optim.grad_clip``.
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
        max_steps: int = -1,
    ) -> None:
        super().__init__(seed=seed, max_steps=max_steps, grad_clip=optim.grad_clip, info=info)
        self.model = model
        self.loss = loss
        self.tasks = tuple(tasks)
        self.optim_cfg = optim
        self.eval_cfg = evaluation

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
    ) -> Self:
        return cls(
            model,
            loss,
            tasks=tasks,
            num_classes=num_classes,
            optim=cfg.optim,
            evaluation=cfg.eval,
            info=info,
            seed=cfg.seed,
            max_steps=cfg.trainer.max_steps,
            **cls.method_arguments(cfg),
        )

    @classmethod
    def method_arguments(cls, cfg: Config) -> dict[str, Any]:
        """Constructor arguments of a subclass read from the config's method section (none for ``dense``)."""
        return {}

    def forward(self, image: torch.Tensor, **inputs: Any) -> dict[str, Any]:
        return self.model(image, **inputs)

    def run_model(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """The model on a batch: the image and the extra inputs it names (``batch_inputs``, e.g. GAD's ``hha``)."""
        return self.model(batch["image"], **model_inputs(self.model, batch))

    # ----------------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        self.seed_step()
        outputs = self.run_model(batch)
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
                f"non-finite loss at step {self.step} (epoch {self.current_epoch}): {detail}; training "
                "stopped, the last good checkpoint is untouched (lower the learning rate, enable gradient "
                "clipping, or check the data)"
            )

    def _evaluate(self, batch: dict[str, Any], metrics: TaskMetrics) -> None:
        outputs = self.run_model(batch)
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
    def configure_optimizers(self) -> dict[str, Any]:
        optimizer, scheduler = self.optimizer_and_scheduler(self.model.named_parameters(), self.optim_cfg)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
