"""Convolutional spatial propagation (Cheng et al., ECCV 2018): local, learned, iterative diffusion.

:class:`SpatialPropagation` is one task's CSPN; :func:`combine_kernels` mixes the normalised kernels of T
tasks with convex weights, the local analogue of PAP's eq. 1 (``K̂_i = sum_k a_ik K_k``), so that the CSPN
baseline of PAP's Table 2 also "fuses and interacts cross-task information".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def propagate(kernel: torch.Tensor, h0: torch.Tensor, iterations: int) -> torch.Tensor:
    """``H^{t+1}_i = k_ii H^0_i + sum_{j in N(i)} k_ij H^t_j``, ``iterations`` times.

    Args:
        kernel: (B, 9, H, W) weights of the 3x3 neighbourhood, the centre k_ii at index 4.
        h0: (B, C, H, W) the signal.
    """
    b, c, h, w = h0.shape
    centre = kernel[:, 4:5]  # (B, 1, H, W)
    neighbours = kernel.clone()
    neighbours[:, 4] = 0.0
    out = h0
    for _ in range(iterations):
        patches = F.unfold(out, 3, padding=1).view(b, c, 9, h, w)  # (B, C, 9, H, W)
        out = centre * h0 + (patches * neighbours[:, None]).sum(dim=2)
    return out


def combine_kernels(weights: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Cross-task kernels ``K̂_i = sum_k a_ik K_k``: (T, T) convex weights [target, source] x (B, T, 9, H, W).

    Stability is kept: with rows of ``weights`` non-negative and summing to one, the neighbours of K̂_i have
    ``sum_j |k̂_ij| <= sum_k a_ik sum_j |k_kj| <= 1`` and its centre is ``1 - sum_j k̂_ij`` like every K_k's.
    """
    return torch.einsum("ik,bkjhw->bijhw", weights.to(kernels.dtype), kernels)  # (B, T, 9, H, W)


class SpatialPropagation(nn.Module):
    """CSPN with a 3x3 kernel: H^{t+1}_i = k_ii H^0_i + sum_{j in N(i)} k_ij H^t_j.

    The 8 neighbour affinities come from a 3x3 convolution of the guidance features, normalised so that
    sum_j |k_ij| <= 1 (k_ij = a_ij / sum_j |a_ij|), and k_ii = 1 - sum_j k_ij, which makes the propagation
    stable (Cheng et al., eq. 2-3).
    """

    def __init__(self, guidance_channels: int, iterations: int = 4) -> None:
        super().__init__()
        self.affinity = nn.Conv2d(guidance_channels, 8, 3, padding=1)
        self.iterations = iterations

    def kernel(self, guidance: torch.Tensor) -> torch.Tensor:
        """(B, 9, H, W) propagation weights, the centre at index 4."""
        a = self.affinity(guidance)  # (B, 8, H, W)
        a = a / a.abs().sum(dim=1, keepdim=True).clamp_min(1e-6)
        centre = 1.0 - a.sum(dim=1, keepdim=True)
        return torch.cat([a[:, :4], centre, a[:, 4:]], dim=1)

    def forward(self, guidance: torch.Tensor, h0: torch.Tensor, iterations: int | None = None) -> torch.Tensor:
        steps = self.iterations if iterations is None else iterations
        return propagate(self.kernel(guidance), h0, steps)
