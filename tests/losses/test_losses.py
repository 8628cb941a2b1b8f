"""Losses: hand-derived values, masks, skipped tasks, and the multi-task sum."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from tridense.data.sample import IGNORE_INDEX
from tridense.losses import MultiTaskLoss, build_task_losses
from tridense.losses import functional as LF


def test_berhu_hand_values():
    pred = torch.tensor([1.0, 2.0, 3.0, 5.0]).view(1, 1, 1, 4)
    target = torch.tensor([1.5, 2.0, 2.0, 0.0]).view(1, 1, 1, 4)
    mask = target > 0  # the last pixel is invalid
    # errors 0.5, 0, 1 -> c = 0.2 * 1 = 0.2; 0.5 > c -> (0.25 + 0.04) / 0.4 = 0.725; 0 -> 0; 1 -> (1 + .04)/.4 = 2.6
    assert LF.berhu(pred, target, mask).item() == pytest.approx((0.725 + 0 + 2.6) / 3)


def test_berhu_is_l1_below_threshold_and_continuous():
    target = torch.ones(1, 1, 1, 2)
    pred = torch.tensor([1.0 + 0.2, 1.0 + 1.0]).view(1, 1, 1, 2)  # c = 0.2: the first error sits on c
    value = LF.berhu(pred, target, torch.ones_like(target, dtype=torch.bool))
    assert value.item() == pytest.approx((0.2 + (1 + 0.04) / 0.4) / 2)


def test_silog_ignores_global_scale():
    g = torch.rand(2, 1, 4, 5) + 0.5
    p = g * torch.exp(0.1 * torch.randn_like(g))
    mask = torch.ones_like(g, dtype=torch.bool)
    a = LF.silog(p, g, mask, lam=1.0)
    b = LF.silog(3.0 * p, g, mask, lam=1.0)
    assert a.item() == pytest.approx(b.item(), abs=1e-4)
    # With lambda = 0 it is the RMS of the log error.
    d = torch.log(p) - torch.log(g)
    assert LF.silog(p, g, mask, lam=0.0).item() == pytest.approx(math.sqrt((d**2).mean().item()), rel=1e-4)


def test_normal_losses_hand_values():
    target = torch.tensor([0.0, 0.0, -1.0]).view(1, 3, 1, 1).repeat(1, 1, 1, 2)
    pred = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, -2.0]]).view(1, 3, 1, 2)  # 90 degrees off; exact (scaled)
    mask = torch.ones(1, 1, 1, 2, dtype=torch.bool)
    assert LF.normal_l1(pred, target, mask).item() == pytest.approx((2.0 + 0.0) / 2)
    assert LF.normal_cosine(pred, target, mask).item() == pytest.approx((1.0 + 0.0) / 2)


def test_cross_entropy_and_focal_hand_values():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]]).T.reshape(1, 2, 1, 2)  # pixel 0: [2, 0], pixel 1: [0, 0]
    target = torch.tensor([[[0, 255]]])
    p0 = math.exp(2) / (math.exp(2) + 1)
    assert LF.cross_entropy(logits, target).item() == pytest.approx(-math.log(p0))
    assert LF.focal(logits, target, gamma=2.0).item() == pytest.approx(-((1 - p0) ** 2) * math.log(p0), rel=1e-5)
    assert LF.focal(logits, target, gamma=0.0).item() == pytest.approx(-math.log(p0))


def test_empty_masks_give_connected_zero():
    pred = torch.rand(1, 1, 2, 2, requires_grad=True)
    zero = LF.berhu(pred, torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2, dtype=torch.bool))
    assert zero.item() == 0.0
    zero.backward()
    assert pred.grad is not None


def test_predictions_are_resized_to_the_target():
    pred = torch.full((1, 1, 2, 2), 2.0)
    target = torch.full((1, 1, 8, 8), 1.0)
    assert LF.depth_l1(pred, target, target > 0).item() == pytest.approx(1.0)


def _batch(has_depth: list[bool]) -> dict:
    b = len(has_depth)
    return {
        "depth": torch.full((b, 1, 4, 4), 2.0),
        "normals": torch.tensor([0.0, 0.0, -1.0]).view(1, 3, 1, 1).repeat(b, 1, 4, 4),
        "semseg": torch.zeros(b, 4, 4, dtype=torch.long),
        "has_depth": torch.tensor(has_depth),
        "has_normals": torch.ones(b, dtype=torch.bool),
        "has_semseg": torch.ones(b, dtype=torch.bool),
    }


def test_multitask_loss_weights_skips_and_aux():
    losses = build_task_losses(("depth", "normals", "semseg"), depth="l1")
    loss = MultiTaskLoss(losses, weights={"depth": 2.0}, aux_weights={"initial": 0.5})
    outputs = {
        "depth": torch.tensor([1.0, 5.0]).view(2, 1, 1, 1).expand(2, 1, 4, 4),
        "normals": torch.tensor([0.0, 0.0, -1.0]).view(1, 3, 1, 1).expand(2, 3, 4, 4),
        "semseg": torch.zeros(2, 3, 4, 4),
        "aux": {"initial": {"depth": torch.full((2, 1, 2, 2), 3.0)}},
    }
    terms = loss(outputs, _batch([True, False]))
    # Only the first sample has depth: |1 - 2| = 1; the second (|5 - 2|) is skipped.
    assert terms["depth"].item() == pytest.approx(1.0)
    assert terms["initial/depth"].item() == pytest.approx(1.0)
    assert terms["normals"].item() == pytest.approx(0.0)
    assert terms["semseg"].item() == pytest.approx(math.log(3))
    expected = 2.0 * 1.0 + 2.0 * 0.5 * 1.0 + 0.0 + math.log(3)
    assert terms["total"].item() == pytest.approx(expected)


def test_multitask_loss_without_any_task_is_an_error():
    loss = MultiTaskLoss(build_task_losses(("depth",)))
    with pytest.raises(ValueError, match="no loss term"):
        loss({"depth": torch.ones(1, 1, 2, 2)}, {"semseg": torch.zeros(1, 2, 2, dtype=torch.long)})


def test_unknown_loss_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="berhu"):
        build_task_losses(("depth",), depth="huber")


def _reference(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """The losses written with boolean indexing (the definitions), to compare the sync-free versions with."""
    err = (pred - target).abs()[mask]
    c = (0.2 * err.max()).clamp_min(1e-6)
    d = torch.log(pred[mask]) - torch.log(target[mask])
    return {
        "berhu": torch.where(err <= c, err, (err * err + c * c) / (2 * c)).mean(),
        "l1": err.mean(),
        "silog": torch.sqrt((d * d).mean() - 0.85 * d.mean() ** 2 + 1e-6),
    }


def test_sync_free_losses_equal_the_indexed_definitions():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(2, 1, 5, 6, generator=g) + 0.5
    target = torch.rand(2, 1, 5, 6, generator=g) * 3
    mask = target > 0.6
    target = torch.where(mask, target, torch.full_like(target, float("nan")))  # garbage off the mask
    ref = _reference(pred, torch.nan_to_num(target, nan=1.0), mask)
    torch.testing.assert_close(LF.berhu(pred, target, mask), ref["berhu"])
    torch.testing.assert_close(LF.depth_l1(pred, target, mask), ref["l1"])
    torch.testing.assert_close(LF.silog(pred, target, mask), ref["silog"])

    logits = torch.randn(2, 4, 5, 6, generator=g)
    labels = torch.randint(0, 4, (2, 5, 6), generator=g)
    labels[0, :2] = IGNORE_INDEX
    torch.testing.assert_close(
        LF.cross_entropy(logits, labels), F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
    )
    weight = torch.tensor([0.5, 1.0, 2.0, 0.1])
    torch.testing.assert_close(
        LF.cross_entropy(logits, labels, weight=weight),
        F.cross_entropy(logits, labels, weight=weight, ignore_index=IGNORE_INDEX),
    )
    valid = labels != IGNORE_INDEX
    log_pt = F.log_softmax(logits, 1).gather(1, torch.where(valid, labels, 0)[:, None])[:, 0][valid]
    torch.testing.assert_close(LF.focal(logits, labels, 2.0), (-((1 - log_pt.exp()) ** 2) * log_pt).mean())


@pytest.mark.parametrize("name", ["berhu", "depth_l1", "silog", "normal_l1", "normal_cosine", "cross_entropy", "focal"])
def test_every_loss_is_a_connected_zero_on_an_empty_mask(name: str):
    pred = torch.rand(1, 3, 2, 2, requires_grad=True)
    fn = getattr(LF, name)
    if name in ("cross_entropy", "focal"):
        value = fn(pred, torch.full((1, 2, 2), IGNORE_INDEX))
    elif name.startswith("normal"):
        value = fn(pred, torch.zeros(1, 3, 2, 2), torch.zeros(1, 1, 2, 2, dtype=torch.bool))
    else:
        value = fn(pred[:, :1], torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2, dtype=torch.bool))
    assert value.item() == 0.0
    value.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()


class _SyncOps(TorchDispatchMode):
    """Records the ATen ops that make the host wait for the device (scalar reads, data-dependent shapes)."""

    SYNCING = ("_local_scalar_dense", "nonzero", "masked_select", "is_nonzero", "item")

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        masks = name == "index" and any(i is not None and i.dtype == torch.bool for i in args[1])
        if name in self.SYNCING or masks:  # boolean-mask indexing has a data-dependent shape
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", ["berhu", "depth_l1", "silog", "normal_l1", "normal_cosine", "cross_entropy", "focal"])
def test_losses_do_not_synchronise_with_the_host(name: str):
    """No op whose result the host must wait for (on CUDA every such op is a device synchronisation)."""
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(2, 3, 4, 4, generator=g, requires_grad=True)
    fn = getattr(LF, name)
    with _SyncOps() as ops:
        if name in ("cross_entropy", "focal"):
            value = fn(pred, torch.randint(0, 3, (2, 4, 4), generator=g))
        elif name.startswith("normal"):
            value = fn(pred, F.normalize(torch.randn(2, 3, 4, 4, generator=g), dim=1), torch.rand(2, 1, 4, 4) > 0.3)
        else:
            value = fn(pred[:, :1] + 0.1, torch.rand(2, 1, 4, 4, generator=g) + 0.1, torch.rand(2, 1, 4, 4) > 0.3)
        value.backward()
    assert not ops.seen, ops.seen
