"""Losses: pure functions in :mod:`~tridense.losses.functional`, modules and the multi-task sum in
:mod:`~tridense.losses.multitask`."""

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

__all__ = [
    "DepthLoss",
    "MultiTaskLoss",
    "NormalLoss",
    "SegLoss",
    "build_task_losses",
    "depth_mask",
    "normals_mask",
    "semseg_target",
]
