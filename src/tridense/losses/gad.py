"""GAD's side-output supervision (Jiao et al., CVPR 2019, eq. 8): L = L_s + L_d + sum_k L_s,k.

L_s (the final prediction's segmentation loss, focal by eq. 6) and L_d (berHu on the auxiliary depth, eq. 7)
are the ordinary task losses (``loss.semseg: focal``, ``loss.depth: berhu``); this module adds the sum over
the side outputs ``aux["side"]`` of :class:`~tridense.models.gad.GADNet` (the distilled features' head and
SPF blocks 1-3), each with the same focal (or cross-entropy) loss on the ground-truth labels, ignore 255.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tridense.errors import ConfigError
from tridense.losses import functional as LF
from tridense.losses.multitask import SEG_LOSSES, semseg_target
from tridense.losses.registry import register_extra_loss


@register_extra_loss("side")
class SideOutputLoss(nn.Module):
    """Segmentation loss on every side output ``aux["side"][name]``, each weighted by ``weight``.

    Args:
        tasks: the trained tasks (the term exists only with ``semseg``).
        weight: weight of each side term (eq. 8: 1).
        kind: ``"focal"`` (eq. 6) or ``"ce"``.
        gamma: focal exponent (eq. 6: 2).

    Returns (forward) ``{"side/<name>": weight * loss}`` for every side output present; an empty dict when the
    model has none (GAD without SPF) or the batch has no labels.
    """

    def __init__(self, tasks: Sequence[str], *, weight: float = 1.0, kind: str = "focal", gamma: float = 2.0) -> None:
        super().__init__()
        if kind not in SEG_LOSSES:
            raise ConfigError(f"side-output loss kind {kind!r} is unknown; valid: {list(SEG_LOSSES)}")
        if weight < 0 or gamma < 0:
            raise ConfigError(f"side-output loss needs weight >= 0 and gamma >= 0, got {weight}, {gamma}")
        self.active = "semseg" in tuple(tasks)
        self.weight, self.kind, self.gamma = float(weight), kind, float(gamma)

    def forward(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        sides = outputs.get("aux", {}).get("side")
        if not self.active or not sides or "semseg" not in batch:
            return {}
        target = semseg_target(batch)
        terms = {}
        for name, logits in sides.items():
            value = LF.focal(logits, target, self.gamma) if self.kind == "focal" else LF.cross_entropy(logits, target)
            terms[f"side/{name}"] = self.weight * value
        return terms
