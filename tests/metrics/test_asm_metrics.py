"""Threshold accuracies at any 1.25^k (strict / inclusive), instance-wise metrics, background confusion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tridense.metrics.accuracy import (
    ASM_DEPTH_EXPONENTS,
    DepthAccuracy,
    NormalWithin,
    delta_key,
    depth_accuracy,
    normal_within,
)
from tridense.metrics.confusion import BackgroundConfusion, background_confusion
from tridense.metrics.functional import depth_metrics
from tridense.metrics.instance import InstanceMetrics, instance_keys, instance_metrics


def test_delta_keys_are_named_by_exponent() -> None:
    assert [delta_key(k) for k in ASM_DEPTH_EXPONENTS] == [
        "delta0.125", "delta0.25", "delta0.5", "delta1", "delta2", "delta3"
    ]  # fmt: skip


def test_depth_accuracy_hand_values_strict_and_inclusive() -> None:
    g = torch.ones(1, 1, 1, 6)
    ratios = [1.0, 1.25**0.125, 1.25**0.3, 1.25, 1.25**1.5, 1.25**4]
    p = torch.tensor(ratios, dtype=torch.float64).view(1, 1, 1, 6)
    strict = depth_accuracy(p, g)
    # below 1.25^k strictly: k=1/8 -> {1.0}; 1/4 -> + 1.25^(1/8); 1/2 -> + 1.25^0.3; 1 -> same; 2 -> + 1.25, 1.25^1.5
    assert [strict[delta_key(k)] for k in ASM_DEPTH_EXPONENTS] == pytest.approx(
        [1 / 6, 2 / 6, 3 / 6, 3 / 6, 5 / 6, 5 / 6]
    )
    inclusive = depth_accuracy(p, g, inclusive=True, exponents=(0.125, 1.0))
    assert inclusive == pytest.approx({"delta0.125": 2 / 6, "delta1": 4 / 6})
    # the usual delta1..3 agree with depth_metrics on random data
    gen = torch.Generator().manual_seed(0)
    g, p = torch.rand(2, 1, 8, 8, generator=gen) * 5 + 0.5, torch.rand(2, 1, 8, 8, generator=gen) * 5 + 0.5
    ours, reference = depth_accuracy(p, g, reduction="image"), depth_metrics(p, g, reduction="image")
    for k in (1, 2, 3):
        assert ours[f"delta{k}"] == pytest.approx(reference[f"delta{k}"])


def test_streaming_accuracies_equal_one_shot() -> None:
    gen = torch.Generator().manual_seed(1)
    g = torch.rand(5, 1, 6, 7, generator=gen) * 4
    p = g * (1 + 0.3 * torch.randn(5, 1, 6, 7, generator=gen)).abs().clamp_min(0.1)
    metric = DepthAccuracy()
    for chunk in torch.split(torch.arange(5), 2):
        metric.update(p[chunk], g[chunk])
    assert metric.compute() == pytest.approx(depth_accuracy(p, g))
    n_true = torch.nn.functional.normalize(torch.randn(3, 3, 5, 5, generator=gen), dim=1)
    n_pred = torch.nn.functional.normalize(n_true + 0.2 * torch.randn(3, 3, 5, 5, generator=gen), dim=1)
    normals = NormalWithin()
    normals.update(n_pred[:1], n_true[:1])
    normals.update(n_pred[1:], n_true[1:])
    assert normals.compute() == pytest.approx(normal_within(n_pred, n_true))


def test_normal_within_inclusive_counts_the_threshold() -> None:
    angle = math.radians(30.0)
    pred = torch.tensor([math.sin(angle), 0.0, math.cos(angle)], dtype=torch.float64).view(1, 3, 1, 1)
    target = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).view(1, 3, 1, 1)
    assert normal_within(pred, target, thresholds=(30.0,))["within_30"] == 100.0
    assert normal_within(pred, target, thresholds=(30.0 + 1e-6,), inclusive=False)["within_30"] == 100.0
    assert normal_within(pred, target, thresholds=(29.999,), inclusive=True)["within_29.999"] == 0.0


def scene() -> tuple[torch.Tensor, ...]:
    """One 4x6 image: a big wall instance (class 0, 12 px, exact depth), two small chairs (class 1)."""
    instances = torch.tensor([[1] * 6, [1] * 6, [2, 2, 0, 3, 3, 3], [2, 2, 0, 3, 3, 3]])
    semseg = torch.tensor([[0] * 6, [0] * 6, [1, 1, 255, 1, 1, 1], [1, 1, 255, 1, 1, 0]])  # chair 3: one wall vote
    g = torch.full((4, 6), 2.0)
    p = g.clone()
    p[2:, 0:2] = 4.0  # chair 2: abs_rel 1
    p[2:, 3:6] = 3.0  # chair 3: abs_rel 0.5
    g[3, 5] = 0.0  # an invalid pixel of chair 3 (not counted)
    return p[None, None], g[None, None], instances[None], semseg[None]


def test_instance_wise_depth_averages_within_then_over_classes() -> None:
    p, g, instances, semseg = scene()
    out = instance_metrics("depth", p, g, instances, semseg, 3)
    assert out["class_abs_rel"][:2] == pytest.approx([0.0, 0.75]) and math.isnan(out["class_abs_rel"][2])
    assert out["abs_rel"] == pytest.approx(0.375)  # (0 + 0.75) / 2, not the pixel-pooled 6.5 / 23
    assert out["class_instances"] == [1, 2, 0]
    assert out["delta1"] == pytest.approx(0.5)  # wall 1, chairs 0 -> (1 + 0) / 2
    assert pytest.approx(6.5 / 23) == depth_metrics(p, g, reduction="pixel")["abs_rel"]


def test_instance_wise_normals_and_streaming() -> None:
    _, _, instances, semseg = scene()
    target = torch.zeros(1, 3, 4, 6)
    target[:, 2] = -1.0
    pred = target.clone()
    tilt = math.radians(20.0)
    pred[0, :, 2:, 3:6] = torch.tensor([math.sin(tilt), 0.0, -math.cos(tilt)]).view(3, 1, 1)  # chair 3 off by 20
    out = instance_metrics("normals", pred, target, instances, semseg, 2, thresholds=(11.25, 22.5))
    assert out["class_mean"] == pytest.approx([0.0, 10.0], abs=1e-4)  # chair 2: 0, chair 3: 20 -> 10
    assert out["mean"] == pytest.approx(5.0, abs=1e-4) and out["within_11.25"] == pytest.approx(75.0)
    assert set(instance_keys("normals", thresholds=(11.25, 22.5))) <= set(out)
    metric = InstanceMetrics("normals", 2, thresholds=(11.25, 22.5))
    batch = (
        torch.cat([pred, pred.flip(-1)]),
        torch.cat([target, target]),
        torch.cat([instances] * 2),
        torch.cat([semseg] * 2),
    )
    metric.update(*(x[:1] for x in batch))
    metric.update(*(x[1:] for x in batch))
    whole = instance_metrics("normals", *batch, 2, thresholds=(11.25, 22.5))
    streamed = metric.compute()
    assert streamed["class_instances"] == whole["class_instances"] == [2, 4]
    for key in ("mean", "median", "within_11.25", "class_mean"):
        assert streamed[key] == pytest.approx(whole[key])
    with pytest.raises(ValueError, match="instance-wise metrics exist for"):
        instance_keys("semseg")


def test_background_confusion() -> None:
    cm = torch.tensor([[50, 0, 0, 0], [10, 30, 0, 0], [5, 5, 10, 0], [0, 0, 0, 0]])
    out = background_confusion(cm)
    assert out["class_background_confusion"][1:3] == pytest.approx([0.25, 0.25])
    assert math.isnan(out["class_background_confusion"][0]) and math.isnan(out["class_background_confusion"][3])
    assert out["background_confusion"] == pytest.approx(15 / 60) and out["mean_background_confusion"] == 0.25
    metric = BackgroundConfusion(3)
    target = torch.tensor([[0, 1, 1, 2, 255]])
    metric.update(torch.tensor([[0, 0, 1, 0, 0]]), target)
    np.testing.assert_allclose(metric.compute()["class_background_confusion"], [np.nan, 0.5, 1.0])
