"""Norms along a dimension: the values of torch's own, finite gradients at zero."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tridense.ops import unit_vectors, vector_norm


def test_vector_norm_matches_torch():
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64)
    for dim in (0, 1, 3):
        assert torch.allclose(vector_norm(x, dim), torch.linalg.vector_norm(x, dim=dim))
        assert vector_norm(x, dim, keepdim=True).shape == torch.linalg.vector_norm(x, dim=dim, keepdim=True).shape


def test_unit_vectors_match_normalize_and_have_finite_gradients_at_zero():
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    x[0, :, 0, 0] = 0.0  # a zero vector: output zero, gradient finite
    ours, theirs = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y = unit_vectors(ours)
    assert torch.allclose(y, F.normalize(theirs, dim=1, eps=1e-6))
    assert torch.all(y[0, :, 0, 0] == 0)
    weights = torch.randn_like(x)
    (y * weights).sum().backward()
    (F.normalize(theirs, dim=1, eps=1e-6) * weights).sum().backward()
    assert torch.isfinite(ours.grad).all()
    assert torch.allclose(ours.grad, theirs.grad)
