"""Losses: pure functions in :mod:`~tridense.losses.functional`, modules and the multi-task sum in
:mod:`~tridense.losses.multitask`."""

from tridense.losses import gad, pairwise  # noqa: F401  (register the extra terms "side", "pairwise")
from tridense.losses.multitask import (
    DepthLoss,
    MultiTaskLoss,
    NormalLoss,
    SegLoss,
    build_task_losses,
    depth_mask,
    normals_mask,
    semseg_target,
)
from tridense.losses.registry import EXTRA_LOSSES, register_extra_loss

__all__ = [
    "EXTRA_LOSSES",
    "DepthLoss",
    "MultiTaskLoss",
    "NormalLoss",
    "SegLoss",
    "build_task_losses",
    "depth_mask",
    "normals_mask",
    "register_extra_loss",
    "semseg_target",
]
