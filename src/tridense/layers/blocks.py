"""Convolutional building blocks shared by every decoder of the library."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Sequential):
    """k x k convolution (no bias), batch norm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class ResidualBlock(nn.Module):
    """A basic residual block (two 3x3 convolutions) with a 1x1 projection when the width changes."""

    def __init__(self, in_channels: int, out_channels: int | None = None) -> None:
        super().__init__()
        out_channels = out_channels or in_channels
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x), inplace=True)


def unpool2x(x: torch.Tensor) -> torch.Tensor:
    """Laina et al.'s unpooling: each value goes to the top-left of a 2x2 block of zeros.

    (B, C, H, W) -> (B, C, 2H, 2W).
    """
    b, c, h, w = x.shape
    out = x.new_zeros(b, c, h, 2, w, 2)
    out[:, :, :, 0, :, 0] = x
    return out.view(b, c, 2 * h, 2 * w)


class UpProjection(nn.Module):
    """The up-projection block of Laina et al. (3DV 2016): unpool x2, then
    relu(conv3x3(relu(conv5x5(u))) + conv5x5(u)), each convolution followed by batch norm."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 5, padding=2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.projection = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 5, padding=2, bias=False), nn.BatchNorm2d(out_channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = unpool2x(x)
        return F.relu(self.branch(u) + self.projection(u), inplace=True)


def upsample_to(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize of (B, C, h, w) to ``size`` (no-op if already there)."""
    if x.shape[-2:] == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
