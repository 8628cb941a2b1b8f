"""GAD's GAP block against an explicit softmax matrix in every propagation mode; the vanilla-conv block."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tridense.errors import ConfigError
from tridense.layers.affinity import diffuse
from tridense.layers.gap import ConvFusion, GeometryAwarePropagation, build_fusion

SIZE = (5, 7)
MODES = ("dense", "chunked", "fused")


def reference(block: GeometryAwarePropagation, p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """q = p + BN(conv(W g(p))), W = row softmax of theta(G) phi(G)^T built as an explicit (N, M) matrix."""
    theta, phi, values = block.theta(g), block.phi(g), block.g(p)
    s = block.subsample
    if s > 1:
        phi = F.max_pool2d(phi, s, s, ceil_mode=True)
        values = F.max_pool2d(values, s, s, ceil_mode=True)
    b, c = theta.shape[:2]
    q = theta.flatten(2).transpose(1, 2)  # (B, N, C)
    k = phi.flatten(2).transpose(1, 2)  # (B, M, C)
    v = values.flatten(2).transpose(1, 2)  # (B, M, C)
    scores = q @ k.transpose(1, 2)  # (B, N, M)
    e = torch.exp(scores - scores.amax(-1, keepdim=True))
    w = e / e.sum(-1, keepdim=True)
    y = (w @ v).transpose(1, 2).reshape(b, c, *p.shape[2:])  # (B, C, H, W)
    return p + block.out(y)


def _block(subsample: int = 1, mode: str = "dense", **kw) -> GeometryAwarePropagation:
    torch.manual_seed(0)
    block = GeometryAwarePropagation(6, 5, 4, subsample=subsample, mode=mode, zero_init=False, **kw).double()
    block.eval()  # BN with running statistics: the reference and the block see the same affine maps
    return block


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("subsample", [1, 2])
def test_gap_matches_dense_reference_forward_and_gradients(mode: str, subsample: int):
    block = _block(subsample, mode, chunk_rows=4)
    torch.manual_seed(1)
    p = torch.randn(2, 6, *SIZE, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 5, *SIZE, dtype=torch.float64, requires_grad=True)
    out = block(p, g)
    ref = reference(block, p, g)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-8)
    seed = torch.randn_like(out)
    got = torch.autograd.grad((out * seed).sum(), [p, g, *block.parameters()])
    want = torch.autograd.grad((ref * seed).sum(), [p, g, *block.parameters()])
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)


def test_gap_training_mode_batch_norm_matches_reference():
    block = _block()
    block.train()
    p, g = torch.randn(2, 6, *SIZE, dtype=torch.float64), torch.randn(2, 5, *SIZE, dtype=torch.float64)
    out = block(p, g)
    block.train()
    torch.testing.assert_close(out, reference(block, p, g))


def test_diffuse_with_separate_keys_differs_from_symmetric():
    """key_embeddings really replaces the keys (q != k), and equals the symmetric path when k = q."""
    torch.manual_seed(2)
    q, k = torch.randn(1, 1, 35, 3, dtype=torch.float64), torch.randn(1, 1, 35, 3, dtype=torch.float64)
    v = torch.randn(1, 35, 2, dtype=torch.float64)
    args = {"size": SIZE, "iterations": 1, "mode": "chunked", "chunk_rows": 8}
    same = diffuse(q, v, [2], None, key_embeddings=q, **args)
    torch.testing.assert_close(same, diffuse(q, v, [2], None, **args))
    other = diffuse(q, v, [2], None, key_embeddings=k, **args)
    expected = torch.softmax(q[0, 0] @ k[0, 0].T, -1) @ v[0]  # (N, 2)
    torch.testing.assert_close(other[0], expected)
    with pytest.raises(ValueError, match="key_embeddings"):
        diffuse(q, v, [2], None, key_embeddings=k[:, :, :10], **args)


def test_gap_zero_init_is_identity_and_keeps_shape():
    block = GeometryAwarePropagation(8, 3)
    p, g = torch.randn(2, 8, 4, 6), torch.randn(2, 3, 4, 6)
    torch.testing.assert_close(block(p, g), p)
    (block(p, g).sum()).backward()
    assert block.out[1].weight.grad is not None and block.out[1].weight.grad.abs().sum() > 0


def test_gap_uses_the_guide():
    """The affinity comes from G: changing G changes the output; a constant G averages g(p) uniformly."""
    block = _block()
    p = torch.randn(1, 6, *SIZE, dtype=torch.float64)
    g = torch.zeros(1, 5, *SIZE, dtype=torch.float64)
    y = block.affinity_product(p, g)
    mean = block.g(p).mean(dim=(2, 3), keepdim=True).expand_as(y)
    torch.testing.assert_close(y, mean)
    assert not torch.allclose(block(p, torch.randn_like(g)), block(p, g))


def test_conv_fusion_shapes_and_gradients():
    torch.manual_seed(0)
    block = ConvFusion(6, 5, zero_init=False)
    p = torch.randn(2, 6, *SIZE, requires_grad=True)
    g = torch.randn(2, 5, *SIZE, requires_grad=True)
    out = block(p, g)
    assert out.shape == p.shape
    out.square().sum().backward()
    assert g.grad.abs().sum() > 0 and p.grad.abs().sum() > 0


def test_bad_inputs_and_options():
    block = GeometryAwarePropagation(6, 5)
    with pytest.raises(ValueError, match="guide grid"):
        block(torch.randn(1, 6, 4, 4), torch.randn(1, 5, 4, 5))
    with pytest.raises(ValueError, match="features must be"):
        block(torch.randn(1, 7, 4, 4), torch.randn(1, 5, 4, 4))
    with pytest.raises(ConfigError, match="propagation mode"):
        GeometryAwarePropagation(6, 5, mode="sparse")
    with pytest.raises(ConfigError, match="fusion 'gap' only"):
        build_fusion("conv", 6, 5, mode="fused")
    with pytest.raises(ConfigError, match="valid: gap, conv, none"):
        build_fusion("attention", 6, 5)
    assert build_fusion("none", 6, 5) is None
    assert isinstance(build_fusion("gap", 6, 5, subsample=2), GeometryAwarePropagation)
