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

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from tridense.errors import ConfigError
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
