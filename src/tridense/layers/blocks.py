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


def unpool_conv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(unpool2x(x))`` for an odd k x k convolution with padding k // 2, without the zeros.

    Unpooling then correlating with K equals a stride-2 transposed convolution with the flipped kernel
    (Laina et al.'s "fast up-convolution"): only the non-zero inputs are multiplied, 4x fewer operations.
    (B, C, H, W) -> (B, C', 2H, 2W).
    """
    k = conv.kernel_size[0]
    weight = conv.weight.flip(2, 3).transpose(0, 1)  # (C_in, C_out, k, k): conv_transpose2d layout
    return F.conv_transpose2d(x, weight, conv.bias, stride=2, padding=k // 2, output_padding=1)


class UpProjection(nn.Module):
    """The up-projection block of Laina et al. (3DV 2016): unpool x2, then
    relu(conv3x3(relu(conv5x5(u))) + conv5x5(u)), each convolution followed by batch norm.

    The two 5x5 convolutions of the unpooled map run as transposed convolutions (:func:`unpool_conv`),
    which gives the same result at a quarter of the cost.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.proj = nn.Conv2d(in_channels, out_channels, 5, padding=2, bias=False)
        self.bn_proj = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = F.relu(self.bn1(unpool_conv(x, self.conv1)), inplace=True)
        branch = self.bn2(self.conv2(branch))
        return F.relu(branch + self.bn_proj(unpool_conv(x, self.proj)), inplace=True)


def upsample_to(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize of (B, C, h, w) to ``size`` (no-op if already there)."""
    if x.shape[-2:] == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
