"""Loss functions as pure functions of (prediction, target, mask).

Every function takes a boolean ``mask`` of the pixels that count (valid ground truth of samples that have the
task) and returns a scalar tensor. With an empty mask a loss returns a zero that is still connected to the
prediction's graph (so DDP sees every parameter used). No loss synchronises with the host (no ``mask.any()``,
no boolean indexing): masked values are replaced by zero and counts clamped, so CUDA work stays queued.
Predictions whose spatial size differs from the target are resized bilinearly to it first
(:func:`match_size`), as for the initial predictions of PAP.

Formulas (e = pred - target on valid pixels, means over valid pixels of the batch):

=================  ========================================================================================
berHu              |e| if |e| <= c else (e^2 + c^2) / (2c), c = 0.2 max|e| over the batch (Laina et al.)
l1                 mean |e|
silog              sqrt(mean(d^2) - lambda mean(d)^2), d = ln p - ln g (Eigen et al.; lambda = 0.85 as BTS)
normal l1          mean over pixels of sum_c |p_c - g_c| on unit predictions
normal cosine      mean (1 - <p, g>) on unit vectors
cross-entropy      mean over non-ignored pixels of -log p_c*
focal              mean of -(1 - p_c*)^gamma log p_c* (gamma = 2 in GAD eq. 6)
=================  ========================================================================================
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tridense.data.sample import IGNORE_INDEX
from tridense.ops import unit_vectors


def match_size(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Resize ``pred`` (B, C, h, w) bilinearly to the spatial size of ``target`` if they differ."""
    size = target.shape[-2:]
    if pred.shape[-2:] == size:
        return pred
    return F.interpolate(pred, size=size, mode="bilinear", align_corners=False)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``mask`` (broadcastable), or a graph-connected zero if the mask is empty.

    No host synchronisation: the count is clamped instead of tested, and masked-out values (which may be
    NaN or infinite, e.g. the log of an invalid depth) are replaced, not multiplied, by zero.
    """
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / mask.sum().clamp_min(1)


def berhu(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, threshold: float = 0.2) -> torch.Tensor:
    """Reverse Huber loss with c = ``threshold`` * max|e| over the valid pixels of the batch."""
    pred = match_size(pred, target)
    err = torch.where(mask, (pred - target).abs(), torch.zeros_like(pred))  # 0 off the mask: max is the valid max
    c = (threshold * err.max()).detach().clamp_min(1e-6)
    loss = torch.where(err <= c, err, (err * err + c * c) / (2 * c))
    return masked_mean(loss, mask)


def depth_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    pred = match_size(pred, target)
    return masked_mean((pred - target).abs(), mask)


def silog(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, lam: float = 0.85, eps: float = 1e-6
) -> torch.Tensor:
    """Scale-invariant log loss sqrt(mean(d^2) - lam * mean(d)^2), d = ln p - ln g over valid pixels."""
    pred = match_size(pred, target)
    d = torch.log(pred.clamp_min(eps)) - torch.log(target.clamp_min(eps))
    d = torch.where(mask, d, torch.zeros_like(d))
    count = mask.sum()
    n = count.clamp_min(1)
    value = torch.sqrt((d * d).sum() / n - lam * (d.sum() / n) ** 2 + eps)
    return torch.where(count > 0, value, value * 0.0)  # empty mask: a connected zero, without a sync


def normal_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over channels of |p - g| (p normalised to unit length), averaged over valid pixels; mask (B, 1, H, W)."""
    pred = unit_vectors(match_size(pred, target))
    return masked_mean((pred - target).abs().sum(dim=1, keepdim=True), mask)


def normal_cosine(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 - cos(angle) between unit prediction and target, averaged over valid pixels."""
    pred = unit_vectors(match_size(pred, target))
    return masked_mean(1.0 - (pred * target).sum(dim=1, keepdim=True), mask)


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pixel-wise cross-entropy averaged over non-ignored pixels (zero if there are none).

    With class ``weight`` the average is weighted as :func:`torch.nn.functional.cross_entropy`'s.
    """
    logits = match_size(logits, target)
    valid = target != ignore_index
    total = F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, reduction="sum")
    if weight is None:
        denom = valid.sum()
    else:
        safe = torch.where(valid, target, torch.zeros_like(target))
        denom = (weight.to(logits.dtype)[safe] * valid).sum()
    return total / torch.where(denom > 0, denom, torch.ones_like(denom))


def focal(
    logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Focal loss -(1 - p_c*)^gamma log p_c*, averaged over non-ignored pixels (GAD eq. 6 with gamma = 2)."""
    logits = match_size(logits, target)
    valid = target != ignore_index
    log_p = F.log_softmax(logits, dim=1)  # (B, C, H, W)
    safe = torch.where(valid, target, torch.zeros_like(target))
    log_pt = log_p.gather(1, safe[:, None])[:, 0]  # (B, H, W)
    loss = -((1.0 - log_pt.exp()) ** gamma) * log_pt
    return masked_mean(loss, valid)
