"""Segmentation metrics: hand-made confusion matrix, ignore, absent classes, logits, real labels, streaming."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tridense.data.io import read_label_png
from tridense.errors import DataError
from tridense.metrics import SegmentationMetrics, segmentation_metrics
from tridense.metrics.functional import segmentation_stats

TARGET = torch.tensor([[0, 0, 0, 1, 1, 2, 255]])
PRED = torch.tensor([[0, 0, 1, 1, 2, 2, 0]])


def test_hand_made_confusion_matrix() -> None:
    cm = segmentation_stats(PRED, TARGET, 3)["confmat"]
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert cm.dtype == torch.int64
    m = segmentation_metrics(PRED, TARGET, 3)
    assert m["pixel_acc"] == pytest.approx(4 / 6)
    assert m["mean_acc"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["iou"] == pytest.approx([2 / 3, 1 / 3, 1 / 2])  # unions 3, 3, 2
    assert m["miou"] == pytest.approx(0.5)


def test_ignored_pixels_do_not_count() -> None:
    other = PRED.clone()
    other[0, -1] = 2  # prediction at the ignored pixel changes
    assert segmentation_metrics(other, TARGET, 3) == segmentation_metrics(PRED, TARGET, 3)
    ignored = segmentation_metrics(PRED, torch.full_like(TARGET, 255), 3)
    assert math.isnan(ignored["pixel_acc"])
    assert math.isnan(ignored["miou"])


def test_absent_classes() -> None:
    # class 3 absent from ground truth and prediction: NaN IoU, no effect on the means
    m = segmentation_metrics(PRED, TARGET, 4)
    assert math.isnan(m["iou"][3])
    assert m["miou"] == pytest.approx(0.5)
    assert m["mean_acc"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # class 1 predicted but absent from ground truth: IoU 0 counts in miou, not in mean_acc
    m = segmentation_metrics(torch.tensor([[0, 1]]), torch.tensor([[0, 0]]), 3)
    assert m["iou"][:2] == [0.5, 0.0]
    assert math.isnan(m["iou"][2])
    assert (m["miou"], m["mean_acc"], m["pixel_acc"]) == (0.25, 0.5, 0.5)


def test_logits_are_argmaxed() -> None:
    logits = torch.nn.functional.one_hot(PRED, 3).permute(0, 2, 1).float() * 5.0  # (B, C, N)
    logits = logits + 0.1 * torch.randn(logits.shape)
    ids = segmentation_metrics(PRED[:, None], TARGET[:, None], 3)
    assert segmentation_metrics(logits[..., None], TARGET[:, :, None], 3) == ids  # (B, C, H, W) logits
    assert segmentation_metrics(logits[0][..., None], TARGET[0][:, None], 3) == ids  # (C, H, W) logits


def test_bad_labels_raise_naming_the_value() -> None:
    with pytest.raises(DataError, match=r"\[7\] outside 0\.\.2"):
        segmentation_metrics(PRED, torch.tensor([[0, 0, 0, 1, 7, 2, 255]]), 3)
    with pytest.raises(ValueError, match=r"\[-1\] outside"):
        segmentation_metrics(PRED, torch.tensor([[0, 0, 0, 1, -1, 2, 255]]), 3)
    with pytest.raises(ValueError, match="class ids \\[5\\]"):
        segmentation_metrics(torch.tensor([[0, 0, 5, 1, 1, 2, 0]]), TARGET, 3)
    with pytest.raises(ValueError, match=r"4 channels.*num_classes = 3"):
        segmentation_metrics(torch.randn(4, 1, 7), TARGET, 3)  # (C, H, W) for (H, W)


def test_real_nyu_labels(shared_data) -> None:
    raw = read_label_png(shared_data / "nyu-mini" / "label40" / "0001.png")
    target = torch.from_numpy(np.where(raw == 0, 255, raw - 1))  # contract: 0 -> ignore, 1..40 -> 0..39
    present = torch.unique(target[target != 255])
    m = segmentation_metrics(target.clamp_max(39), target, 40)
    assert (m["pixel_acc"], m["mean_acc"], m["miou"]) == (1.0, 1.0, 1.0)
    assert [i for i, v in enumerate(m["iou"]) if not math.isnan(v)] == present.tolist()
    # relabel the most frequent class as another present class: its pixels all become errors
    counts = torch.bincount(target[target != 255], minlength=40)
    top, other = int(counts.argmax()), int(present[present != counts.argmax()][0])
    pred = torch.where(target == top, other, target).clamp_max(39)
    wrong = segmentation_metrics(pred, target, 40)
    assert wrong["pixel_acc"] == pytest.approx(1 - int(counts[top]) / int(counts.sum()))
    assert wrong["iou"][top] == 0.0
    assert wrong["iou"][other] == pytest.approx(int(counts[other]) / int(counts[other] + counts[top]))


def test_segmentation_streaming_equals_one_shot() -> None:
    gen = torch.Generator().manual_seed(3)
    target = torch.randint(0, 5, (11, 9, 10), generator=gen)
    target[torch.rand(target.shape, generator=gen) < 0.1] = 255
    logits = torch.randn(11, 5, 9, 10, generator=gen)
    metric = SegmentationMetrics(5)
    start = 0
    for size in (1, 3, 7):
        metric.update(logits[start : start + size], target[start : start + size])
        start += size
    assert torch.equal(metric.confmat, segmentation_stats(logits, target, 5)["confmat"])
    streamed, one_shot = metric.compute(), segmentation_metrics(logits, target, 5)
    assert streamed == one_shot
