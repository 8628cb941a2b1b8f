"""The standard multi-task baseline and the single-task networks: a shared encoder, one decoder per task.

Each task has its own feature-pyramid decoder over the multi-scale encoder features and a prediction head
at 1/4 of the input, upsampled to the input size. With one task this is the single-task network the
papers compare against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pydantic import ConfigDict, Field
from torch import nn

from tridense.data.sample import TASKS
from tridense.errors import ConfigError
from tridense.layers.blocks import upsample_to
from tridense.models.encoder import Encoder, EncoderOptions
from tridense.models.heads import FPNDecoder, PredictionHead
from tridense.models.registry import register_model
from tridense.tasks import activate, check_tasks, task_spec


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
            {t: PredictionHead(decoder_channels, task_spec(t).channels(num_classes), task=t) for t in self.tasks}
        )

    def forward(self, image: torch.Tensor) -> dict[str, Any]:
        features = self.encoder(image)
        out: dict[str, Any] = {"aux": {}}
        for task in self.tasks:
            raw = self.heads[task](self.decoders[task](features))
            out[task] = activate(task, upsample_to(raw, image.shape[-2:]), min_depth=self.min_depth)
        return out


class BaselineOptions(EncoderOptions):
    """``model.args`` of the multi-task baseline and the single-task networks."""

    model_config = ConfigDict(extra="forbid")

    decoder_channels: int = Field(64, ge=1)
    min_depth: float = Field(1e-3, gt=0)


def _net(
    encoder: str,
    pretrained: bool | str,
    tasks: Sequence[str],
    num_classes: int | None,
    encoder_args: dict[str, Any] | None = None,
    **args: Any,
) -> MultiTaskNet:
    body = Encoder(encoder, pretrained=pretrained, **(encoder_args or {}))
    return MultiTaskNet(body, tasks=tasks, num_classes=num_classes, **args)


def _single(variant: str, task: str, tasks: Sequence[str] | None) -> tuple[str, ...]:
    """The one task of a single-task variant; a requested task list must contain it."""
    if tasks is not None and task not in tasks:
        raise ConfigError(f"model {variant!r} predicts {task} only, but the tasks requested are {list(tasks)}")
    return (task,)


@register_model(options=BaselineOptions)
def mtl_baseline(
    *,
    encoder: str = "resnet18",
    pretrained: bool | str = False,
    tasks: Sequence[str] | None = None,
    num_classes: int | None = None,
    **args: Any,
) -> MultiTaskNet:
    """Multi-task baseline: shared encoder, one FPN decoder + head per task (depth, normals, semseg)."""
    return _net(encoder, pretrained, TASKS if tasks is None else tasks, num_classes, **args)


@register_model(options=BaselineOptions)
def single_depth(
    *,
    encoder: str = "resnet18",
    pretrained: bool | str = False,
    tasks: Sequence[str] | None = None,
    num_classes: int | None = None,
    **args: Any,
) -> MultiTaskNet:
    """Single-task depth network (encoder + FPN decoder)."""
    return _net(encoder, pretrained, _single("single_depth", "depth", tasks), None, **args)


@register_model(options=BaselineOptions)
def single_normals(
    *,
    encoder: str = "resnet18",
    pretrained: bool | str = False,
    tasks: Sequence[str] | None = None,
    num_classes: int | None = None,
    **args: Any,
) -> MultiTaskNet:
    """Single-task surface normal network (encoder + FPN decoder)."""
    return _net(encoder, pretrained, _single("single_normals", "normals", tasks), None, **args)


@register_model(options=BaselineOptions)
def single_semseg(
    *,
    encoder: str = "resnet18",
    pretrained: bool | str = False,
    tasks: Sequence[str] | None = None,
    num_classes: int | None = None,
    **args: Any,
) -> MultiTaskNet:
    """Single-task semantic segmentation network (encoder + FPN decoder)."""
    return _net(encoder, pretrained, _single("single_semseg", "semseg", tasks), num_classes, **args)
