"""PAP: Pattern-Affinitive Propagation across depth, surface normals and segmentation (Zhang et al., CVPR 2019).

The network of the paper's section 4 (Fig. 2):

1. a shared encoder; its features at every stride from the affinity scale s to 32 (the last convolutional
   features upsampled, and the multi-scale features, the "grey dots") are projected, resized to stride s
   and concatenated;
2. one task-specific network per task: a 1x1 fusion, two residual blocks -> task features F_t (2C
   channels) and, after a 3x3 convolution, the task's *initial prediction* (supervised);
3. the propagation (section 4.2-4.3, :class:`~tridense.layers.affinity.PatternAffinitivePropagation`): an
   affinity matrix per task from F_t, combined across tasks with learned weights (eq. 1), diffusing both the
   initial prediction and F_t of each task (eq. 2, 4). ``propagation`` swaps it for the baselines of Table 2
   in the same place: ``"cross_stitch"`` (Misra et al.), ``"cspn"`` (Cheng et al.) or ``"none"``;
4. the reconstruction network: per stage a shared and a task-specific up-projection block (Laina et al.),
   concatenated; after log2(s) - 1 stages a residual block and a convolution give the final prediction at
   half the input size, upsampled to the input. Without it (``reconstruction=False``, the first rows of
   Table 2) the final prediction is the (diffused) initial prediction, upsampled.

Outputs follow the model contract; ``aux["initial"]`` holds the initial predictions at stride s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import ConfigDict, Field, model_validator
from torch import nn

from tridense.data.sample import TASKS
from tridense.errors import ConfigError
from tridense.layers.affinity import INNER_PRODUCT, SIMILARITY_ALIASES, canonical_similarity
from tridense.layers.blocks import ConvBNReLU, ResidualBlock, UpProjection, upsample_to
from tridense.layers.propagation import PROPAGATIONS, Propagation, build_propagation
from tridense.models.encoder import Encoder, EncoderOptions
from tridense.models.heads import init_head
from tridense.models.registry import register_model
from tridense.tasks import activate, check_tasks, task_spec

AFFINITY_SCALES = (4, 8, 16)
#: Options of PAP's propagation that only ``propagation="pap"`` uses.
PAP_ONLY = (
    "similarity", "beta", "learn_beta", "subsample", "mode", "affinity_channels", "memory_budget_mb",
)  # fmt: skip
#: What the reconstruction network reads: the diffused features and the diffused initial prediction
#: (``"features_and_initial"``, the default), or the diffused features only, as the paper's Fig. 2.
RECON_INPUTS = ("features_and_initial", "features")


class TaskNetwork(nn.Module):
    """Fusion of the multi-scale encoder features, two residual blocks, and the initial prediction."""

    def __init__(self, in_channels: int, channels: int, out_channels: int, task: str) -> None:
        super().__init__()
        self.fuse = ConvBNReLU(in_channels, channels, kernel_size=1)
        self.blocks = nn.Sequential(ResidualBlock(channels), ResidualBlock(channels))
        self.initial = nn.Conv2d(channels, out_channels, 3, padding=1)
        init_head(self.initial, task)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.blocks(self.fuse(x))
        return features, self.initial(features)


class Reconstruction(nn.Module):
    """Per stage: shared and task-specific up-projection, concatenated; then a residual block and the head.

    The shared blocks are passed in (one set for all tasks), so their weights are shared across tasks.
    """

    def __init__(self, in_channels: int, channels: int, out_channels: int, stages: int, task: str) -> None:
        super().__init__()
        self.inp = ConvBNReLU(in_channels, channels, kernel_size=1)
        self.task_up = nn.ModuleList(UpProjection(channels, channels // 2) for _ in range(stages))
        self.refine = ResidualBlock(channels)
        self.head = nn.Conv2d(channels, out_channels, 3, padding=1)
        init_head(self.head, task)

    def forward(self, x: torch.Tensor, shared_up: nn.ModuleList) -> torch.Tensor:
        x = self.inp(x)
        for shared, own in zip(shared_up, self.task_up, strict=True):
            x = torch.cat([shared(x), own(x)], dim=1)  # (B, channels, 2h, 2w)
        return self.head(self.refine(x))


class PAPNet(nn.Module):
    """Pattern-Affinitive Propagation network (see the module docstring).

    Args:
        encoder: the shared backbone.
        tasks: tasks to predict (any non-empty subset; PAP combines the affinities of all of them).
        num_classes: segmentation classes.
        affinity_scale: stride s of the affinity matrices: 16, 8 or 4 (1/16, 1/8, 1/4 of the input).
        task_channels: width 2C of the task networks' features.
        affinity_channels: width C of the affinity embedding (default task_channels / 2).
        lateral_channels: width of each projected encoder level before fusion.
        propagation: ``"pap"``, ``"cross_stitch"``, ``"cspn"`` or ``"none"``.
        similarity, cross_task, iterations, beta, learn_beta, subsample, mode, memory_budget_mb: see
            :class:`~tridense.layers.affinity.PatternAffinitivePropagation` (``iterations`` and
            ``cross_task`` also drive CSPN: per-task kernels combined across tasks, or not).
        reconstruction: use the reconstruction network (else the diffused initial prediction is final).
        recon_input: :data:`RECON_INPUTS`: ``"features_and_initial"`` (default) or ``"features"`` (paper).
        recon_channels: width of the reconstruction network.
        min_depth: lower bound of predicted depth (metres).
    """

    def __init__(
        self,
        encoder: Encoder,
        *,
        tasks: Sequence[str] = TASKS,
        num_classes: int | None = None,
        affinity_scale: int = 8,
        task_channels: int = 64,
        affinity_channels: int | None = None,
        lateral_channels: int = 32,
        propagation: str = "pap",
        similarity: str = "dot",
        cross_task: bool = True,
        iterations: int = 4,
        beta: float = 0.05,
        learn_beta: bool = False,
        subsample: int = 2,
        mode: str = "auto",
        memory_budget_mb: float | None = None,
        reconstruction: bool = True,
        recon_input: str = "features_and_initial",
        recon_channels: int = 32,
        min_depth: float = 1e-3,
    ) -> None:
        super().__init__()
        self.tasks = check_tasks(tasks)
        if affinity_scale not in AFFINITY_SCALES:
            raise ConfigError(f"affinity_scale must be one of {AFFINITY_SCALES} (1/16, 1/8, 1/4), got {affinity_scale}")
        if propagation not in PROPAGATIONS:
            raise ConfigError(f"unknown propagation {propagation!r}; valid: {list(PROPAGATIONS)}")
        if propagation != "pap" and affinity_channels is not None:
            raise ConfigError(f"affinity_channels has no effect with propagation={propagation!r}")
        if recon_input not in RECON_INPUTS:
            raise ConfigError(f"unknown recon_input {recon_input!r}; valid: {list(RECON_INPUTS)}")
        self.encoder = encoder
        self.num_classes = num_classes
        self.affinity_scale = affinity_scale
        self.propagation = propagation
        self.min_depth = min_depth
        self.out_channels = {t: task_spec(t).channels(num_classes) for t in self.tasks}

        # Multi-scale fusion inputs: one level per stride from s to 32 (the deepest of each stride).
        by_stride: dict[int, int] = {}
        for i, r in enumerate(encoder.reductions):
            if affinity_scale <= r <= 32:
                by_stride[r] = i
        if affinity_scale not in by_stride:
            raise ConfigError(
                f"encoder {encoder.name} has no features at stride {affinity_scale}: {encoder.reductions}"
            )
        self.levels = [by_stride[r] for r in sorted(by_stride)]
        self.laterals = nn.ModuleList(nn.Conv2d(encoder.channels[i], lateral_channels, 1) for i in self.levels)
        fused = lateral_channels * len(self.levels)
        self.task_nets = nn.ModuleDict(
            {t: TaskNetwork(fused, task_channels, self.out_channels[t], t) for t in self.tasks}
        )

        options: dict[str, Any] = {}
        if propagation == "pap":
            options = {
                "affinity_channels": affinity_channels,
                "similarity": similarity,
                "cross_task": cross_task,
                "iterations": iterations,
                "beta": beta,
                "learn_beta": learn_beta,
                "subsample": subsample,
                "mode": mode,
                "memory_budget_mb": memory_budget_mb,
            }
        elif propagation == "cspn":
            options = {"iterations": iterations, "cross_task": cross_task}
        # Registered under its kind's name, so parameters are named ``pap.*``, ``cross_stitch.*``, ``cspn.*``.
        self.add_module(
            propagation, build_propagation(propagation, tasks=self.tasks, channels=task_channels, **options)
        )

        self.reconstruction, self.recon_input = reconstruction, recon_input
        if reconstruction:
            extra = {t: self.out_channels[t] if recon_input == "features_and_initial" else 0 for t in self.tasks}
            stages = int(math.log2(affinity_scale)) - 1
            self.shared_up = nn.ModuleList(UpProjection(recon_channels, recon_channels // 2) for _ in range(stages))
            self.recon = nn.ModuleDict(
                {
                    t: Reconstruction(task_channels + extra[t], recon_channels, self.out_channels[t], stages, t)
                    for t in self.tasks
                }
            )

    # ----------------------------------------------------------------------------------------------
    def task_features(self, image: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Task features F_t (B, 2C, h, w) and raw initial predictions at stride s."""
        feats = self.encoder(image)
        grid = feats[self.levels[0]].shape[-2:]
        multi = torch.cat(
            [upsample_to(lat(feats[i]), grid) for lat, i in zip(self.laterals, self.levels, strict=True)], dim=1
        )
        features, initial = {}, {}
        for task, net in self.task_nets.items():
            features[task], initial[task] = net(multi)
        return features, initial

    @property
    def propagator(self) -> Propagation:
        """The propagation block (:mod:`tridense.layers.propagation`), registered under its kind's name."""
        return getattr(self, self.propagation)

    def propagate(
        self, features: dict[str, torch.Tensor], initial: dict[str, torch.Tensor], iterations: int | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The cross-task / task-specific propagation (or the baseline in its place)."""
        return self.propagator.propagate(features, initial, iterations)

    def forward(self, image: torch.Tensor, iterations: int | None = None) -> dict[str, Any]:
        size = image.shape[-2:]
        features, initial = self.task_features(image)
        features, diffused = self.propagate(features, initial, iterations)
        out: dict[str, Any] = {
            "aux": {"initial": {t: activate(t, initial[t], min_depth=self.min_depth) for t in self.tasks}}
        }
        for task in self.tasks:
            if self.reconstruction:
                inputs = [features[task], diffused[task]] if self.recon_input == "features_and_initial" else [
                    features[task]
                ]
                raw = self.recon[task](torch.cat(inputs, dim=1), self.shared_up)  # (B, 2C [+ C_t], h, w)
            else:
                raw = diffused[task]
            out[task] = activate(task, upsample_to(raw, size), min_depth=self.min_depth)
        return out

    def set_iterations(self, iterations: int) -> None:
        """Change the diffusion steps T (e.g. at test time, the paper's Fig. 4); no-op without iterations."""
        self.propagator.set_iterations(iterations)

    @torch.no_grad()
    def affinity_maps(self, image: torch.Tensor, position: tuple[int, int]) -> dict[str, dict[str, torch.Tensor]]:
        """Affinity maps of the pixel at ``position`` (row, col of the input) for every task (Fig. 5).

        Returns {task: {"single": its own matrix's row, "combined": the cross-task row}}, each (h', w') on
        the key grid (stride s, times ``subsample``).
        """
        if self.propagation != "pap":
            raise ConfigError("affinity maps exist only for propagation='pap'")
        features, _ = self.task_features(image)
        h, w = features[self.tasks[0]].shape[-2:]
        row = min(int(position[0] * h / image.shape[-2]), h - 1)
        col = min(int(position[1] * w / image.shape[-1]), w - 1)
        feats = [features[t] for t in self.tasks]
        out = {}
        for i, task in enumerate(self.tasks):
            single, combined = self.pap.affinity_map(feats, i, (row, col))
            out[task] = {"single": single[0, i], "combined": combined[0]}
        return out


# ------------------------------------------------------------------------------------------ variants
class PAPNetOptions(EncoderOptions):
    """``model.args`` shared by every PAPNet variant (the architecture around the propagation)."""

    model_config = ConfigDict(extra="forbid")

    affinity_scale: Literal[4, 8, 16] = 8
    task_channels: int = Field(64, ge=2)
    lateral_channels: int = Field(32, ge=1)
    reconstruction: bool = True
    recon_input: Literal["features_and_initial", "features"] = "features_and_initial"
    recon_channels: int = Field(32, ge=2)
    min_depth: float = Field(1e-3, gt=0)


class CrossStitchOptions(PAPNetOptions):
    """``model.args`` of ``cross_stitch``: the architecture only (cross-stitch units do not iterate)."""


class CSPNOptions(PAPNetOptions):
    """``model.args`` of ``cspn``: the architecture, the diffusion steps and the cross-task kernel mixing."""

    iterations: int = Field(4, ge=0)
    cross_task: bool = True


class PAPOptions(CSPNOptions):
    """``model.args`` of ``pap`` and its fixed-encoder variants.

    ``propagation`` selects the block (Table 2's baselines in PAP's place); PAP's own options
    (:data:`PAP_ONLY`) are refused for the other kinds, and ``iterations`` / ``cross_task`` for
    ``cross_stitch`` / ``none``. ``similarity: l2`` is read as its exact name ``neg_sq_l2`` (with a
    FutureWarning); ``beta`` is the weight of the *diffused* signal in eq. 4 (0.05: the default reading of the
    paper's "trade-off parameter 0.05"; 0.95: the other reading), ``learn_beta`` learns one per task.
    """

    propagation: Literal["pap", "cross_stitch", "cspn", "none"] = "pap"
    similarity: Literal["dot", "neg_sq_l2", "neg_l2", "l1", "l2"] = "dot"
    cross_task: bool = True
    beta: float = Field(0.05, ge=0.0, le=1.0)
    learn_beta: bool = False
    subsample: int = Field(2, ge=1)
    mode: Literal["auto", "dense", "fused", "chunked"] = "auto"
    affinity_channels: int | None = Field(None, ge=1)
    memory_budget_mb: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _no_dead_keys(self) -> PAPOptions:
        given = self.model_fields_set
        if self.propagation != "pap":
            dead = sorted(given & set(PAP_ONLY))
            if self.propagation in ("cross_stitch", "none"):
                dead += sorted(given & {"iterations", "cross_task"})
            if dead:
                raise ValueError(
                    f"{dead} have no effect with propagation={self.propagation!r} "
                    f"({list(PAP_ONLY)} are PAP's; iterations and cross_task drive 'pap' and 'cspn')"
                )
        if self.similarity in SIMILARITY_ALIASES:
            self.similarity = canonical_similarity(self.similarity)
        if self.mode == "fused" and self.similarity not in INNER_PRODUCT:
            raise ValueError(
                f"mode 'fused' needs an inner-product similarity {list(INNER_PRODUCT)}, got {self.similarity!r}"
            )
        if self.learn_beta and not 0.0 < self.beta < 1.0:
            raise ValueError(f"learn_beta needs 0 < beta < 1, got beta={self.beta}")
        return self


#: Loss terms PAP is trained with unless a config names them: the initial predictions supervised like the
#: final ones (section 4.4) and the pair-wise affinity loss (eq. 5's ξ = 0.2, S = 300 pairs). The task terms
#: keep ``loss.weights`` (default 1 each: the ``"unit"`` weighting of :data:`LOSS_WEIGHTINGS`).
#: The pair-wise term is the *mean* over the S pairs (:func:`~tridense.losses.pairwise.pairwise_loss`), not
#: the paper's sum: at S = 300 it is 300 times smaller than the paper's term at the same ξ; nothing absorbs
#: that factor, so the paper's balance would need ξ = 60 on the mean. The configs keep ξ = 0.2 on the mean.
PAP_LOSS = {"aux_weights": {"initial": 1.0}, "extra": {"pairwise": {"weight": 0.2, "pairs": 300}}}
#: Named weightings λ of the task terms (``loss.weights``, applied to the final and the initial prediction):
#: ``"eq5"``: the paper's λ_i = 1/3 (eq. 5, section 5.1), which the PAP table configs under ``configs/pap``
#: use; ``"unit"``: 1, the built-in default (``loss.weights: {}``), which makes the pair-wise term three
#: times weaker relative to the task terms than eq. 5.
LOSS_WEIGHTINGS: dict[str, float] = {"eq5": 1.0 / 3.0, "unit": 1.0}


def task_loss_weights(weighting: str, tasks: Sequence[str]) -> dict[str, float]:
    """``loss.weights`` of the named ``weighting`` (:data:`LOSS_WEIGHTINGS`) for ``tasks``."""
    if weighting not in LOSS_WEIGHTINGS:
        raise ConfigError(f"unknown loss weighting {weighting!r}; valid: {list(LOSS_WEIGHTINGS)}")
    return {t: LOSS_WEIGHTINGS[weighting] for t in tasks}
#: Table 2's baselines keep PAP's training (the initial stage and the pair-wise term) to isolate the block.
PAP_VARIANT = {"aux_stages": ("initial",), "default_loss": PAP_LOSS}


def _pap(
    encoder: str,
    pretrained: bool | str,
    tasks: Sequence[str] | None,
    num_classes: int | None,
    encoder_args: dict[str, Any] | None = None,
    **args: Any,
) -> PAPNet:
    body = Encoder(encoder, pretrained=pretrained, **(encoder_args or {}))
    return PAPNet(body, tasks=TASKS if tasks is None else tasks, num_classes=num_classes, **args)


def _fixed_encoder(variant: str, expected: str, encoder: str) -> None:
    if encoder != expected:
        raise ConfigError(
            f"model {variant!r} has the {expected} encoder, got encoder={encoder!r}; "
            f"use model.name=pap with model.encoder={encoder} for another backbone"
        )


@register_model(options=PAPOptions, **PAP_VARIANT)
def pap(
    *,
    encoder: str = "resnet18",
    pretrained: bool | str = False,
    tasks: Sequence[str] | None = None,
    num_classes: int | None = None,
    **args: Any,
) -> PAPNet:
    """PAP network (affinity at 1/8, cross-task + task-specific propagation, reconstruction); any encoder."""
    return _pap(encoder, pretrained, tasks, num_classes, **args)


@register_model(options=PAPOptions, **PAP_VARIANT)
def pap_resnet18(
    *,
    encoder: str = "resnet18",
    pretrained: bool | str = False,
    tasks: Sequence[str] | None = None,
    num_classes: int | None = None,
    **args: Any,
) -> PAPNet:
    """PAP with a ResNet-18 encoder (the paper's ablation backbone)."""
    _fixed_encoder("pap_resnet18", "resnet18", encoder)
    return _pap(encoder, pretrained, tasks, num_classes, **args)


@register_model(options=PAPOptions, **PAP_VARIANT)
def pap_resnet50(
    *,
    encoder: str = "resnet50",
    pretrained: bool | str = False,
    tasks: Sequence[str] | None = None,
    num_classes: int | None = None,
    **args: Any,
) -> PAPNet:
    """PAP with a ResNet-50 encoder (the paper's comparison backbone)."""
    _fixed_encoder("pap_resnet50", "resnet50", encoder)
    return _pap(encoder, pretrained, tasks, num_classes, **args)


@register_model(options=PAPOptions, **PAP_VARIANT)
def pap_vgg16_bn(
    *,
    encoder: str = "vgg16_bn",
    pretrained: bool | str = False,
    tasks: Sequence[str] | None = None,
    num_classes: int | None = None,
    **args: Any,
) -> PAPNet:
    """PAP with a VGG-16-BN encoder (the paper's surface-normal comparison)."""
    _fixed_encoder("pap_vgg16_bn", "vgg16_bn", encoder)
    return _pap(encoder, pretrained, tasks, num_classes, **args)


@register_model(options=CrossStitchOptions, **PAP_VARIANT)
def cross_stitch(
    *,
    encoder: str = "resnet18",
    pretrained: bool | str = False,
    tasks: Sequence[str] | None = None,
    num_classes: int | None = None,
    **args: Any,
) -> PAPNet:
    """Baseline of PAP's Table 2: cross-stitch units in place of the affinity propagation."""
    return _pap(encoder, pretrained, tasks, num_classes, propagation="cross_stitch", **args)


@register_model(options=CSPNOptions, **PAP_VARIANT)
def cspn(
    *,
    encoder: str = "resnet18",
    pretrained: bool | str = False,
    tasks: Sequence[str] | None = None,
    num_classes: int | None = None,
    **args: Any,
) -> PAPNet:
    """Baseline of PAP's Table 2: convolutional spatial propagation (local) in place of PAP's."""
    return _pap(encoder, pretrained, tasks, num_classes, propagation="cspn", **args)
