"""GAD's losses: focal eq. 6 on hand-made values, side-output supervision (eq. 8)."""

from __future__ import annotations

import math

import pytest
import torch

from tridense.errors import ConfigError
from tridense.losses.functional import focal
from tridense.losses.gad import SideOutputLoss
from tridense.losses.registry import EXTRA_LOSSES


def test_focal_matches_eq6_on_hand_made_values():
    # Two classes, three pixels: logits chosen so that p(true class) = 0.9, 0.1 and 0.5; one pixel ignored.
    p = torch.tensor([0.9, 0.1, 0.5, 0.7])
    logits = torch.stack([torch.log(p), torch.log(1 - p)])[None, :, None, :]  # (1, 2, 1, 4)
    target = torch.tensor([[[0, 0, 0, 255]]])
    expected = [-(1 - q) ** 2 * math.log(q) for q in (0.9, 0.1, 0.5)]  # 0.01*0.105, 0.81*2.303, 0.25*0.693
    assert focal(logits, target).item() == pytest.approx(sum(expected) / 3, rel=1e-6)
    assert focal(logits, target, gamma=0.0).item() == pytest.approx(
        -(math.log(0.9) + math.log(0.1) + math.log(0.5)) / 3, rel=1e-6
    )
    all_ignored = torch.full_like(target, 255)
    assert focal(logits.requires_grad_(), all_ignored).item() == 0.0


def test_side_output_loss_sums_every_side_output():
    torch.manual_seed(0)
    target = torch.randint(0, 3, (2, 8, 8))
    target[0, :2] = 255
    sides = {"distilled": torch.randn(2, 3, 4, 4), "spf1": torch.randn(2, 3, 4, 4)}
    batch = {"semseg": target, "has_semseg": torch.tensor([True, True])}
    terms = SideOutputLoss(("depth", "semseg"), weight=0.5)({"aux": {"side": sides}}, batch)
    assert set(terms) == {"side/distilled", "side/spf1"}
    for name, logits in sides.items():
        torch.testing.assert_close(terms[f"side/{name}"], 0.5 * focal(logits, target))
    ce = SideOutputLoss(("semseg",), kind="ce")({"aux": {"side": sides}}, batch)
    assert not torch.allclose(ce["side/spf1"], terms["side/spf1"] * 2)
    # A sample without labels is ignored; no side outputs or no semseg task: no term.
    half = SideOutputLoss(("semseg",))({"aux": {"side": sides}}, {**batch, "has_semseg": torch.tensor([False, True])})
    torch.testing.assert_close(half["side/spf1"], focal(sides["spf1"][1:], target[1:]))
    assert SideOutputLoss(("semseg",))({"semseg": sides["spf1"]}, batch) == {}
    assert SideOutputLoss(("depth",))({"aux": {"side": sides}}, batch) == {}
    assert EXTRA_LOSSES["side"] is SideOutputLoss
    with pytest.raises(ConfigError, match="valid"):
        SideOutputLoss(("semseg",), kind="dice")
