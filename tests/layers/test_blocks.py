"""Building blocks: the fast up-projection equals unpooling followed by the convolution."""

from __future__ import annotations

import torch
from torch import nn

from tridense.layers.blocks import UpProjection, unpool2x, unpool_conv


def test_unpool_places_values_top_left():
    x = torch.arange(4.0).view(1, 1, 2, 2)
    u = unpool2x(x)
    assert u.shape == (1, 1, 4, 4)
    torch.testing.assert_close(u[0, 0, ::2, ::2], x[0, 0])
    assert u[0, 0, 1::2].abs().sum() == 0 and u[0, 0, :, 1::2].abs().sum() == 0


def test_fast_unpool_conv_equals_the_reference():
    torch.manual_seed(0)
    for k in (3, 5):
        conv = nn.Conv2d(6, 4, k, padding=k // 2, bias=True).double()
        x = torch.randn(2, 6, 5, 7, dtype=torch.float64, requires_grad=True)
        ref = conv(unpool2x(x))
        fast = unpool_conv(x, conv)
        torch.testing.assert_close(fast, ref)
        g = torch.randn_like(ref)
        grad_ref = torch.autograd.grad(ref, [x, conv.weight], g)
        grad_fast = torch.autograd.grad(fast, [x, conv.weight], g)
        for a, b in zip(grad_fast, grad_ref, strict=True):
            torch.testing.assert_close(a, b)


def test_up_projection_doubles_the_resolution():
    block = UpProjection(8, 4)
    assert block(torch.randn(2, 8, 6, 10)).shape == (2, 4, 12, 20)
