"""GAD: Geometry-Aware Distillation for semantic segmentation from RGB alone (Jiao et al., CVPR 2019).

The network of the paper's Fig. 2 (section 3.3):

1. a shared encoder (any timm ``features_only`` model; ResNet-50 in the paper; ``output_stride`` dilates it);
   with ``hha=True`` (Table 4's "+HHA" row) a second encoder of the same kind reads the ground-truth depth
   encoded as HHA (:mod:`tridense.data.hha`) and its features are added to the RGB features level by level;
2. two decoders of four up-convolution blocks (bilinear x2, 3x3 conv-BN-ReLU) from the deepest features:
   the semantic branch and the depth-embedding branch, whose last features are the depth embedding G and
   whose depth head (3x3 conv) is supervised with berHu (``depth``);
3. feature propagation (``feature_propagation``): the depth branch's output of every stage is added to the
   semantic branch's before its next stage (and after the last one);
4. the fusion at the end of the semantic branch (``fusion``): the GAP block (``"gap"``,
   :class:`~tridense.layers.gap.GeometryAwarePropagation`), Fig. 3's vanilla convolution (``"conv"``) or none;
   its output, the distilled features, has a 1x1 segmentation head (side output ``distilled``);
5. skip pyramid fusion (``spf``): four SPF blocks fuse the running features with encoder features of
   decreasing depth (deepest level first): 1x1 conv of the running features, 1x1 lateral conv of the encoder
   level resized (bilinearly) to the running grid, concatenation, 3x3 conv-BN-ReLU; each emits a side
   segmentation output (1x1 conv); the last is the final prediction.

Outputs (model contract): ``semseg`` logits and ``depth`` (metres, when the depth branch exists) at the input
size; ``aux["side"]`` = ``{"distilled": ..., "spf1": ..., "spf2": ..., "spf3": ...}`` segmentation logits at
the decoder grid (stride 2) when SPF is on (otherwise the distilled head *is* the final prediction), which
:class:`~tridense.losses.gad.SideOutputLoss` supervises (eq. 8).

Partial depth supervision (Table 5): ``forward(image, has_depth=...)`` detaches the depth branch's features
of the samples without depth wherever they leave the branch (feature propagation, the GAP guide), so the
branch only runs forward for them and learns from the samples with depth only.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from tridense.errors import ConfigError
from tridense.layers.blocks import ConvBNReLU, upsample_to
from tridense.layers.gap import FUSIONS
from tridense.layers.propagation import build_propagation
from tridense.models.encoder import Encoder
from tridense.models.heads import activate, init_depth_bias
from tridense.models.registry import register_model

#: Tasks GAD can predict: segmentation always, depth when the depth-embedding branch exists.
GAD_TASKS: tuple[str, ...] = ("depth", "semseg")
DEFAULT_DECODER_CHANNELS: tuple[int, int, int, int] = (256, 128, 64, 64)
#: Side outputs in order: the distilled features, then SPF 1-3 (SPF 4's output is the final prediction).
SIDE_OUTPUTS: tuple[str, ...] = ("distilled", "spf1", "spf2", "spf3")


class UpBlock(nn.Module):
    """Up-convolution: bilinear resize to the next grid, then 3x3 conv-BN-ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_channels, out_channels)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        return self.conv(upsample_to(x, size))


class Decoder(nn.Module):
    """Four up-convolution blocks; returns the output of every stage."""

    def __init__(self, in_channels: int, channels: Sequence[int]) -> None:
        super().__init__()
        widths = [in_channels, *channels]
        self.blocks = nn.ModuleList(UpBlock(a, b) for a, b in itertools.pairwise(widths))

    def forward(self, x: Tensor, sizes: Sequence[tuple[int, int]]) -> list[Tensor]:
        out = []
        for block, size in zip(self.blocks, sizes, strict=True):
            x = block(x, size)
            out.append(x)
        return out


class SkipPyramidFusion(nn.Module):
    """One SPF block (Fig. 4): ``y = conv3x3([conv1x1(x), resize(lateral1x1(e))])`` and a side output of y."""

    def __init__(self, in_channels: int, encoder_channels: int, channels: int, num_classes: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(in_channels, channels, 1)
        self.lateral = nn.Conv2d(encoder_channels, channels, 1)
        self.fuse = ConvBNReLU(2 * channels, channels)
        self.side = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: Tensor, encoder_features: Tensor) -> tuple[Tensor, Tensor]:
        x = self.reduce(x)
        e = upsample_to(self.lateral(encoder_features), x.shape[-2:])  # lateral at low resolution, then resize
        y = self.fuse(torch.cat([x, e], dim=1))  # (B, channels, h, w)
        return y, self.side(y)


def _resolve_tasks(tasks: Sequence[str] | None, depth_embedding: bool | None) -> tuple[tuple[str, ...], bool]:
    """GAD's tasks and whether it has the depth branch, from ``tasks`` and ``depth_embedding`` (either may be None)."""
    if tasks is None:
        embed = True if depth_embedding is None else bool(depth_embedding)
        return (("depth", "semseg") if embed else ("semseg",)), embed
    tasks = tuple(tasks)
    bad = [t for t in tasks if t not in GAD_TASKS]
    if bad or "semseg" not in tasks or len(set(tasks)) != len(tasks):
        raise ConfigError(
            f"GAD predicts semseg, and depth through its depth-embedding branch: tasks must be [semseg] or "
            f"[depth, semseg], got {list(tasks)} (set data.tasks)"
        )
    has_depth = "depth" in tasks
    if depth_embedding is not None and bool(depth_embedding) != has_depth:
        raise ConfigError(
            f"depth_embedding={depth_embedding} contradicts tasks {list(tasks)}: the depth branch is what predicts "
            "(and is supervised by) depth; add or remove 'depth' from the tasks"
        )
    return tuple(t for t in GAD_TASKS if t in tasks), has_depth


class GADNet(nn.Module):
    """Geometry-aware distillation network (see the module docstring).

    Args:
        encoder: the shared backbone.
        num_classes: segmentation classes.
        tasks: ``("semseg",)`` or ``("depth", "semseg")``; None: from ``depth_embedding`` (default both).
        depth_embedding: the depth-embedding branch (None: whether ``tasks`` has depth).
        feature_propagation: add the depth branch's stage outputs into the semantic branch.
        fusion: ``"gap"``, ``"conv"`` (vanilla convolution) or ``"none"``.
        spf: the four skip-pyramid-fusion blocks (else the distilled head is the final prediction).
        hha_encoder: a second encoder for the HHA input (Table 4's "+HHA" row), or None.
        decoder_channels: widths of the four up-convolution blocks of each decoder.
        spf_channels: width of the SPF blocks.
        gap_channels: width of GAP's theta, phi and g (default half the last decoder width).
        gap_subsample, gap_mode: key/value pooling and propagation mode of GAP
            (see :class:`~tridense.layers.gap.GeometryAwarePropagation`).
        min_depth: lower bound of the predicted depth (metres).
    """

    #: Batch keys that :meth:`forward` reads as keyword inputs besides the image (``hha`` only with the HHA
    #: stream: the instance narrows it); callers pass them with :func:`tridense.inference.model_inputs`.
    batch_inputs: tuple[str, ...] = ("hha", "has_depth")

    def __init__(
        self,
        encoder: Encoder,
        *,
        num_classes: int,
        tasks: Sequence[str] | None = None,
        depth_embedding: bool | None = None,
        feature_propagation: bool = True,
        fusion: Literal["gap", "conv", "none"] = "gap",
        spf: bool = True,
        hha_encoder: Encoder | None = None,
        decoder_channels: Sequence[int] = DEFAULT_DECODER_CHANNELS,
        spf_channels: int = 64,
        gap_channels: int | None = None,
        gap_subsample: int = 1,
        gap_mode: Literal["auto", "dense", "chunked", "fused"] = "auto",
        min_depth: float = 1e-3,
    ) -> None:
        super().__init__()
        if not num_classes or num_classes < 1:
            raise ConfigError(f"GAD segments: num_classes must be a positive integer, got {num_classes!r}")
        self.tasks, self.depth_embedding = _resolve_tasks(tasks, depth_embedding)
        if fusion not in FUSIONS:
            raise ConfigError(f"unknown fusion {fusion!r}; valid: {list(FUSIONS)}")
        if not self.depth_embedding and (feature_propagation or fusion != "none"):
            raise ConfigError(
                "feature_propagation and fusion 'gap' / 'conv' use the depth embedding; without it (tasks "
                f"{list(self.tasks)}, depth_embedding=False) set feature_propagation: false and fusion: none"
            )
        if fusion != "gap" and (gap_channels is not None or gap_subsample != 1 or gap_mode != "auto"):
            raise ConfigError(f"gap_channels / gap_subsample / gap_mode have no effect with fusion {fusion!r}")
        decoder_channels = tuple(int(c) for c in decoder_channels)
        if len(decoder_channels) != 4 or min(decoder_channels) < 1:
            raise ConfigError(f"decoder_channels must be four positive widths, got {list(decoder_channels)}")
        if len(encoder.channels) < 4:
            raise ConfigError(f"encoder {encoder.name} has {len(encoder.channels)} feature levels; GAD needs 4")
        if hha_encoder is not None and hha_encoder.channels != encoder.channels:
            raise ConfigError("the HHA encoder must have the RGB encoder's architecture (same channels per level)")
        self.encoder, self.encoder_hha = encoder, hha_encoder
        self.batch_inputs = ("hha", "has_depth") if hha_encoder is not None else ("has_depth",)
        self.num_classes, self.min_depth = int(num_classes), min_depth
        self.feature_propagation, self.fusion_kind, self.use_spf = feature_propagation, fusion, spf

        deepest = encoder.channels[-1]
        self.sem_decoder = Decoder(deepest, decoder_channels)
        width = decoder_channels[-1]
        if self.depth_embedding:
            self.depth_decoder = Decoder(deepest, decoder_channels)
            self.depth_head = nn.Conv2d(width, 1, 3, padding=1)
            init_depth_bias(self.depth_head)
        # The fusion is a propagation block (tridense.layers.propagation) guided by the depth embedding.
        self.fusion: nn.Module | None = None
        if fusion != "none":
            options = {"subsample": gap_subsample, "mode": gap_mode} if fusion == "gap" else {}
            self.fusion = build_propagation(
                fusion, tasks=GAD_TASKS, channels=width, inter_channels=gap_channels, guide="depth", **options
            )
        self.distilled_head = nn.Conv2d(width, num_classes, 1)
        if spf:
            # Encoder levels of decreasing depth: the deepest four, deepest first.
            self.spf_levels = list(range(len(encoder.channels) - 1, len(encoder.channels) - 5, -1))
            widths = [width, spf_channels, spf_channels, spf_channels]
            self.spf = nn.ModuleList(
                SkipPyramidFusion(w, encoder.channels[level], spf_channels, num_classes)
                for w, level in zip(widths, self.spf_levels, strict=True)
            )

    # ----------------------------------------------------------------------------------------------
    def decoder_sizes(self, image_size: tuple[int, int], deepest_stride: int) -> list[tuple[int, int]]:
        """Grids of the four decoder stages: strides deepest/2, /4, /8, /16, never finer than 2."""
        h, w = image_size
        strides = [max(deepest_stride // 2 ** (k + 1), 2) for k in range(4)]
        return [(-(-h // s), -(-w // s)) for s in strides]

    def encode(self, image: Tensor, hha: Tensor | None) -> list[Tensor]:
        feats = self.encoder(image)
        if self.encoder_hha is None:
            if hha is not None:
                raise ValueError("this GAD model has no HHA stream (hha=False) but was given an hha input")
            return feats
        if hha is None:
            raise ValueError("this GAD model reads HHA (hha=True): pass hha=(B, 3, H, W), see tridense.data.hha")
        if hha.shape[0] != image.shape[0] or hha.shape[2:] != image.shape[2:] or hha.shape[1] != 3:
            raise ValueError(f"hha must be (B, 3, H, W) like the image {tuple(image.shape)}, got {tuple(hha.shape)}")
        return [f + g for f, g in zip(feats, self.encoder_hha(hha), strict=True)]

    def forward(self, image: Tensor, *, hha: Tensor | None = None, has_depth: Tensor | None = None) -> dict[str, Any]:
        """Segmentation logits, the auxiliary depth and the side outputs.

        Args:
            image: (B, 3, H, W) normalised RGB.
            hha: (B, 3, H, W) the HHA encoding of the ground-truth depth (only with the HHA stream).
            has_depth: (B,) bool, samples with depth ground truth; the depth branch's features of the others
                are detached where they leave the branch (Table 5's partial supervision). None: all.
        """
        size = image.shape[-2:]
        feats = self.encode(image, hha)
        deepest = feats[-1]
        stride = max(1, round(size[0] / deepest.shape[-2]))
        sizes = self.decoder_sizes((int(size[0]), int(size[1])), stride)
        sem = self.sem_decoder.blocks
        out: dict[str, Any] = {"aux": {}}
        if self.depth_embedding:
            depth_feats = self.depth_decoder(deepest, sizes)
            if has_depth is not None:
                keep = has_depth.to(device=image.device, dtype=torch.bool).view(-1, 1, 1, 1)
                depth_feats = [torch.where(keep, d, d.detach()) for d in depth_feats]
            out["depth"] = activate(
                "depth", upsample_to(self.depth_head(depth_feats[-1]), size), min_depth=self.min_depth
            )
        x = deepest
        for k, (block, grid) in enumerate(zip(sem, sizes, strict=True)):
            x = block(x, grid)
            if self.feature_propagation:
                x = x + depth_feats[k]
        if self.fusion is not None:
            fused, _ = self.fusion.propagate({"depth": depth_feats[-1], "semseg": x}, {})
            x = fused["semseg"]
        distilled = self.distilled_head(x)
        if not self.use_spf:
            out["semseg"] = activate("semseg", upsample_to(distilled, size))
            return out
        sides = [distilled]
        for block, level in zip(self.spf, self.spf_levels, strict=True):
            x, logits = block(x, feats[level])
            sides.append(logits)
        out["semseg"] = activate("semseg", upsample_to(sides[-1], size))
        out["aux"]["side"] = dict(zip(SIDE_OUTPUTS, sides[:-1], strict=True))
        return out


# ------------------------------------------------------------------------------------------ options
class GADOptions(BaseModel):
    """The keys allowed in ``model.args`` of the GAD variants (for the registry's ``options=``).

    Validation mirrors :class:`GADNet`'s own checks, so a config fails when it is read, naming the key.
    """

    model_config = ConfigDict(extra="forbid")

    depth_embedding: bool | None = None
    feature_propagation: bool = True
    fusion: Literal["gap", "conv", "none"] = "gap"
    spf: bool = True
    hha: bool = False
    output_stride: Literal[8, 16, 32] | None = None
    decoder_channels: tuple[int, int, int, int] = DEFAULT_DECODER_CHANNELS
    spf_channels: int = Field(64, ge=1)
    gap_channels: int | None = Field(None, ge=1)
    gap_subsample: int = Field(1, ge=1)
    gap_mode: Literal["auto", "dense", "chunked", "fused"] = "auto"
    min_depth: float = Field(1e-3, gt=0)

    @model_validator(mode="after")
    def _effective(self) -> GADOptions:
        if self.depth_embedding is False and (self.feature_propagation or self.fusion != "none"):
            raise ValueError("feature_propagation and fusion 'gap' / 'conv' need the depth embedding")
        gap_keys = {"gap_channels", "gap_subsample", "gap_mode"} & self.model_fields_set
        if self.fusion != "gap" and gap_keys:
            raise ValueError(f"{sorted(gap_keys)} have no effect with fusion {self.fusion!r}")
        if min(self.decoder_channels) < 1:
            raise ValueError(f"decoder_channels must be positive, got {list(self.decoder_channels)}")
        return self


#: The registry's ``default_loss=`` of the GAD variants: eq. 8 with focal L_s and L_s,k.
GAD_DEFAULT_LOSS: dict[str, Any] = {
    "aux_weights": {},
    "extra": {"side": {"weight": 1.0, "kind": "focal", "gamma": 2.0}},
}


# ------------------------------------------------------------------------------------------ variants
def _gad(
    encoder: str,
    pretrained: bool | str,
    tasks: Sequence[str] | None,
    num_classes: int | None,
    *,
    hha: bool = False,
    output_stride: int | None = None,
    **args: Any,
) -> GADNet:
    if num_classes is None:
        raise ConfigError("GAD segments: num_classes is required (the dataset's number of classes)")
    timm_kwargs = {} if output_stride is None else {"output_stride": output_stride}  # dilated when asked
    backbone = Encoder(encoder, pretrained=pretrained, **timm_kwargs)
    hha_encoder = Encoder(encoder, pretrained=pretrained, **timm_kwargs) if hha else None
    return GADNet(backbone, num_classes=num_classes, tasks=tasks, hha_encoder=hha_encoder, **args)


@register_model(options=GADOptions, default_loss=GAD_DEFAULT_LOSS)
def gad(
    *,
    encoder: str = "resnet50",
    pretrained: bool | str = False,
    tasks: Sequence[str] | None = None,
    num_classes: int | None = None,
    **args: Any,
) -> GADNet:
    """GAD (depth embedding, feature propagation, GAP, skip pyramid fusion); any encoder, ResNet-50 default."""
    return _gad(encoder, pretrained, tasks, num_classes, **args)


@register_model(options=GADOptions, default_loss=GAD_DEFAULT_LOSS)
def gad_resnet50(
    *,
    encoder: str = "resnet50",
    pretrained: bool | str = False,
    tasks: Sequence[str] | None = None,
    num_classes: int | None = None,
    **args: Any,
) -> GADNet:
    """GAD with the paper's ResNet-50 encoder (``encoder`` must stay resnet50)."""
    if encoder != "resnet50":
        raise ConfigError(f"gad_resnet50 has a ResNet-50 encoder; got encoder={encoder!r} (use model gad)")
    return _gad("resnet50", pretrained, tasks, num_classes, **args)
