"""PAP's pair-wise affinity loss on hand-made cases."""

from __future__ import annotations

import math

import pytest
import torch

from tridense.losses.pairwise import PairwiseLoss, pairwise_loss, sample_pairs


def test_two_valid_pixels_by_hand():
    # Only pixels 0 and 3 are valid, so every pair is (0,3), (3,0) or a pixel with itself.
    pred = torch.tensor([1.0, 9.0, 9.0, 4.0]).view(1, 1, 2, 2)  # predicted distance |1 - 4| = 3
    target = torch.tensor([2.0, 0.0, 0.0, 3.0]).view(1, 1, 2, 2)  # true distance |2 - 3| = 1
    valid = torch.tensor([[True, False], [False, True]]).view(1, 2, 2)
    g = torch.Generator().manual_seed(0)
    ij = sample_pairs(valid.flatten(1)[0], 1000, g)
    assert set(ij.flatten().tolist()) <= {0, 3}
    distinct = (ij[:, 0] != ij[:, 1]).float().mean().item()  # a pixel with itself costs |0 - 0| = 0
    value = pairwise_loss(pred, target, valid, pairs=1000, generator=torch.Generator().manual_seed(0))
    assert value.item() == pytest.approx(2.0 * distinct, abs=1e-6)


def test_vector_distances_normals_and_probabilities():
    # Two normals 90 degrees apart: true distance sqrt(2); prediction equal to both -> distance 0.
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]).view(1, 3, 1, 2)
    pred = torch.tensor([[0.0, 0.0], [0.0, 0.0], [-1.0, -1.0]]).view(1, 3, 1, 2)
    valid = torch.ones(1, 1, 2, dtype=torch.bool)
    g = torch.Generator().manual_seed(1)
    ij = sample_pairs(valid.flatten(1)[0], 500, torch.Generator().manual_seed(1))
    distinct = (ij[:, 0] != ij[:, 1]).float().mean().item()
    assert pairwise_loss(pred, target, valid, pairs=500, generator=g).item() == pytest.approx(
        math.sqrt(2) * distinct, abs=1e-6
    )


def test_exact_prediction_costs_nothing_and_any_offset_costs_nothing_for_depth():
    target = torch.rand(2, 1, 5, 6) + 1.0
    valid = torch.ones(2, 5, 6, dtype=torch.bool)
    assert pairwise_loss(target, target, valid).item() == 0.0
    # Only distances between pixels matter: a constant offset leaves them unchanged.
    assert pairwise_loss(target + 0.7, target, valid).item() == pytest.approx(0.0, abs=1e-6)
    assert pairwise_loss(target * 2.0, target, valid).item() > 0.0


def test_no_valid_pair_is_a_connected_zero():
    pred = torch.rand(1, 1, 3, 3, requires_grad=True)
    valid = torch.zeros(1, 3, 3, dtype=torch.bool)
    valid[0, 1, 1] = True  # one pixel makes no pair
    value = pairwise_loss(pred, torch.rand(1, 1, 3, 3), valid)
    assert value.item() == 0.0
    value.backward()
    assert pred.grad is not None


def test_module_terms_weights_and_masks():
    b, h, w, c = 2, 4, 5, 3
    depth = torch.rand(b, 1, h, w) + 1.0
    depth[0, 0, 0, :] = 0.0  # invalid depth is never drawn
    normals = torch.nn.functional.normalize(torch.randn(b, 3, h, w), dim=1)
    labels = torch.randint(0, c, (b, h, w))
    labels[:, 0] = 255
    batch = {"depth": depth, "normals": normals, "semseg": labels}
    # Predictions equal to the ground truth: depth and normal terms vanish; the segmentation term is the
    # distance between probability vectors and one-hot vectors, zero only for confident logits.
    logits = 50.0 * torch.nn.functional.one_hot(torch.where(labels == 255, 0, labels), c).permute(0, 3, 1, 2).float()
    outputs = {"depth": depth.clamp_min(0.5), "normals": normals, "semseg": logits}
    terms = PairwiseLoss(["depth", "normals", "semseg"], weight=0.2, pairs=64)(outputs, batch)
    assert set(terms) == {"pairwise/depth", "pairwise/normals", "pairwise/semseg"}
    for name, value in terms.items():
        assert value.item() == pytest.approx(0.0, abs=1e-5), name
    # The weight scales every term; a task absent from the batch is skipped.
    outputs["depth"] = torch.rand(b, 1, h, w) + 1.0
    torch.manual_seed(0)
    one = PairwiseLoss(["depth"], weight=1.0, pairs=64)(outputs, batch)["pairwise/depth"]
    torch.manual_seed(0)
    fifth = PairwiseLoss(["depth"], weight=0.2, pairs=64)(outputs, batch)["pairwise/depth"]
    assert fifth.item() == pytest.approx(0.2 * one.item(), rel=1e-6)
    assert PairwiseLoss(["depth", "normals"])(outputs, {"depth": depth}).keys() == {"pairwise/depth"}
