"""PAP's pair-wise affinity loss (Zhang et al., CVPR 2019, section 4.4).

For S random pairs (i, j) of valid pixels per task and image, the distance between the two predictions
d̂_ij = ||ẑ_i - ẑ_j|| should equal the distance between the ground truths d_ij = ||z_i - z_j||:
L = mean over pairs of |d̂_ij - d_ij|. Values: depth in metres (scalar), unit normal vectors, and for
segmentation the class-probability vector of the prediction against the one-hot ground truth. The paper
writes a sum over the S pairs; the mean keeps the term's scale independent of S (with S = 300 the two
differ by a constant factor that the weight 0.2 absorbs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tridense.losses.functional import match_size
from tridense.losses.gad import SideOutputLoss
from tridense.losses.multitask import depth_mask, normals_mask, semseg_target
from tridense.ops import unit_vectors


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


class PairwiseLoss(nn.Module):
    """The pair-wise term of every task, each weighted by ``weight`` (PAP eq. 5: 0.2), named ``pairwise/<task>``."""

    def __init__(self, tasks: Sequence[str], *, weight: float = 0.2, pairs: int = 300) -> None:
        super().__init__()
        self.tasks, self.weight, self.pairs = tuple(tasks), float(weight), int(pairs)

    def forward(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        terms = {}
        for task in self.tasks:
            if task not in outputs or task not in batch:
                continue
            if task == "depth":
                pred, target, valid = (
                    match_size(outputs["depth"], batch["depth"]),
                    batch["depth"],
                    depth_mask(batch)[:, 0],
                )
            elif task == "normals":
                pred = match_size(outputs["normals"], batch["normals"])
                pred = unit_vectors(pred)
                target, valid = batch["normals"], normals_mask(batch)[:, 0]
            else:
                labels = semseg_target(batch)
                logits = match_size(outputs["semseg"], labels)
                pred = logits.softmax(dim=1)
                valid = labels != 255
                target = F.one_hot(torch.where(valid, labels, 0), pred.shape[1]).permute(0, 3, 1, 2).to(pred.dtype)
            terms[f"pairwise/{task}"] = self.weight * pairwise_loss(pred, target, valid, self.pairs)
        return terms


#: Extra loss terms a config can name under ``loss.extra`` (their options are keyword arguments).
EXTRA_LOSSES = {"pairwise": PairwiseLoss, "side": SideOutputLoss}
