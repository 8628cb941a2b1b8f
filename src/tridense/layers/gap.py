"""GAD's fusion blocks: geometry-aware propagation (GAP) and the "vanilla convolution" alternative.

Jiao et al., "Geometry-Aware Distillation for Indoor Semantic Segmentation" (CVPR 2019), section 3.2 and
Fig. 3. For semantic features p (B, C, H, W) and the learned depth embedding G (B, C_g, H, W):

* GAP (eq. 4-5, with the authors' softmax normalisation): ``theta(G)``, ``phi(G)`` are 1x1 conv + BN,
  ``g(p)`` a 1x1 conv, all to ``inter_channels``; the affinity ``W = row_softmax(theta(G) phi(G)^T)`` over all
  N = H*W positions is applied to ``g(p)``; the result goes through ``BN(conv1x1(.))`` back to C channels and
  is added to p: ``q = p + BN(conv(W g(p)))``. W is never formed: the product runs through the library's
  exact propagation (:func:`tridense.layers.affinity.diffuse`, one step, one "task", queries theta(G) and keys
  phi(G)), so the block works at the decoder's full resolution in the ``dense``, ``chunked`` or ``fused``
  (scaled-dot-product attention) mode, all exact.
* Vanilla convolution (Fig. 3, bottom): the depth embedding and the semantic features are concatenated and
  fused by convolutions, with the same residual form ``q = p + BN(conv1x1(ReLU(BN(conv3x3([p, G])))))``, so
  the two blocks differ only in how G acts (as an affinity guide or as more channels).

Both blocks take ``(features, guide)`` and return features of the input's shape. Through the propagation
protocol (:mod:`tridense.layers.propagation`) they are the kinds ``"gap"`` (:class:`GAPPropagation`) and
``"conv"`` (:class:`ConvFusionPropagation`): built with ``build_propagation(kind, tasks=(guide, target),
channels=C, guide=guide)``, they map ``{guide: G, target: p}`` to ``{guide: G, target: q}`` and pass the
initial predictions through (every non-guide task is fused by the same block); GAD builds its fusion this way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from tridense.errors import ConfigError
from tridense.layers.affinity import check_mode, diffuse
from tridense.layers.propagation import TaskMaps, register_propagation

FUSIONS: tuple[str, ...] = ("gap", "conv", "none")


def _conv_bn(in_channels: int, out_channels: int, kernel_size: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    )


def _check_inputs(features: Tensor, guide: Tensor, channels: int, guide_channels: int) -> None:
    if features.dim() != 4 or features.shape[1] != channels:
        raise ValueError(f"features must be (B, {channels}, H, W), got {tuple(features.shape)}")
    if guide.dim() != 4 or guide.shape[1] != guide_channels or guide.shape[0] != features.shape[0]:
        raise ValueError(f"guide must be (B={features.shape[0]}, {guide_channels}, H, W), got {tuple(guide.shape)}")
    if guide.shape[2:] != features.shape[2:]:
        raise ValueError(f"guide grid {tuple(guide.shape[2:])} differs from the features' {tuple(features.shape[2:])}")


class GeometryAwarePropagation(nn.Module):
    """The GAP block: ``q = p + BN(conv(row_softmax(theta(G) phi(G)^T) g(p)))`` (see the module docstring).

    Args:
        channels: C, channels of the semantic features p (kept by the block).
        guide_channels: C_g, channels of the depth embedding G.
        inter_channels: width of theta, phi and g (default ``channels // 2``, as non-local blocks).
        subsample: max-pool keys and values ``subsample`` x ``subsample`` (1: every pair, the paper).
        mode: ``"auto"``, ``"dense"``, ``"chunked"`` or ``"fused"`` (see :mod:`tridense.layers.affinity`).
        memory_budget_mb: dense matrices allowed by ``"auto"``.
        chunk_rows: query rows per chunk of the dense and chunked paths.
        zero_init: start the output BN's scale at zero, so the block begins as the identity (non-local
            networks' initialisation); the affinity branch then learns from the first step on through it.
    """

    def __init__(
        self,
        channels: int,
        guide_channels: int,
        inter_channels: int | None = None,
        *,
        subsample: int = 1,
        mode: Literal["auto", "dense", "chunked", "fused"] = "auto",
        memory_budget_mb: float = 256.0,
        chunk_rows: int | None = None,
        zero_init: bool = True,
    ) -> None:
        super().__init__()
        if channels < 1 or guide_channels < 1:
            raise ConfigError(f"GAP channels must be positive, got channels={channels}, guide={guide_channels}")
        check_mode(mode, "dot")
        if not isinstance(subsample, int) or subsample < 1:
            raise ConfigError(f"GAP subsample must be an integer >= 1, got {subsample!r}")
        inter = inter_channels or max(1, channels // 2)
        self.channels, self.guide_channels, self.inter_channels = channels, guide_channels, inter
        self.subsample, self.mode = subsample, mode
        self.memory_budget_mb, self.chunk_rows = memory_budget_mb, chunk_rows
        self.theta = _conv_bn(guide_channels, inter)
        self.phi = _conv_bn(guide_channels, inter)
        self.g = nn.Conv2d(channels, inter, 1)
        self.out = _conv_bn(inter, channels)
        if zero_init:
            nn.init.zeros_(self.out[1].weight)

    def affinity_product(self, features: Tensor, guide: Tensor) -> Tensor:
        """``W g(p)`` before the output projection: (B, C, H, W), (B, C_g, H, W) -> (B, inter, H, W)."""
        _check_inputs(features, guide, self.channels, self.guide_channels)
        b, _, h, w = features.shape
        queries = self.theta(guide).flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, N, inter)
        keys = self.phi(guide).flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, N, inter)
        values = self.g(features).flatten(2).transpose(1, 2)  # (B, N, inter)
        y = diffuse(
            queries,
            values,
            [self.inter_channels],
            None,
            size=(h, w),
            iterations=1,
            similarity="dot",
            subsample=self.subsample,
            mode=self.mode,
            memory_budget_mb=self.memory_budget_mb,
            chunk_rows=self.chunk_rows,
            key_embeddings=keys,
        )  # (B, N, inter)
        return y.transpose(1, 2).reshape(b, self.inter_channels, h, w)

    def forward(self, features: Tensor, guide: Tensor) -> Tensor:
        """Distilled features ``p + BN(conv(W g(p)))``, (B, C, H, W)."""
        return features + self.out(self.affinity_product(features, guide))

    def extra_repr(self) -> str:
        return f"inter_channels={self.inter_channels}, subsample={self.subsample}, mode={self.mode!r}"


class ConvFusion(nn.Module):
    """Fig. 3's vanilla convolution block: ``q = p + BN(conv1x1(ReLU(BN(conv3x3([p, G])))))``.

    Args:
        channels: C, channels of the semantic features p (kept by the block).
        guide_channels: C_g, channels of the depth embedding G.
        inter_channels: width of the 3x3 fusion (default ``channels // 2``, as GAP's).
        zero_init: start the output BN's scale at zero (the block begins as the identity, as GAP).
    """

    def __init__(
        self, channels: int, guide_channels: int, inter_channels: int | None = None, *, zero_init: bool = True
    ) -> None:
        super().__init__()
        if channels < 1 or guide_channels < 1:
            raise ConfigError(f"fusion channels must be positive, got channels={channels}, guide={guide_channels}")
        inter = inter_channels or max(1, channels // 2)
        self.channels, self.guide_channels, self.inter_channels = channels, guide_channels, inter
        self.fuse = nn.Sequential(_conv_bn(channels + guide_channels, inter, 3), nn.ReLU(inplace=True))
        self.out = _conv_bn(inter, channels)
        if zero_init:
            nn.init.zeros_(self.out[1].weight)

    def forward(self, features: Tensor, guide: Tensor) -> Tensor:
        _check_inputs(features, guide, self.channels, self.guide_channels)
        return features + self.out(self.fuse(torch.cat([features, guide], dim=1)))


def build_fusion(
    kind: str, channels: int, guide_channels: int, inter_channels: int | None = None, **gap_options
) -> nn.Module | None:
    """GAD's fusion block by name: ``"gap"``, ``"conv"`` (vanilla convolution) or ``"none"`` (None).

    ``gap_options`` (``subsample``, ``mode``, ``memory_budget_mb``, ``chunk_rows``, ``zero_init``) configure GAP;
    only ``zero_init`` applies to ``"conv"``, and any option with ``"none"`` is an error.
    """
    if kind == "gap":
        return GeometryAwarePropagation(channels, guide_channels, inter_channels, **gap_options)
    if kind == "conv":
        unused = sorted(set(gap_options) - {"zero_init"})
        if unused:
            raise ConfigError(f"options {unused} apply to fusion 'gap' only, not 'conv'")
        return ConvFusion(channels, guide_channels, inter_channels, **gap_options)
    if kind == "none":
        if gap_options:
            raise ConfigError(f"options {sorted(gap_options)} have no effect with fusion 'none'")
        return None
    raise ConfigError(f"unknown GAD fusion {kind!r}; valid: {', '.join(FUSIONS)}")


def _targets(kind: str, tasks: Sequence[str], guide: str) -> tuple[str, ...]:
    """The tasks a guided fusion over ``tasks`` changes: every one but ``guide``."""
    tasks = tuple(tasks)
    if guide not in tasks or len(tasks) < 2:
        raise ConfigError(
            f"propagation {kind!r} fuses task features guided by another task's: the tasks must include the guide "
            f"{guide!r} and at least one other; got {list(tasks)}"
        )
    return tuple(t for t in tasks if t != guide)


class _GuidedPropagation:
    """The propagation protocol over a ``(features, guide) -> features`` residual block (a mixin before it).

    The block (one set of parameters) fuses every non-guide task's features with the guide's (GAD has one
    target, segmentation); ``iterations`` applies it that many times (1 by default; 0 is the identity).
    """

    tasks: tuple[str, ...]
    guide: str
    targets: tuple[str, ...]
    iterations: int

    def propagate(
        self, features: Mapping[str, Tensor], initial: Mapping[str, Tensor], iterations: int | None = None
    ) -> tuple[TaskMaps, TaskMaps]:
        """``{guide: G, t: p_t}`` -> ``{guide: G, t: block(p_t, G)}``; initial predictions unchanged."""
        steps = self.iterations if iterations is None else iterations
        out = dict(features)
        for task in self.targets:
            for _ in range(steps):
                out[task] = self(out[task], features[self.guide])
        return out, dict(initial)

    def set_iterations(self, iterations: int) -> None:
        self.iterations = int(iterations)


@register_propagation("gap")
class GAPPropagation(_GuidedPropagation, GeometryAwarePropagation):
    """GAP as a propagation block: the ``guide`` task's features (GAD: the depth embedding) steer the propagation
    of the other tasks' (one block shared by them; GAD has one, segmentation); parameter names are
    :class:`GeometryAwarePropagation`'s (``theta``, ``phi``, ``g``, ``out``).

    Args:
        tasks: the tasks, ``guide`` among them.
        channels: channels of the target's features.
        inter_channels: width of theta, phi and g.
        guide: the guiding task.
        guide_channels: channels of the guide's features (default ``channels``).
        **options: :class:`GeometryAwarePropagation`'s (``subsample``, ``mode``, ``zero_init``, ...).
    """

    def __init__(
        self,
        tasks: Sequence[str],
        channels: int,
        inter_channels: int | None = None,
        *,
        guide: str = "depth",
        guide_channels: int | None = None,
        **options: Any,
    ) -> None:
        targets = _targets("gap", tasks, guide)
        super().__init__(channels, guide_channels or channels, inter_channels, **options)
        self.tasks, self.guide, self.targets, self.iterations = tuple(tasks), guide, targets, 1


@register_propagation("conv")
class ConvFusionPropagation(_GuidedPropagation, ConvFusion):
    """Fig. 3's vanilla convolution as a propagation block (the guide's features concatenated to the target's);
    parameter names are :class:`ConvFusion`'s. Arguments as :class:`GAPPropagation`'s (only ``zero_init``)."""

    def __init__(
        self,
        tasks: Sequence[str],
        channels: int,
        inter_channels: int | None = None,
        *,
        guide: str = "depth",
        guide_channels: int | None = None,
        zero_init: bool = True,
    ) -> None:
        targets = _targets("conv", tasks, guide)
        super().__init__(channels, guide_channels or channels, inter_channels, zero_init=zero_init)
        self.tasks, self.guide, self.targets, self.iterations = tuple(tasks), guide, targets, 1
