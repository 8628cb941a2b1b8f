"""The ``adversarial`` training method: ASM (Hwang et al., 2019) and its baselines, in one module.

Any model of the library (or any ``nn.Module`` that follows the model contract) is the **predictor**; a
second network, the **critic**, is trained against it with its own optimiser, one update each per batch
(manual optimisation; the module counts one step per batch):

1. the predictor's forward pass;
2. the critic's update on the detached task maps (:func:`tridense.tasks.task_maps`: for segmentation the
   one-hot ground truth and, for ASM, the one-hot arg-max of the prediction; depth in log space; unit
   normals; several tasks side by side, valid where every task's ground truth is);
3. the predictor's update: ``supervised_weight`` x the pixel-wise losses (``loss`` section) plus the
   adversary's term.

``method.args.adversary`` selects the critic:

=========  ===================================================================================================
``asm``    the structure analyzer + regularizer (:class:`~tridense.models.asm.StructureAnalyzer`), minimising
           λ_adv 10^(-step/steps) x the margin (or unbounded) adversarial term + λ_rec x reconstruction; the
           predictor minimises ``matching_weight`` x Σ_l mean d_l(A(gt), A(softmax / maps of the prediction))
``gan``    an unconditional discriminator on the task maps (one logit per image); predictor: ``gan.weight``
           x the non-saturating GAN loss
``cgan``   the conditional PatchGAN on image + task maps
``none``   no critic: the pixel-wise losses only (IID), one optimiser
=========  ===================================================================================================

The paper's rows are settings of these options (``configs/asm/``): IID (``none``, supervised 1), GAN / cGAN
(supervised 1), ASM (supervised 0), IID+ASM (supervised 1), ASM w/o reconstruction
(``asm.reconstruction_weight: 0``), ASM w/o adversarial term (``asm.adversarial_weight: 0``).

Checkpoints hold the predictor as ``model.*`` and the critic as ``critic.analyzer.*`` or
``critic.discriminator.*``, both optimisers and schedules and the module's counters; evaluation, prediction
and export read the ``model.*`` weights only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from tridense.errors import ConfigError
from tridense.losses.asm import GANMatching, StructureMatching
from tridense.losses.multitask import MultiTaskLoss
from tridense.models.asm import PatchDiscriminator, StructureAnalyzer, analyzer_widths, parse_layers
from tridense.tasks import task_maps, task_spec
from tridense.training.config import Config, EvalConfig, OptimConfig, OptimizerName
from tridense.training.methods.registry import register_method
from tridense.training.module import DenseModule
from tridense.training.optim import clip_grad_norm

__all__ = [
    "AdversarialModule",
    "AdversarialOptions",
    "AnalyzerOptions",
    "AsmOptions",
    "CriticOptimOptions",
    "GanOptions",
    "TaskMapSet",
    "build_critic",
    "critic_optim_config",
    "structure_maps",
]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AnalyzerOptions(_Options):
    """The structure analyzer's shape (``method.args.asm.analyzer``)."""

    #: Convolutions, 2n - 1 for n levels: 5, 7 or 9 in the paper.
    layers: int = Field(9, ge=3)
    #: The n encoder widths (default: the authors' 32, 64, 128, 128, 128, truncated).
    widths: list[int] | None = None
    #: Channels of each task map's first convolution (default widths[0] // 2).
    stem_width: int | None = Field(None, ge=1)


class AsmOptions(_Options):
    """ASM's settings (``method.args.asm``)."""

    #: Analyzer layers of the structural distance: conv1, conv2, conv1-2 (the authors'), conv3, conv1-3, ...
    layers: str | list[str] = "conv1-2"
    #: The analyzer's adversarial term: ``margin`` (hinge at ``margin``, the authors') or ``unbounded`` (eq. 1).
    form: Literal["margin", "unbounded"] = "margin"
    margin: float = Field(0.8, gt=0)
    #: Weight of the predictor's matching loss.
    matching_weight: float = Field(1.0, ge=0)
    #: λ_adv of the analyzer's adversarial term (0: "ASM without adversarial term").
    adversarial_weight: float = Field(0.012, ge=0)
    #: Decay λ_adv tenfold over ``trainer.max_steps`` (10^(-step/steps)).
    decay: bool = True
    #: λ_rec of the structure regularizer (0: "ASM without reconstruction").
    reconstruction_weight: float = Field(1.0, ge=0)
    normal_reconstruction: Literal["cosine", "l2"] = "cosine"
    analyzer: AnalyzerOptions = Field(default_factory=AnalyzerOptions)


class GanOptions(_Options):
    """The GAN / cGAN baselines' discriminator (``method.args.gan``)."""

    #: Weight of the predictor's GAN loss.
    weight: float = Field(0.01, ge=0)
    width: int = Field(64, ge=1)
    num_layers: int = Field(3, ge=1)


class CriticOptimOptions(_Options):
    """The critic's optimiser (``method.args.critic_optim``); unset keys take the predictor's ``optim`` values.

    The schedule (warm-up, decay) is the predictor's. ``lr`` larger than ``optim.lr`` is an error (the paper:
    the analyzer's learning rate is no larger than the predictor's). ``grad_clip: 0`` switches clipping off.
    """

    optimizer: OptimizerName | None = None
    lr: float | None = Field(None, gt=0)
    momentum: float | None = None
    weight_decay: float | None = Field(None, ge=0)
    grad_clip: float | None = Field(None, ge=0)


class AdversarialOptions(_Options):
    """``method.args`` of the ``adversarial`` method."""

    #: The critic: ``asm``, ``gan``, ``cgan`` or ``none`` (IID).
    adversary: Literal["asm", "gan", "cgan", "none"] = "asm"
    #: Weight of the pixel-wise losses (the ``loss`` section) in the predictor's objective.
    supervised_weight: float = Field(0.0, ge=0)
    asm: AsmOptions = Field(default_factory=AsmOptions)
    gan: GanOptions = Field(default_factory=GanOptions)
    critic_optim: CriticOptimOptions = Field(default_factory=CriticOptimOptions)


def critic_optim_config(optim: OptimConfig, options: CriticOptimOptions) -> OptimConfig:
    """The critic's :class:`OptimConfig`: the predictor's, with the critic's keys, one parameter group."""
    if options.lr is not None and options.lr > optim.lr:
        raise ConfigError(
            f"method.args.critic_optim.lr: {options.lr} is larger than the predictor's optim.lr {optim.lr}; the "
            "critic's learning rate must be no larger (the paper's rule)"
        )
    update: dict[str, Any] = {"encoder_lr": None, "groups": {}}
    for key in ("optimizer", "lr", "momentum", "weight_decay"):
        value = getattr(options, key)
        if value is not None:
            update[key] = value
    if options.grad_clip is not None:
        update["grad_clip"] = options.grad_clip or None
    return optim.model_copy(update=update)


def build_critic(
    options: AdversarialOptions, tasks: Sequence[str], num_classes: int | None, decay_steps: int | None
) -> nn.Module | None:
    """The critic of ``options.adversary`` for ``tasks`` (None for ``none``)."""
    channels = [task_spec(t).channels(num_classes) for t in tasks]
    if options.adversary == "asm":
        asm = options.asm
        try:
            analyzer_widths(asm.analyzer.layers, asm.analyzer.widths)
            parse_layers(asm.layers, asm.analyzer.layers)
        except ConfigError as err:
            raise ConfigError(f"method.args.asm: {err}") from None
        analyzer = StructureAnalyzer(
            channels, layers=asm.analyzer.layers, widths=asm.analyzer.widths, stem_width=asm.analyzer.stem_width
        )
        return StructureMatching(
            analyzer,
            tasks,
            layers=asm.layers,
            form=asm.form,
            margin=asm.margin,
            adversarial_weight=asm.adversarial_weight,
            reconstruction_weight=asm.reconstruction_weight,
            decay_steps=decay_steps if asm.decay else None,
            normal_reconstruction=asm.normal_reconstruction,
        )
    if options.adversary in ("gan", "cgan"):
        conditional = options.adversary == "cgan"
        discriminator = PatchDiscriminator(
            sum(channels) + (3 if conditional else 0),
            width=options.gan.width,
            num_layers=options.gan.num_layers,
            global_pool=not conditional,
        )
        return GANMatching(discriminator, conditional=conditional)
    return None


@dataclass
class TaskMapSet:
    """The task maps of one batch in the critic's space (see :func:`structure_maps`)."""

    #: Ground truth per task (B, C_t, H, W).
    target: list[torch.Tensor]
    #: The prediction with its graph (softmax for segmentation).
    pred: list[torch.Tensor]
    #: The detached negative of ASM's analyzer (arg-max one-hot for segmentation).
    negative: list[torch.Tensor]
    #: (B, 1, H, W) bool, where every task's ground truth is valid.
    valid: torch.Tensor


def structure_maps(tasks: Sequence[str], outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> TaskMapSet:
    """Ground truth, prediction and negative task maps of ``tasks`` (depth in log space), side by side."""
    target, pred, negative, valid = [], [], [], None
    for task in tasks:
        p, t, v = task_maps(task, outputs, batch, space="log")
        n = task_maps(task, outputs, batch, space="log", binarize=True)[0] if task == "semseg" else p
        target.append(t)
        pred.append(p)
        negative.append(n.detach())
        valid = v if valid is None else valid & v
    assert valid is not None
    return TaskMapSet(target, pred, negative, valid[:, None])


@register_method("adversarial", options=AdversarialOptions)
class AdversarialModule(DenseModule):
    """Predictor and critic in a minimax (method ``adversarial``; see the module docstring).

    Args:
        model: the predictor (model contract).
        loss: the pixel-wise multi-task loss (weighted by ``options.supervised_weight``).
        tasks: tasks trained and evaluated (and the critic's inputs, in this order).
        num_classes: segmentation classes.
        options: the method's options.
        optim: the predictor's optimiser and schedule (the critic's derive from it, :func:`critic_optim_config`).
        evaluation, info, seed, max_steps: see :class:`~tridense.training.module.DenseModule`.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: MultiTaskLoss,
        *,
        tasks: Sequence[str],
        num_classes: int | None,
        options: AdversarialOptions,
        optim: OptimConfig,
        evaluation: EvalConfig,
        info: dict[str, Any] | None = None,
        seed: int = 0,
        max_steps: int = -1,
    ) -> None:
        super().__init__(
            model,
            loss,
            tasks=tasks,
            num_classes=num_classes,
            optim=optim,
            evaluation=evaluation,
            info=info,
            seed=seed,
            max_steps=max_steps,
        )
        if options.adversary == "none" and options.supervised_weight == 0:
            raise ConfigError("method.args: adversary 'none' with supervised_weight 0 trains nothing; set one")
        self.automatic_optimization = False
        self.options = options
        self.critic_optim_cfg = critic_optim_config(optim, options.critic_optim)
        self.critic = build_critic(options, self.tasks, num_classes, max_steps if max_steps > 0 else None)

    @classmethod
    def method_arguments(cls, cfg: Config) -> dict[str, Any]:
        return {"options": AdversarialOptions(**cfg.method.args)}

    # ----------------------------------------------------------------------------------------------
    def configure_optimizers(self) -> list[dict[str, Any]]:
        pairs = [self.optimizer_and_scheduler(self.model.named_parameters(), self.optim_cfg)]
        if self.critic is not None:
            decays = isinstance(self.critic, StructureMatching) and self.options.asm.decay
            if decays and self.critic.decay_steps is None:
                total = self.total_steps()  # no max_steps: decay over the Trainer's estimate when finite
                if total != float("inf"):
                    self.critic.decay_steps = max(1, int(total))
            pairs.append(self.optimizer_and_scheduler(self.critic.named_parameters(), self.critic_optim_cfg))
        return [{"optimizer": opt, "lr_scheduler": {"scheduler": sch, "interval": "step"}} for opt, sch in pairs]

    def _optimizers(self) -> tuple[list[Any], list[Any]]:
        optimizers, schedulers = self.optimizers(), self.lr_schedulers()
        as_list = lambda x: list(x) if isinstance(x, list | tuple) else [x]  # noqa: E731
        return as_list(optimizers), as_list(schedulers)

    def critic_loss(self, maps: TaskMapSet, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the critic minimises on this batch (analyzer or discriminator)."""
        if isinstance(self.critic, StructureMatching):
            return self.critic.analyzer_loss(maps.target, maps.negative, maps.valid, self.step)
        assert isinstance(self.critic, GANMatching)
        return self.critic.discriminator_loss(maps.target, maps.pred, maps.valid, image)

    def predictor_loss(
        self, outputs: Mapping[str, Any], batch: Mapping[str, Any], maps: TaskMapSet | None
    ) -> dict[str, torch.Tensor]:
        """What the predictor minimises: supervised_weight x pixel-wise losses + the adversary's term."""
        terms: dict[str, torch.Tensor] = {}
        total = batch["image"].new_zeros(())
        if self.options.supervised_weight > 0:
            supervised = self.loss(outputs, batch)
            terms.update({f"supervised/{k}": v for k, v in supervised.items()})
            total = total + self.options.supervised_weight * supervised["total"]
        if isinstance(self.critic, StructureMatching):
            assert maps is not None
            matching = self.critic.predictor_loss(maps.target, maps.pred, maps.valid)
            terms.update({f"asm/{k}": v for k, v in matching.items() if k != "total"})
            terms["asm/matching"] = matching["total"]
            total = total + self.options.asm.matching_weight * matching["total"]
        elif isinstance(self.critic, GANMatching):
            assert maps is not None
            adversarial = self.critic.predictor_loss(maps.pred, maps.valid, batch["image"])["total"]
            terms["gan/predictor"] = adversarial
            total = total + self.options.gan.weight * adversarial
        terms["total"] = total
        return terms

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.seed_step()
        optimizers, schedulers = self._optimizers()
        outputs = self.run_model(batch)
        maps = structure_maps(self.tasks, outputs, batch) if self.critic is not None else None
        logs: dict[str, torch.Tensor] = {}
        if self.critic is not None:
            assert maps is not None
            critic_terms = self.critic_loss(maps, batch["image"])
            self._check_finite({f"critic/{k}": v for k, v in critic_terms.items()})
            optimizers[1].zero_grad()
            self.manual_backward(critic_terms["total"])
            optimizers[1].step()
            schedulers[1].step()
            logs.update({f"critic/{k}": v.detach() for k, v in critic_terms.items()})
        terms = self.predictor_loss(outputs, batch, maps)
        self._check_finite(terms)
        optimizers[0].zero_grad()
        self.manual_backward(terms["total"])
        optimizers[0].step()
        schedulers[0].step()
        logs.update({k: v.detach() for k, v in terms.items()})
        bs = batch["image"].shape[0]
        for name, value in logs.items():
            self.log(f"train/{name}", value.float(), batch_size=bs, prog_bar=name == "total")

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip each optimiser by its own setting: ``optim.grad_clip`` or ``critic_optim.grad_clip``."""
        optimizers = self._optimizers()[0]
        if len(optimizers) > 1 and optimizer is optimizers[1].optimizer:
            clip_grad_norm(optimizer, self.critic_optim_cfg.grad_clip)
        else:
            super().on_before_optimizer_step(optimizer)
