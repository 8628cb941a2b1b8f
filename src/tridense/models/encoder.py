"""Encoders: any timm ``features_only`` model, with pretrained weights from the hub or a local file."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path

import timm
import torch
from torch import nn

from tridense.errors import ConfigError

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def _hub_reachable(host: str = "huggingface.co", port: int = 443, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Encoder(nn.Module):
    """A timm backbone returning a list of feature maps with known channels and strides.

    Args:
        name: any timm model name that supports ``features_only`` (``resnet18``, ``resnet50``,
            ``resnet101``, ``vgg16_bn``, ``convnext_tiny``, ...).
        pretrained: ``False`` (random initialisation), ``True`` (timm's hub; needs a network, and fails fast
            without one), or the path of a local weights file (``.safetensors``, or ``.pth`` / ``.pt`` / ``.bin``
            loaded with ``weights_only=True``) holding the classification model's state dict.
        out_indices: which feature levels to return (timm's indices; default all).
        output_stride: dilate the last stages so that the deepest features have this stride (8 or 16; timm's
            ``output_stride``, supported by ResNets and most CNNs); None keeps the model's own (32).

    Attributes:
        channels: channels of each returned level.
        reductions: stride of each returned level with respect to the input.
    """

    def __init__(
        self,
        name: str = "resnet18",
        *,
        pretrained: bool | str | os.PathLike = False,
        out_indices: Sequence[int] | None = None,
        output_stride: int | None = None,
    ) -> None:
        super().__init__()
        kwargs: dict = {"features_only": True}
        if out_indices is not None:
            kwargs["out_indices"] = tuple(out_indices)
        if output_stride is not None:
            if output_stride not in (8, 16, 32):
                raise ConfigError(f"output_stride must be 8, 16 or 32 (dilated encoder), got {output_stride!r}")
            kwargs["output_stride"] = int(output_stride)
        if not timm.is_model(name):
            close = timm.list_models(f"*{name.split('_')[0]}*")[:12]
            raise ConfigError(f"unknown timm encoder {name!r}; similar names: {close} (see timm.list_models())")
        if pretrained is True:
            if not _hub_reachable():
                raise ConfigError(
                    f"pretrained=True downloads {name!r} weights from timm's hub, which is not reachable from this "
                    "machine; pass a local weights file instead (model.pretrained=/path/to/weights.safetensors)"
                )
            self.body = timm.create_model(name, pretrained=True, **kwargs)
        elif pretrained:
            path = Path(pretrained).expanduser()
            if not path.is_file():
                raise ConfigError(f"pretrained weights file not found: {path}")
            if path.suffix not in WEIGHT_SUFFIXES:
                raise ConfigError(f"pretrained weights must be one of {WEIGHT_SUFFIXES}, got {path.name}")
            # timm loads a local file through the pretrained config (safetensors, or torch.load with
            # weights_only=True) and applies the model's own key filter (classifier removal, conversions).
            self.body = timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs)
        else:
            self.body = timm.create_model(name, pretrained=False, **kwargs)
        self.name = name
        self.channels: list[int] = list(self.body.feature_info.channels())
        self.reductions: list[int] = list(self.body.feature_info.reduction())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x))

    def level(self, reduction: int) -> int:
        """Index of the (last) level with the given stride; raises if the encoder has none."""
        matches = [i for i, r in enumerate(self.reductions) if r == reduction]
        if not matches:
            raise ConfigError(f"encoder {self.name} has no level of stride {reduction}; strides: {self.reductions}")
        return matches[-1]
