"""Cross-stitch units (Misra et al., CVPR 2016): learned linear mixing of the tasks' feature maps."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class CrossStitch(nn.Module):
    """out_i = sum_k alpha_ik[c] * x_k for T tasks with equal shapes; alpha is per channel.

    Initialised to ``self_weight`` on the diagonal and (1 - self_weight) / (T - 1) elsewhere, as Misra et al.
    (0.9 / 0.1 for two tasks).
    """

    def __init__(self, num_tasks: int, channels: int, self_weight: float = 0.9) -> None:
        super().__init__()
        other = (1.0 - self_weight) / max(num_tasks - 1, 1)
        alpha = torch.full((num_tasks, num_tasks, channels), other)
        for i in range(num_tasks):
            alpha[i, i] = self_weight if num_tasks > 1 else 1.0
        self.alpha = nn.Parameter(alpha)  # (target, source, C)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        x = torch.stack(list(features), dim=1)  # (B, T, C, H, W)
        mixed = torch.einsum("tsc,bschw->btchw", self.alpha, x)
        return list(mixed.unbind(dim=1))
