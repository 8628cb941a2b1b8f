"""The standard multi-task baseline and the single-task networks: a shared encoder, one decoder per task.

Each task has its own feature-pyramid decoder over the multi-scale encoder features and a prediction head
at 1/4 of the input, upsampled to the input size. With one task this is the single-task network the
papers compare against.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tridense.data.sample import TASKS
from tridense.layers.blocks import upsample_to
from tridense.models.encoder import Encoder
from tridense.models.heads import FPNDecoder, PredictionHead, activate, task_channels
from tridense.models.registry import register_model


def check_tasks(tasks: Sequence[str]) -> tuple[str, ...]:
    tasks = tuple(tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks or len(set(tasks)) != len(tasks):
        raise ValueError(f"tasks must be a non-empty subset of {list(TASKS)} without repeats, got {list(tasks)}")
    return tasks


class MultiTaskNet(nn.Module):
    """Shared encoder + one FPN decoder and head per task.

    Args:
        encoder: the backbone.
        tasks: tasks to predict.
        num_classes: segmentation classes (needed if ``semseg`` is a task).
        decoder_channels: width of each task decoder.
        min_depth: lower bound of predicted depth (metres).
    """

    def __init__(
        self,
        encoder: Encoder,
        *,
        tasks: Sequence[str] = TASKS,
        num_classes: int | None = None,
        decoder_channels: int = 64,
        min_depth: float = 1e-3,
    ) -> None:
        super().__init__()
        self.tasks = check_tasks(tasks)
        self.num_classes = num_classes
        self.min_depth = min_depth
        self.encoder = encoder
        self.decoders = nn.ModuleDict(
            {t: FPNDecoder(encoder.channels, encoder.reductions, decoder_channels) for t in self.tasks}
        )
        self.heads = nn.ModuleDict(
            {t: PredictionHead(decoder_channels, task_channels(t, num_classes), task=t) for t in self.tasks}
        )

    def forward(self, image: torch.Tensor) -> dict[str, Any]:
        features = self.encoder(image)
        out: dict[str, Any] = {"aux": {}}
        for task in self.tasks:
            raw = self.heads[task](self.decoders[task](features))
            out[task] = activate(task, upsample_to(raw, image.shape[-2:]), min_depth=self.min_depth)
        return out


def _encoder(encoder: str, pretrained: bool | str | os.PathLike) -> Encoder:
    return Encoder(encoder, pretrained=pretrained)


@register_model
def mtl_baseline(
    *, encoder: str = "resnet18", pretrained: bool | str = False, num_classes: int | None = None, **kwargs: Any
) -> MultiTaskNet:
    """Multi-task baseline: shared encoder, one FPN decoder + head per task (depth, normals, semseg)."""
    tasks = kwargs.pop("tasks", TASKS)
    return MultiTaskNet(_encoder(encoder, pretrained), tasks=tasks, num_classes=num_classes, **kwargs)


@register_model
def single_depth(*, encoder: str = "resnet18", pretrained: bool | str = False, **kwargs: Any) -> MultiTaskNet:
    """Single-task depth network (encoder + FPN decoder)."""
    kwargs.pop("num_classes", None)
    return MultiTaskNet(_encoder(encoder, pretrained), tasks=("depth",), **kwargs)


@register_model
def single_normals(*, encoder: str = "resnet18", pretrained: bool | str = False, **kwargs: Any) -> MultiTaskNet:
    """Single-task surface normal network (encoder + FPN decoder)."""
    kwargs.pop("num_classes", None)
    return MultiTaskNet(_encoder(encoder, pretrained), tasks=("normals",), **kwargs)


@register_model
def single_semseg(
    *, encoder: str = "resnet18", pretrained: bool | str = False, num_classes: int | None = None, **kwargs: Any
) -> MultiTaskNet:
    """Single-task semantic segmentation network (encoder + FPN decoder)."""
    return MultiTaskNet(_encoder(encoder, pretrained), tasks=("semseg",), num_classes=num_classes, **kwargs)
