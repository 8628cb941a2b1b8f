"""PAP's pair-wise affinity loss (Zhang et al., CVPR 2019, section 4.4).

For S random pairs (i, j) of valid pixels per task and image, the distance between the two predictions
d̂_ij = ||ẑ_i - ẑ_j|| should equal the distance between the ground truths d_ij = ||z_i - z_j||:
L = mean over pairs of |d̂_ij - d_ij|. Values: depth in metres (scalar), unit normal vectors, and for
segmentation the class-probability vector of the prediction against the one-hot ground truth
(:func:`tridense.tasks.task_maps`).

The paper writes a *sum* over the S pairs; this is the *mean*, which keeps the term's scale independent of
S but makes it S times smaller than the paper's term at the same weight: at S = 300 and ξ = 0.2 the
pair-wise gradient is 1/300 of the paper's relative to the task terms. The weight does not absorb that
factor (the paper's balance on the mean is ξ = 0.2 * S = 60); the configs keep 0.2 on the mean, a
deliberate, documented difference (docs/models.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tridense.losses.registry import register_extra_loss
from tridense.tasks import task_maps


def sample_pairs(valid: torch.Tensor, pairs: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
    """Indices (pairs, 2) of random pixel pairs among the flat ``valid`` (N,) positions, or None if < 2."""
    idx = valid.nonzero(as_tuple=True)[0]
    if idx.numel() < 2:
        return None
    pick = torch.randint(0, idx.numel(), (pairs, 2), device=idx.device, generator=generator)
    return idx[pick]  # (S, 2)


def pairwise_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    pairs: int = 300,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean over images and S pairs of | ||p_i - p_j|| - ||g_i - g_j|| |.

    Args:
        pred: (B, C, H, W) prediction values (depth, unit normals or class probabilities).
        target: (B, C, H, W) ground-truth values in the same space.
        valid: (B, H, W) pixels to draw from.
    """
    b = pred.shape[0]
    p = pred.flatten(2)  # (B, C, N)
    g = target.flatten(2)
    v = valid.flatten(1)  # (B, N)
    losses = []
    for k in range(b):
        ij = sample_pairs(v[k], pairs, generator)
        if ij is None:
            continue
        d_pred = (p[k][:, ij[:, 0]] - p[k][:, ij[:, 1]]).norm(dim=0)  # (S,)
        d_true = (g[k][:, ij[:, 0]] - g[k][:, ij[:, 1]]).norm(dim=0)
        losses.append((d_pred - d_true).abs().mean())
    if not losses:
        return pred.sum() * 0.0
    return torch.stack(losses).mean()


@register_extra_loss("pairwise")
class PairwiseLoss(nn.Module):
    """The pair-wise term of every task, each weighted by ``weight``, named ``pairwise/<task>``.

    ``weight`` multiplies the mean over the pairs (PAP's eq. 5 has ξ = 0.2 on the sum; see the module).
    """

    def __init__(self, tasks: Sequence[str], *, weight: float = 0.2, pairs: int = 300) -> None:
        super().__init__()
        self.tasks, self.weight, self.pairs = tuple(tasks), float(weight), int(pairs)

    def forward(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        terms = {}
        for task in self.tasks:
            if task not in outputs or task not in batch:
                continue
            pred, target, valid = task_maps(task, outputs, batch)
            terms[f"pairwise/{task}"] = self.weight * pairwise_loss(pred, target, valid, self.pairs)
        return terms
