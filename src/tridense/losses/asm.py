"""The losses of ASM (Hwang et al., 2019) and of its GAN / cGAN baselines, as pure functions.

Structural distance (eq. 1) on L2-normalised analyzer features f (see :class:`~tridense.models.asm.
StructureAnalyzer`): per pixel of layer l, d_l = Σ_c (f_gt - f_x)^2 (in [0, 4]); then

=====================  =======================================================================================
predictor (matching)   Σ_l mean_pixels d_l(gt, prediction)          minimised by the predictor
analyzer, ``margin``   Σ_l mean_pixels max(0, m - d_l(gt, negative)), m = 0.8      minimised by the analyzer
analyzer, ``unbounded``  - Σ_l mean_pixels d_l(gt, negative)        (eq. 1 as written: maximise the distance)
=====================  =======================================================================================

The authors' code takes means over every pixel of the layer (invalid ones have zero features on both
sides, so they add zero distance). For segmentation the analyzer's "negative" is the binarised (arg-max
one-hot) prediction, the predictor's input the softmax. The analyzer's adversarial term is weighted by
λ_adv · 10^(-step / steps) (from 1 to 0.1 over training, :func:`adversarial_weight`).

Reconstruction (eq. 4, the structure regularizer, minimised by the analyzer with weight λ_rec), on the
regularizer's raw output against the ground-truth task map in the analyzer's input space: segmentation
cross-entropy against the one-hot map; depth L2; normals negative cosine (the authors') or the L2 distance
of the normalised output (``l2``).

GAN losses (the baselines): the discriminator minimises BCE(real -> 1, fake -> 0); the predictor the
non-saturating BCE(fake -> 1).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from tridense.errors import ConfigError
from tridense.models.asm import parse_layers
from tridense.ops import unit_vectors

ADVERSARIAL_FORMS: tuple[str, ...] = ("margin", "unbounded")
NORMAL_RECONSTRUCTIONS: tuple[str, ...] = ("cosine", "l2")
DEFAULT_MARGIN = 0.8


def feature_distance(f_a: torch.Tensor, f_b: torch.Tensor) -> torch.Tensor:
    """Per-pixel squared distance Σ_c (f_a - f_b)^2 of two (B, C, H, W) feature maps -> (B, H, W)."""
    if f_a.shape != f_b.shape:
        raise ValueError(f"feature maps differ in shape: {tuple(f_a.shape)} vs {tuple(f_b.shape)}")
    return (f_a - f_b).square().sum(dim=1)


def layer_distances(
    features_a: Mapping[str, torch.Tensor], features_b: Mapping[str, torch.Tensor], layers: Sequence[str]
) -> dict[str, torch.Tensor]:
    """Per-pixel distance maps (B, H_l, W_l) of the chosen layers."""
    missing = [name for name in layers if name not in features_a or name not in features_b]
    if missing:
        raise ValueError(f"analyzer features lack layers {missing}; computed: {sorted(features_a)}")
    return {name: feature_distance(features_a[name], features_b[name]) for name in layers}


def matching_loss(distances: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The predictor's ASM loss: Σ_l mean over pixels of d_l(gt, prediction)."""
    if not distances:
        raise ValueError("matching_loss needs at least one layer")
    return torch.stack([d.mean() for d in distances.values()]).sum()


def analyzer_adversarial_loss(
    distances: Mapping[str, torch.Tensor],
    form: Literal["margin", "unbounded"] = "margin",
    margin: float = DEFAULT_MARGIN,
) -> torch.Tensor:
    """The analyzer's adversarial term, to be *minimised* (it maximises the distance to the negative).

    Args:
        distances: d_l(gt, negative) maps per layer.
        form: ``margin`` Σ_l mean max(0, m - d_l) (the authors' code, the default) or ``unbounded``
            -Σ_l mean d_l (eq. 1).
        margin: m of the hinge (0.8 in the authors' code).
    """
    if form not in ADVERSARIAL_FORMS:
        raise ConfigError(f"unknown adversarial form {form!r}; valid: {list(ADVERSARIAL_FORMS)}")
    if not distances:
        raise ValueError("analyzer_adversarial_loss needs at least one layer")
    if form == "margin":
        return torch.stack([F.relu(margin - d).mean() for d in distances.values()]).sum()
    return -torch.stack([d.mean() for d in distances.values()]).sum()


def adversarial_weight(step: int, steps: int, base: float = 10.0) -> float:
    """The decay of the analyzer's adversarial weight: base^(-step / steps), 1 at step 0, 1/base at the end."""
    if steps < 1:
        raise ConfigError(f"adversarial weight decay needs steps >= 1, got {steps}")
    return float(base ** (-min(max(step, 0), steps) / steps))


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of (B, H, W) values over a (B, H, W) mask; a graph-connected zero if empty."""
    count = valid.sum()
    if count == 0:
        return values.sum() * 0.0
    return (values * valid).sum() / count


def reconstruction_loss(
    task: str,
    reconstruction: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    *,
    normals: Literal["cosine", "l2"] = "cosine",
) -> torch.Tensor:
    """The structure regularizer's loss for one task.

    Args:
        task: ``semseg``, ``depth`` or ``normals``.
        reconstruction: the regularizer's raw output for this task (B, C, H, W).
        target: the ground-truth task map in the analyzer's space (one-hot, log-depth or metres, unit normals).
        valid: (B, H, W) or (B, 1, H, W) bool, the valid ground-truth pixels.
        normals: ``cosine`` (negative cosine, the authors') or ``l2`` (squared distance after normalising).
    """
    if reconstruction.shape != target.shape:
        raise ValueError(f"reconstruction {tuple(reconstruction.shape)} and target {tuple(target.shape)} differ")
    valid = valid[:, 0] if valid.ndim == 4 else valid
    if task == "semseg":
        per_pixel = -(target * F.log_softmax(reconstruction, dim=1)).sum(dim=1)  # (B, H, W)
    elif task == "depth":
        per_pixel = (reconstruction - target).square().sum(dim=1)
    elif task == "normals":
        if normals not in NORMAL_RECONSTRUCTIONS:
            raise ConfigError(f"unknown normal reconstruction loss {normals!r}; valid: {list(NORMAL_RECONSTRUCTIONS)}")
        unit = unit_vectors(reconstruction, dim=1)
        per_pixel = -(unit * target).sum(dim=1) if normals == "cosine" else (unit - target).square().sum(dim=1)
    else:
        raise ConfigError(f"no reconstruction loss for task {task!r}; valid: ['depth', 'normals', 'semseg']")
    return _masked_mean(per_pixel, valid)


def gan_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """BCE of the discriminator: real -> 1, fake -> 0 (fake logits of detached predictions)."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def gan_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating BCE of the predictor: its outputs should be judged real."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Switch off ``requires_grad`` of ``module``'s parameters inside the block (restored after)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class StructureMatching(nn.Module):
    """ASM's two objectives around one :class:`~tridense.models.asm.StructureAnalyzer`.

    Task maps are given per task in the order of ``tasks`` (the analyzer's ``in_channels``), in the
    analyzer's space (one-hot / softmax segmentation, log-depth, unit normals), with the ground truth's
    validity (B, 1, H, W).

    Args:
        analyzer: the structure analyzer (with its regularizer).
        tasks: the task of each analyzer input.
        layers: the layer set of the structural distance (``conv1-2`` by default, the authors').
        form: the analyzer's adversarial term, ``margin`` (default) or ``unbounded``.
        margin: m of the margin form.
        adversarial_weight: λ_adv of the analyzer's adversarial term (0: "ASM without adversarial term":
            the analyzer is only an autoencoder of the ground truth).
        reconstruction_weight: λ_rec of the regularizer (0: "ASM without reconstruction").
        decay_steps: steps of the 10^(-step / steps) decay of λ_adv (None: no decay).
        normal_reconstruction: ``cosine`` or ``l2``.
    """

    def __init__(
        self,
        analyzer: nn.Module,
        tasks: Sequence[str],
        *,
        layers: str | Sequence[str] = "conv1-2",
        form: Literal["margin", "unbounded"] = "margin",
        margin: float = DEFAULT_MARGIN,
        adversarial_weight: float = 1.0,
        reconstruction_weight: float = 1.0,
        decay_steps: int | None = None,
        normal_reconstruction: Literal["cosine", "l2"] = "cosine",
    ) -> None:
        super().__init__()
        self.analyzer, self.tasks = analyzer, tuple(tasks)
        if len(self.tasks) != len(analyzer.in_channels):
            raise ConfigError(f"the analyzer takes {len(analyzer.in_channels)} task maps, got tasks {list(tasks)}")
        if form not in ADVERSARIAL_FORMS:
            raise ConfigError(f"unknown adversarial form {form!r}; valid: {list(ADVERSARIAL_FORMS)}")
        if adversarial_weight < 0 or reconstruction_weight < 0:
            raise ConfigError("adversarial_weight and reconstruction_weight must be >= 0")
        self.layers = parse_layers(layers, analyzer.num_layers)
        self.form, self.margin = form, margin
        self.adversarial_weight, self.reconstruction_weight = adversarial_weight, reconstruction_weight
        self.decay_steps, self.normal_reconstruction = decay_steps, normal_reconstruction

    def weight(self, step: int) -> float:
        """λ_adv at ``step`` (decayed tenfold over ``decay_steps`` if set)."""
        if self.decay_steps is None:
            return self.adversarial_weight
        return self.adversarial_weight * adversarial_weight(step, self.decay_steps)

    def analyzer_loss(
        self, gt_maps: Sequence[torch.Tensor], negative_maps: Sequence[torch.Tensor], valid: torch.Tensor, step: int
    ) -> dict[str, torch.Tensor]:
        """What the analyzer minimises: λ_adv(step) x adversarial term + λ_rec x Σ_t reconstruction.

        ``negative_maps`` must be detached (binarised for segmentation). Returns ``total``, ``adversarial``
        (unweighted), ``reconstruction/<task>`` (unweighted) and ``adversarial_weight``.
        """
        negative_maps = [m.detach() for m in negative_maps]
        reconstruct = self.reconstruction_weight > 0
        use_adversarial = self.adversarial_weight > 0
        gt = self.analyzer(gt_maps, valid, layers=self.layers if use_adversarial else [], reconstruct=reconstruct)
        out: dict[str, torch.Tensor] = {}
        total = gt_maps[0].new_zeros(())
        if use_adversarial:
            neg = self.analyzer(negative_maps, valid, layers=self.layers, reconstruct=False)
            out["adversarial"] = analyzer_adversarial_loss(
                layer_distances(gt.features, neg.features, self.layers), self.form, self.margin
            )
            weight = self.weight(step)
            out["adversarial_weight"] = torch.tensor(weight)
            total = total + weight * out["adversarial"]
        if reconstruct:
            channels = [m.shape[1] for m in gt_maps]
            for task, rec, target in zip(
                self.tasks, torch.split(gt.reconstruction, channels, dim=1), gt_maps, strict=True
            ):
                loss = reconstruction_loss(task, rec, target, valid, normals=self.normal_reconstruction)
                out[f"reconstruction/{task}"] = loss
                total = total + self.reconstruction_weight * loss
        out["total"] = total
        return out

    def predictor_loss(
        self, gt_maps: Sequence[torch.Tensor], pred_maps: Sequence[torch.Tensor], valid: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """What the predictor minimises: Σ_l mean d_l(A(gt), A(pred)); the analyzer is not trained by it.

        Returns ``total`` and ``match/<layer>``; gradients reach ``pred_maps`` only.
        """
        with frozen(self.analyzer):
            with torch.no_grad():
                gt = self.analyzer(gt_maps, valid, layers=self.layers, reconstruct=False)
            pred = self.analyzer(pred_maps, valid, layers=self.layers, reconstruct=False)
        distances = layer_distances(gt.features, pred.features, self.layers)
        out = {f"match/{name}": d.mean() for name, d in distances.items()}
        out["total"] = matching_loss(distances)
        return out


class GANMatching(nn.Module):
    """The GAN (unconditional) and cGAN (conditional) baselines' two objectives around one discriminator.

    The discriminator sees the task maps side by side (``conditional``: after the image), real = ground
    truth, fake = the detached prediction; invalid ground-truth pixels are zeroed in both, so the
    discriminator cannot tell them apart by the holes alone.

    Args:
        discriminator: a :class:`~tridense.models.asm.PatchDiscriminator` (or any map -> logits module).
        conditional: concatenate the image in front of the maps (cGAN).
    """

    def __init__(self, discriminator: nn.Module, *, conditional: bool) -> None:
        super().__init__()
        self.discriminator, self.conditional = discriminator, conditional

    def _input(self, maps: Sequence[torch.Tensor], valid: torch.Tensor, image: torch.Tensor | None) -> torch.Tensor:
        x = torch.cat(list(maps), dim=1) * valid  # (B, ΣC, H, W)
        if self.conditional:
            if image is None:
                raise ValueError("the conditional discriminator needs the image")
            x = torch.cat([image, x], dim=1)  # (B, 3 + ΣC, H, W)
        return x

    def discriminator_loss(
        self,
        gt_maps: Sequence[torch.Tensor],
        pred_maps: Sequence[torch.Tensor],
        valid: torch.Tensor,
        image: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """BCE of real (ground truth) vs fake (detached prediction): ``total``."""
        real = self.discriminator(self._input(gt_maps, valid, image))
        fake = self.discriminator(self._input([m.detach() for m in pred_maps], valid, image))
        return {"total": gan_discriminator_loss(real, fake)}

    def predictor_loss(
        self, pred_maps: Sequence[torch.Tensor], valid: torch.Tensor, image: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Non-saturating generator loss through a frozen discriminator: ``total``."""
        with frozen(self.discriminator):
            fake = self.discriminator(self._input(pred_maps, valid, image))
        return {"total": gan_generator_loss(fake)}
