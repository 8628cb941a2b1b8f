"""BSDS-style boundary precision / recall / F on hand-made label maps with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tridense.metrics.boundary import (
    BoundaryMetrics,
    boundary_metrics,
    candidate_pairs,
    fill_ignored,
    label_boundaries,
    match_boundaries,
)

H = W = 40
DIAG = math.hypot(H, W)


def halves(split: int) -> torch.Tensor:
    """Class 0 left of column ``split``, class 1 from it on: one vertical boundary at column split - 1."""
    labels = torch.zeros(H, W, dtype=torch.int64)
    labels[:, split:] = 1
    return labels


def test_thin_boundaries_of_a_square() -> None:
    labels = np.zeros((H, W), dtype=np.int64)
    labels[10:30, 10:30] = 1
    edge = label_boundaries(labels)
    # columns 9 and 29 (rows 10..29), rows 9 and 29 (cols 10..29); (29, 29) is on both: 4 * 20 - 1
    assert edge.sum() == 79 and edge[9, 10] and edge[29, 29] and not edge[9, 9] and not edge[20, 20]


def test_identical_maps_score_one() -> None:
    out = boundary_metrics(halves(20), halves(20), 2)
    assert out["precision"] == out["recall"] == out["fmeasure"] == 1.0
    assert out["class_fmeasure"] == [1.0, 1.0] and out["mean_fmeasure"] == 1.0


def test_matching_is_one_to_one() -> None:
    # The prediction has a 2-pixel stripe of class 1: boundaries at columns 18 and 20, both 1 pixel from the
    # true boundary at column 19. One-to-one, only one of the two lines can be matched: P = 1/2, R = 1.
    target = halves(20)
    pred = torch.zeros(H, W, dtype=torch.int64)
    pred[:, 19:21] = 1
    out = boundary_metrics(pred, target, 2, tolerance=1.0 / DIAG)
    assert out["precision"] == pytest.approx(0.5) and out["recall"] == 1.0
    assert out["fmeasure"] == pytest.approx(2 / 3)
    assert out["class_precision"] == pytest.approx([0.5, 0.5]) and out["class_recall"] == [1.0, 1.0]


def test_tolerance_is_a_fraction_of_the_diagonal_inclusive() -> None:
    target, pred = halves(20), halves(23)  # boundaries at columns 19 and 22: 3 pixels apart
    assert boundary_metrics(pred, target, 2, tolerance=2.9 / DIAG)["fmeasure"] == 0.0
    assert boundary_metrics(pred, target, 2, tolerance=3.0 / DIAG)["fmeasure"] == 1.0
    assert boundary_metrics(pred, target, 2)["recall"] == 0.0  # 0.0075 x 56.6 = 0.42 px


def test_partial_match_counts() -> None:
    # true boundary: column 19 (40 px); predicted: column 19 for rows < 10 and column 29 below (1 px each)
    target = halves(20)
    pred = halves(20)
    pred[10:, 20:30] = 0
    out = boundary_metrics(pred, target, 2, tolerance=1.0 / DIAG)
    pb = label_boundaries(pred.numpy())
    # matched: the 10 rows on column 19, plus row 9's horizontal step pixels within 1 px of column 19
    expected = match_boundaries(pb, label_boundaries(target.numpy()), 1.0)
    assert out["precision"] == pytest.approx(expected / pb.sum()) and out["recall"] == pytest.approx(expected / H)
    assert 10 <= expected <= 12


def test_void_band_is_filled_with_the_nearest_label() -> None:
    target = halves(22)
    target[:, 18:22] = 255  # void band over columns 18..21: 18, 19 -> 0 and 20, 21 -> 1
    filled = fill_ignored(target.numpy())
    np.testing.assert_array_equal(filled, halves(20).numpy())
    out = boundary_metrics(halves(20), target, 2, tolerance=0.1 / DIAG)
    assert out["fmeasure"] == 1.0
    empty = boundary_metrics(halves(20), torch.full((H, W), 255), 2)
    assert math.isnan(empty["recall"]) and math.isnan(empty["precision"])  # an unlabelled image is not evaluated


def test_absent_class_is_nan_and_logits_are_accepted() -> None:
    target = halves(20)
    logits = torch.nn.functional.one_hot(halves(20), 3).permute(2, 0, 1).float()  # (3, H, W), class 2 never
    out = boundary_metrics(logits, target, 3)
    assert out["fmeasure"] == 1.0 and math.isnan(out["class_fmeasure"][2]) and out["mean_fmeasure"] == 1.0


def test_streaming_equals_one_shot() -> None:
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (4, 1, 1), generator=gen).expand(4, H, W).clone()
    pred = target.clone()
    for b in range(4):
        target[b, 5 + b : 20 + 2 * b, 8:30] = (b + 1) % 3
        pred[b, 6 + b : 21 + b, 9:31 - b] = (b + 1) % 3
    target[1, :3] = 255
    metric = BoundaryMetrics(3, tolerance=0.02)
    for chunk in (slice(0, 1), slice(1, 4)):
        metric.update(pred[chunk], target[chunk])
    streamed, whole = metric.compute(), boundary_metrics(pred, target, 3, tolerance=0.02)
    for key in ("precision", "recall", "fmeasure", "mean_fmeasure"):
        assert streamed[key] == pytest.approx(whole[key])
    assert streamed["class_recall"] == pytest.approx(whole["class_recall"], nan_ok=True)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="fraction of the image diagonal"):
        BoundaryMetrics(2, tolerance=5.0)
    with pytest.raises(ValueError, match="integer ids"):
        boundary_metrics(torch.zeros(H, W), halves(20), 2)


@pytest.mark.parametrize("radius", [0.5, 1.0, 2.3, 3.0])
def test_candidate_pairs_equal_brute_force_distances(radius: float) -> None:
    rng = np.random.default_rng(3)
    pred, target = rng.random((15, 20)) < 0.2, rng.random((15, 20)) < 0.2
    graph = candidate_pairs(pred, target, radius)
    p, g = np.argwhere(pred), np.argwhere(target)
    distance = np.sqrt(((p[:, None, :] - g[None, :, :]) ** 2).sum(-1))  # (P, G)
    np.testing.assert_array_equal(graph.toarray() > 0, distance <= radius)
