"""Base segmentation architectures of the ASM experiments on timm encoders: FCN, DeepLab (ASPP), PSPNet, U-Net.

DeepLab, PSPNet and U-Net are those of ``segmentation_models_pytorch`` (smp) on its ``tu-<name>`` timm
encoders; smp has no FCN, which is written here as the FCN of the DeepLab / adaptive-affinity-fields code
bases the ASM authors build on: a dilated encoder (output stride 8 by default) and a 3x3 conv-BN-ReLU,
dropout, 1x1 classifier on its last level. All four:

- output ``semseg`` logits at the input size (the model contract), or any tasks of the library: the
  networks predict the tasks' channels side by side and each is activated as the model contract says
  (softplus depth in metres, unit normals), so the same architectures serve ASM's depth / normal runs;
- take ``pretrained`` as every encoder of the library does (``False``, ``True`` = timm's hub, or a local
  weights file): the weights are loaded into a :class:`~tridense.models.encoder.Encoder` and copied into
  smp's timm encoder (the same timm ``features_only`` model, the same parameter names);
- pad the input to a multiple of the architecture's stride and crop the output back, so any size works.

Architectures: ``deeplab`` = DeepLabV3 (ASPP with rates 12, 24, 36 at output stride 8, as smp's default;
6, 12, 18 at 16), ``pspnet`` = pyramid pooling (1, 2, 3, 6 bins) on the dilated encoder at output
stride 8, ``unet`` = smp's U-Net decoder over all encoder levels, ``fcn`` as above.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from segmentation_models_pytorch.encoders import get_encoder
from torch import nn

from tridense.errors import ConfigError
from tridense.models.encoder import Encoder
from tridense.models.heads import activate, task_channels
from tridense.models.registry import register_model

ARCHITECTURES: tuple[str, ...] = ("fcn", "deeplab", "pspnet", "unet")
Architecture = Literal["fcn", "deeplab", "pspnet", "unet"]


class SegmentationArchOptions(BaseModel):
    """Keys of ``model.args`` for the segmentation architectures.

    Attributes:
        output_stride: encoder output stride (dilation beyond it) for ``fcn`` and ``deeplab`` (8 or 16),
            and ``pspnet`` (8); ``unet`` always uses the full stride.
        decoder_channels: width of the FCN head, the ASPP, or the PSP module (ignored by ``unet``, whose
            decoder widths are smp's 256, 128, 64, 32, 16).
        dropout: dropout before the classifier (FCN, PSP).
        min_depth: lower bound of predicted depth (metres) when depth is a task.
    """

    model_config = ConfigDict(extra="forbid")

    output_stride: Literal[8, 16] = 8
    decoder_channels: int = Field(256, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    min_depth: float = Field(1e-3, gt=0.0)


class FCNHead(nn.Module):
    """3x3 conv-BN-ReLU, dropout, 1x1 classifier on the last encoder level."""

    def __init__(self, in_channels: int, channels: int, out_channels: int, dropout: float) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
        )
        self.classifier = nn.Conv2d(channels, out_channels, 1)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.block(features[-1]))


class FCN(nn.Module):
    """Dilated timm encoder (through smp) + :class:`FCNHead`, upsampled bilinearly to the input size."""

    def __init__(
        self, encoder: str, out_channels: int, *, output_stride: int, decoder_channels: int, dropout: float
    ) -> None:
        super().__init__()
        self.encoder = get_encoder(f"tu-{encoder}", weights=None, output_stride=output_stride)
        self.head = FCNHead(self.encoder.out_channels[-1], decoder_channels, out_channels, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.head(self.encoder(x)), size=x.shape[-2:], mode="bilinear", align_corners=False)


def _build(arch: str, encoder: str, out_channels: int, options: SegmentationArchOptions) -> nn.Module:
    """The network of ``arch`` with ``out_channels`` outputs."""
    name = f"tu-{encoder}"
    if arch == "fcn":
        return FCN(
            encoder,
            out_channels,
            output_stride=options.output_stride,
            decoder_channels=options.decoder_channels,
            dropout=options.dropout,
        )
    if arch == "deeplab":
        rates = (12, 24, 36) if options.output_stride == 8 else (6, 12, 18)
        return smp.DeepLabV3(
            encoder_name=name,
            encoder_weights=None,
            encoder_output_stride=options.output_stride,
            decoder_channels=options.decoder_channels,
            decoder_atrous_rates=rates,
            classes=out_channels,
        )
    if arch == "pspnet":
        return smp.PSPNet(
            encoder_name=name,
            encoder_weights=None,
            encoder_depth=5,
            output_stride=8,
            psp_out_channels=options.decoder_channels,
            psp_dropout=options.dropout,
            classes=out_channels,
            upsampling=8,
        )
    if arch == "unet":
        return smp.Unet(encoder_name=name, encoder_weights=None, classes=out_channels)
    raise ConfigError(f"unknown segmentation architecture {arch!r}; valid: {list(ARCHITECTURES)}")


class SegmentationNet(nn.Module):
    """One of FCN, DeepLab, PSPNet, U-Net on a timm encoder, predicting the tasks' channels side by side.

    Args:
        arch: ``fcn``, ``deeplab``, ``pspnet`` or ``unet``.
        encoder: a timm model name with ``features_only`` support.
        pretrained: ``False``, ``True`` (timm's hub) or a local weights file, as :class:`Encoder`.
        tasks: tasks to predict (default ``("semseg",)``).
        num_classes: segmentation classes (needed for ``semseg``).
        options: architecture options (:class:`SegmentationArchOptions`).
    """

    def __init__(
        self,
        arch: Architecture,
        *,
        encoder: str = "resnet18",
        pretrained: bool | str = False,
        tasks: Sequence[str] | None = None,
        num_classes: int | None = None,
        options: SegmentationArchOptions | None = None,
    ) -> None:
        super().__init__()
        self.options = options or SegmentationArchOptions()
        self.tasks = tuple(tasks) if tasks is not None else ("semseg",)
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"tasks must be a non-empty list without repeats, got {list(self.tasks)}")
        try:
            self.channels = [task_channels(t, num_classes) for t in self.tasks]
        except ValueError as err:
            raise ConfigError(f"model {arch!r}: {err}") from err
        self.arch, self.num_classes = arch, num_classes
        self.net = _build(arch, encoder, sum(self.channels), self.options)
        self.divisor = int(self.net.encoder.output_stride)  # smp's encoders need a multiple of their stride
        if pretrained:
            weights = Encoder(encoder, pretrained=pretrained).body.state_dict()
            self.net.encoder.model.load_state_dict(weights)
        if "depth" in self.tasks:
            self._init_depth_bias()

    def _final_conv(self) -> nn.Conv2d:
        convs = [m for m in self.net.modules() if isinstance(m, nn.Conv2d) and m.out_channels == sum(self.channels)]
        return convs[-1]

    def _init_depth_bias(self, depth: float = 2.5) -> None:
        conv = self._final_conv()
        index = sum(self.channels[: self.tasks.index("depth")])
        with torch.no_grad():
            conv.bias[index] = math.log(math.expm1(depth))

    def forward(self, image: torch.Tensor) -> dict[str, Any]:
        h, w = image.shape[-2:]
        pad_h, pad_w = (-h) % self.divisor, (-w) % self.divisor
        x = F.pad(image, (0, pad_w, 0, pad_h)) if pad_h or pad_w else image
        raw = self.net(x)[..., :h, :w]  # (B, sum of task channels, H, W)
        out: dict[str, Any] = {"aux": {}}
        for task, chunk in zip(self.tasks, torch.split(raw, self.channels, dim=1), strict=True):
            out[task] = activate(task, chunk, min_depth=self.options.min_depth)
        return out


def _variant(
    arch: Architecture,
    encoder: str,
    pretrained: bool | str,
    tasks: Sequence[str] | None,
    num_classes: int | None,
    args: dict[str, Any],
) -> SegmentationNet:
    try:
        options = SegmentationArchOptions(**args)
    except ValidationError as err:
        raise ConfigError(f"model {arch!r}: invalid model.args {args}: {err}") from err
    return SegmentationNet(
        arch, encoder=encoder, pretrained=pretrained, tasks=tasks, num_classes=num_classes, options=options
    )


@register_model(options=SegmentationArchOptions)
def fcn(
    *,
    encoder: str = "resnet18",
    pretrained: bool | str = False,
    tasks: Sequence[str] | None = None,
    num_classes: int | None = None,
    **args: Any,
) -> SegmentationNet:
    """FCN: dilated timm encoder (output stride 8) + conv classifier, semseg logits (ASM's base architecture)."""
    return _variant("fcn", encoder, pretrained, tasks, num_classes, args)


@register_model(options=SegmentationArchOptions)
def deeplab(
    *,
    encoder: str = "resnet18",
    pretrained: bool | str = False,
    tasks: Sequence[str] | None = None,
    num_classes: int | None = None,
    **args: Any,
) -> SegmentationNet:
    """DeepLabV3 (ASPP) on a dilated timm encoder (smp), semseg logits."""
    return _variant("deeplab", encoder, pretrained, tasks, num_classes, args)


@register_model(options=SegmentationArchOptions)
def pspnet(
    *,
    encoder: str = "resnet18",
    pretrained: bool | str = False,
    tasks: Sequence[str] | None = None,
    num_classes: int | None = None,
    **args: Any,
) -> SegmentationNet:
    """PSPNet (pyramid pooling) on a dilated timm encoder at output stride 8 (smp), semseg logits."""
    return _variant("pspnet", encoder, pretrained, tasks, num_classes, args)


@register_model(options=SegmentationArchOptions)
def unet(
    *,
    encoder: str = "resnet18",
    pretrained: bool | str = False,
    tasks: Sequence[str] | None = None,
    num_classes: int | None = None,
    **args: Any,
) -> SegmentationNet:
    """U-Net decoder over every level of a timm encoder (smp), semseg logits."""
    return _variant("unet", encoder, pretrained, tasks, num_classes, args)
