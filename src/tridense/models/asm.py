"""Networks of ASM (Hwang et al., 2019): the structure analyzer and regularizer, and the GAN/cGAN discriminators.

**Structure analyzer / regularizer** (:class:`StructureAnalyzer`): a U-Net on task maps only (it never sees
the image): one-hot or softmax segmentation, log-depth, unit normals, several tasks side by side. As in the
authors' released code (``stanford_scenes/models/analyzer.py``):

- every convolution is 3x3 with a bias, no normalisation; the encoder has ``n`` levels of one stride-2
  convolution each (widths ``widths[0..n-1]``), the decoder ``n - 1`` levels of one stride-1 convolution
  each, then a bilinear upsampling to the next finer level and a concatenation with that level's encoder
  output (the skip); a 1x1 convolution maps the last decoder level to the input channels, upsampled to the
  input size: the **reconstruction** of the structure regularizer. ``layers = 2n - 1`` convolutions in all:
  5, 7 or 9 in the paper (segmentation of VOC, Weizmann horse, 2D-3D-S depth and normals);
- each task map gets its own first convolution (``stem_width`` channels, ``widths[0] // 2`` by default as
  in the authors' code), concatenated: for joint depth and normals the two are joined after conv1;
- the **structure features** are the convolution outputs *before* their ReLU, set to zero where the
  ground truth is invalid (the invalid mask max-pooled to each level, so any invalid input in a
  window invalidates it), and L2-normalised over channels. They are named ``conv1`` .. ``conv<2n-1>`` in
  order (encoder, then decoder); :func:`parse_layers` reads the layer sets of the paper's Table 1.

The one difference from the released code: stride-2 convolutions pad by one pixel (TensorFlow ``VALID``
padding there), so any input size works and level k has size ceil(H / 2^k).

**Discriminators** for the GAN and cGAN baselines (:class:`PatchDiscriminator`): the PatchGAN of Isola et
al. (pix2pix): 4x4 convolutions, stride 2 then 1, batch norm except on the first, LeakyReLU(0.2), one
logit per patch. The conditional one (cGAN) gets the image concatenated with the task maps, the
unconditional one (GAN, after Luc et al.) the task maps only and averages its patch logits into one
logit per image (``global_pool``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tridense.errors import ConfigError
from tridense.ops import unit_vectors

#: The authors' analyzer widths for 2D-3D-S (9 layers); shorter analyzers use a prefix.
DEFAULT_WIDTHS: tuple[int, ...] = (32, 64, 128, 128, 128)
PAPER_LAYERS: tuple[int, ...] = (5, 7, 9)

_LAYER_ITEM = re.compile(r"^conv(\d+)(?:-(?:conv)?(\d+))?$")


def parse_layers(spec: str | Sequence[str], num_layers: int | None = None) -> tuple[str, ...]:
    """A layer set -> sorted unique layer names.

    ``"conv1-2"`` -> (conv1, conv2); ``"conv3"``; ``"conv1-3"``; ``"conv1,conv3"``; a list of such items.
    With ``num_layers``, every layer must exist (1 .. num_layers), else a ConfigError.
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    indices: set[int] = set()
    for item in items:
        match = _LAYER_ITEM.match(str(item).strip())
        if not match:
            raise ConfigError(
                f"analyzer layer {item!r} in {spec!r} is not 'convK' or 'convA-B' (e.g. conv1, conv1-2, conv1-3)"
            )
        first = int(match[1])
        last = int(match[2]) if match[2] else first
        if first < 1 or last < first:
            raise ConfigError(f"analyzer layer range {item!r} must run from conv1 upwards, low to high")
        indices.update(range(first, last + 1))
    if not indices:
        raise ConfigError(f"analyzer layer set {spec!r} is empty")
    if num_layers is not None and max(indices) > num_layers:
        raise ConfigError(
            f"analyzer layer set {spec!r} names conv{max(indices)}, the analyzer has conv1..conv{num_layers}"
        )
    return tuple(f"conv{i}" for i in sorted(indices))


def analyzer_widths(layers: int, widths: Sequence[int] | None = None) -> tuple[int, ...]:
    """Encoder widths of a ``layers``-convolution analyzer (``(layers + 1) / 2`` levels)."""
    if layers < 3 or layers % 2 == 0:
        raise ConfigError(f"analyzer layers must be an odd number >= 3 (the paper uses 5, 7, 9), got {layers}")
    levels = (layers + 1) // 2
    if widths is None:
        if levels > len(DEFAULT_WIDTHS):
            raise ConfigError(f"give the widths of a {layers}-layer analyzer ({levels} levels) explicitly")
        return DEFAULT_WIDTHS[:levels]
    widths = tuple(int(w) for w in widths)
    if len(widths) != levels or any(w < 1 for w in widths):
        raise ConfigError(f"a {layers}-layer analyzer needs {levels} positive encoder widths, got {list(widths)}")
    return widths


@dataclass
class AnalyzerOutput:
    """What :class:`StructureAnalyzer` returns.

    Attributes:
        features: layer name -> L2-normalised structure features (B, C_l, H_l, W_l), zero where invalid.
        reconstruction: the regularizer's output (B, sum of input channels, H, W), raw, or None.
        valid: layer name -> the validity (B, 1, H_l, W_l) of its features.
    """

    features: dict[str, torch.Tensor]
    reconstruction: torch.Tensor | None
    valid: dict[str, torch.Tensor]


class StructureRegularizer(nn.Module):
    """The decoder of the structure autoencoder: n - 1 conv levels with skips, a 1x1 output convolution.

    Args:
        widths: encoder level widths (the skips' channels; level 0 is the concatenated first convolutions).
        out_channels: reconstruction channels (the analyzer's input channels).
    """

    def __init__(self, widths: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList()
        in_channels = widths[-1]
        for level in range(len(widths) - 1, 0, -1):  # decoder level at encoder level `level`'s resolution
            self.convs.append(nn.Conv2d(in_channels, widths[level - 1], 3, padding=1))
            in_channels = 2 * widths[level - 1]  # upsampled output + skip
        self.head = nn.Conv2d(in_channels, out_channels, 1)


class StructureAnalyzer(nn.Module):
    """ASM's structure analyzer (U-Net encoder) with its structure regularizer (decoder), see the module doc.

    Args:
        in_channels: channels of each task map, in input order (e.g. ``[21]``, ``[1]``, ``[3]``, ``[1, 3]``).
        layers: number of convolutions, 2n - 1 for n levels (5, 7 or 9 in the paper).
        widths: the n encoder widths (default: the authors' 32, 64, 128, 128, 128, truncated).
        stem_width: channels of each task map's first convolution (default ``widths[0] // 2``).
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        *,
        layers: int = 9,
        widths: Sequence[int] | None = None,
        stem_width: int | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = tuple(int(c) for c in in_channels)
        if not self.in_channels or any(c < 1 for c in self.in_channels):
            raise ConfigError(f"analyzer in_channels must be positive channel counts, got {list(in_channels)}")
        widths = analyzer_widths(layers, widths)
        stem = stem_width or max(1, widths[0] // 2)
        self.num_layers, self.levels = layers, len(widths)
        self.stems = nn.ModuleList(nn.Conv2d(c, stem, 3, stride=2, padding=1) for c in self.in_channels)
        level_widths = [stem * len(self.in_channels), *widths[1:]]  # conv1's output is the concatenated stems
        self.encoder = nn.ModuleList(
            nn.Conv2d(level_widths[k - 1], level_widths[k], 3, stride=2, padding=1) for k in range(1, self.levels)
        )
        self.regularizer = StructureRegularizer(level_widths, sum(self.in_channels))
        self.layer_names = tuple(f"conv{i}" for i in range(1, layers + 1))

    def forward(
        self,
        maps: Sequence[torch.Tensor],
        valid: torch.Tensor | None = None,
        *,
        layers: Sequence[str] | None = None,
        reconstruct: bool = True,
    ) -> AnalyzerOutput:
        """Structure features (and the reconstruction) of task maps.

        Args:
            maps: one (B, C_t, H, W) map per entry of ``in_channels``.
            valid: (B, 1, H, W) or (B, H, W) bool, where the ground truth is valid (default: everywhere).
            layers: which features to return (default all); decoder layers are computed only when needed.
            reconstruct: also run the regularizer's output convolution.
        """
        if len(maps) != len(self.in_channels):
            raise ValueError(f"analyzer takes {len(self.in_channels)} task maps, got {len(maps)}")
        for m, c in zip(maps, self.in_channels, strict=True):
            if m.ndim != 4 or m.shape[1] != c or m.shape[-2:] != maps[0].shape[-2:]:
                raise ValueError(f"task maps must be (B, C, H, W) of one size with C = {list(self.in_channels)}")
        wanted = set(self.layer_names if layers is None else layers)
        unknown = wanted - set(self.layer_names)
        if unknown:
            raise ValueError(f"unknown analyzer layers {sorted(unknown)}; this analyzer has {list(self.layer_names)}")
        size = maps[0].shape[-2:]
        invalid = torch.zeros_like(maps[0][:, :1], dtype=torch.float32)  # (B, 1, H, W)
        if valid is not None:
            invalid = (~(valid if valid.ndim == 4 else valid[:, None]).bool()).float()
        raw: dict[str, torch.Tensor] = {}
        masks: list[torch.Tensor] = []  # validity (B, 1, h_k, w_k) of encoder level k
        skips: list[torch.Tensor] = []
        x = torch.cat([stem(m) for stem, m in zip(self.stems, maps, strict=True)], dim=1)  # (B, C_0, H/2, W/2)
        for k in range(self.levels):
            if k > 0:
                x = self.encoder[k - 1](x)
            invalid = F.max_pool2d(invalid, 3, stride=2, padding=1)
            masks.append(invalid < 0.5)
            raw[f"conv{k + 1}"] = x * masks[-1]
            x = F.relu(x)
            skips.append(x)
        decoder_needed = reconstruct or any(int(n[4:]) > self.levels for n in wanted)
        if decoder_needed:
            for j, conv in enumerate(self.regularizer.convs):
                level = self.levels - 1 - j  # resolution of this decoder convolution
                x = conv(x)
                raw[f"conv{self.levels + j + 1}"] = x * masks[level]
                x = F.relu(x)
                x = F.interpolate(x, size=skips[level - 1].shape[-2:], mode="bilinear", align_corners=False)
                x = torch.cat([x, skips[level - 1]], dim=1)
        reconstruction = None
        if reconstruct:
            reconstruction = F.interpolate(self.regularizer.head(x), size=size, mode="bilinear", align_corners=False)
        features = {n: unit_vectors(raw[n], dim=1, eps=1e-12) for n in self.layer_names if n in wanted and n in raw}
        level_of = {f"conv{k + 1}": k for k in range(self.levels)}
        level_of.update({f"conv{self.levels + j + 1}": self.levels - 1 - j for j in range(self.levels - 1)})
        return AnalyzerOutput(features, reconstruction, {n: masks[level_of[n]] for n in features})


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (Isola et al.): one logit per overlapping patch, or per image with ``global_pool``.

    Args:
        in_channels: input channels (task maps; plus 3 image channels for the conditional cGAN).
        width: channels of the first layer, doubled per stride-2 layer up to 8x.
        num_layers: stride-2 layers (3: the 70x70 PatchGAN).
        global_pool: average the patch logits into one logit per image (the unconditional GAN baseline).
    """

    def __init__(self, in_channels: int, *, width: int = 64, num_layers: int = 3, global_pool: bool = False) -> None:
        super().__init__()
        if in_channels < 1 or width < 1 or num_layers < 1:
            raise ConfigError(
                f"discriminator needs positive in_channels, width, num_layers; got {in_channels}, {width}, {num_layers}"
            )
        blocks: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        channels = width
        for k in range(1, num_layers + 1):
            out = width * min(2**k, 8)
            stride = 2 if k < num_layers else 1
            blocks += [
                nn.Conv2d(channels, out, 4, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.LeakyReLU(0.2, True),
            ]
            channels = out
        blocks.append(nn.Conv2d(channels, 1, 4, stride=1, padding=1))
        self.body = nn.Sequential(*blocks)
        self.global_pool = global_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> patch logits (B, 1, h, w), or (B, 1) with ``global_pool``."""
        logits = self.body(x)
        return logits.mean(dim=(2, 3)) if self.global_pool else logits
