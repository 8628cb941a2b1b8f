"""Decoders and prediction heads shared by the models (the output activations live in :mod:`tridense.tasks`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tridense.layers.blocks import ConvBNReLU
from tridense.tasks import activate, task_spec

__all__ = ["FPNDecoder", "PredictionHead", "activate", "init_depth_bias", "init_head", "task_channels"]


def task_channels(task: str, num_classes: int | None) -> int:
    """Output channels of ``task``'s prediction (see :class:`tridense.tasks.TaskSpec`)."""
    return task_spec(task).channels(num_classes)


def init_depth_bias(conv: nn.Conv2d, depth: float = 2.5) -> None:
    """Start a depth head at ``depth`` metres (softplus^-1), so training does not begin far off scale."""
    if conv.bias is not None:
        nn.init.constant_(conv.bias, math.log(math.expm1(depth)))


def init_head(conv: nn.Conv2d, task: str) -> None:
    """Set the bias of ``task``'s last head convolution to the task's start (:attr:`TaskSpec.start_bias`)."""
    start = task_spec(task).start_bias
    if start is not None and conv.bias is not None:
        nn.init.constant_(conv.bias, start)


class PredictionHead(nn.Sequential):
    """3x3 conv-BN-ReLU then a 1x1 convolution to the task's channels."""

    def __init__(
        self, in_channels: int, out_channels: int, *, task: str | None = None, mid_channels: int | None = None
    ):
        mid = mid_channels or in_channels
        super().__init__(ConvBNReLU(in_channels, mid), nn.Conv2d(mid, out_channels, 1))
        if task is not None:
            init_head(self[-1], task)


class FPNDecoder(nn.Module):
    """Top-down fusion of multi-scale encoder features (a feature pyramid), output at ``out_reduction``.

    Every encoder level with stride in [out_reduction, 32] gets a 1x1 lateral projection to ``channels``;
    from the coarsest level down, the running map is upsampled, added to the lateral and refined by a 3x3
    conv-BN-ReLU.
    """

    def __init__(
        self, in_channels: Sequence[int], reductions: Sequence[int], channels: int = 64, out_reduction: int = 4
    ) -> None:
        super().__init__()
        self.levels = [i for i, r in enumerate(reductions) if out_reduction <= r <= 32]
        # Several levels can share a stride (VGG); keep the deepest of each.
        by_stride: dict[int, int] = {}
        for i in self.levels:
            by_stride[reductions[i]] = i
        self.levels = sorted(by_stride.values(), key=lambda i: -reductions[i])  # coarse -> fine
        if not self.levels:
            raise ValueError(f"no encoder level with stride in [{out_reduction}, 32]: {list(reductions)}")
        self.lateral = nn.ModuleList(nn.Conv2d(in_channels[i], channels, 1) for i in self.levels)
        self.refine = nn.ModuleList(ConvBNReLU(channels, channels) for _ in self.levels)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        x = None
        for level, lateral, refine in zip(self.levels, self.lateral, self.refine, strict=True):
            y = lateral(features[level])
            if x is not None:
                y = y + F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=False)
            x = refine(y)
        return x
