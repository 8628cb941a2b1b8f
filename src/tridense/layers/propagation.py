"""The propagation protocol: blocks that diffuse per-task features and initial predictions.

A propagation block sits between a multi-task network's task features and its decoders (PAP's section 4.3,
the baselines of its Table 2, GAD's GAP block). Every block has the same interface::

    features, initial = block.propagate(features, initial, iterations=None)

mapping the task features ``{task: (B, C, h, w)}`` and the initial predictions ``{task: (B, C_t, h, w)}``
(same grid) to diffused ones with the same keys and shapes; ``set_iterations(n)`` changes the diffusion
steps of blocks that iterate (a no-op for the others). Blocks are built by name with
:func:`build_propagation`; a new kind registers its builder with :func:`register_propagation`.

Kinds: ``"pap"`` (:class:`~tridense.layers.affinity.PatternAffinitivePropagation`, cross-task affinities
diffusing both signals), ``"cross_stitch"`` (linear mixing of the features, Misra et al.), ``"cspn"`` (local
spatial propagation, Cheng et al., diffusing both signals; per-task kernels combined across tasks by default),
``"none"`` (identity), and GAD's ``"gap"`` and ``"conv"`` (:mod:`tridense.layers.gap`: a guide task's features
steer the others').
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from tridense.errors import ConfigError
from tridense.layers.affinity import PatternAffinitivePropagation
from tridense.layers.cross_stitch import CrossStitch
from tridense.layers.cspn import SpatialPropagation, combine_kernels
from tridense.layers.cspn import propagate as cspn_propagate

TaskMaps = dict[str, Tensor]


@runtime_checkable
class Propagation(Protocol):
    """What a multi-task network needs of a propagation block (an ``nn.Module``)."""

    tasks: tuple[str, ...]

    def propagate(
        self, features: Mapping[str, Tensor], initial: Mapping[str, Tensor], iterations: int | None = None
    ) -> tuple[TaskMaps, TaskMaps]:
        """Diffused ``(features, initial)``, same keys and shapes as the inputs."""
        ...

    def set_iterations(self, iterations: int) -> None:
        """Change the diffusion steps (blocks that do not iterate ignore it)."""
        ...


class PAPPropagation(PatternAffinitivePropagation):
    """PAP's cross-task + task-specific propagation over named tasks; diffuses initial prediction and features.

    Parameters keep :class:`PatternAffinitivePropagation`'s names (``projections.*``, ``mixing_logits``, ...).
    """

    def __init__(self, tasks: Sequence[str], channels: int, affinity_channels: int | None = None, **options: Any):
        super().__init__(channels, affinity_channels or channels // 2, num_tasks=len(tasks), **options)
        self.tasks = tuple(tasks)

    def propagate(
        self, features: Mapping[str, Tensor], initial: Mapping[str, Tensor], iterations: int | None = None
    ) -> tuple[TaskMaps, TaskMaps]:
        diffused = self([features[t] for t in self.tasks], [[initial[t], features[t]] for t in self.tasks], iterations)
        return (
            {t: d[1] for t, d in zip(self.tasks, diffused, strict=True)},
            {t: d[0] for t, d in zip(self.tasks, diffused, strict=True)},
        )

    def set_iterations(self, iterations: int) -> None:
        self.iterations = iterations


class CrossStitchPropagation(CrossStitch):
    """Cross-stitch units over named tasks: the features are mixed, the initial predictions kept."""

    def __init__(self, tasks: Sequence[str], channels: int, self_weight: float = 0.9) -> None:
        super().__init__(len(tasks), channels, self_weight)
        self.tasks = tuple(tasks)

    def propagate(
        self, features: Mapping[str, Tensor], initial: Mapping[str, Tensor], iterations: int | None = None
    ) -> tuple[TaskMaps, TaskMaps]:
        mixed = self([features[t] for t in self.tasks])
        return dict(zip(self.tasks, mixed, strict=True)), dict(initial)

    def set_iterations(self, iterations: int) -> None:
        """Cross-stitch does not iterate."""


class CSPNPropagation(nn.ModuleDict):
    """One CSPN kernel per task (from the task's features), diffusing its initial prediction and features.

    With ``cross_task`` (default) each task diffuses with the convex combination of all tasks' normalised
    kernels, ``K̂_i = sum_k a_ik K_k``, ``a_i = softmax(w_i)`` (:func:`~tridense.layers.cspn.combine_kernels`,
    the local analogue of PAP's eq. 1; stable, since a convex combination of stable kernels is stable);
    ``cross_task=False``: each task keeps its own kernel (the CSPN of Cheng et al. per task).
    Parameters are named ``<task>.affinity.*`` and ``mixing_logits`` ([target, source], initialised to
    ``self_logit`` on the diagonal and 0 elsewhere, so a task's own kernel dominates at the start).
    """

    def __init__(
        self,
        tasks: Sequence[str],
        channels: int,
        iterations: int = 4,
        cross_task: bool = True,
        self_logit: float = 1.0,
    ) -> None:
        super().__init__({t: SpatialPropagation(channels, iterations) for t in tasks})
        self.tasks = tuple(tasks)
        self.iterations, self.cross_task = iterations, cross_task
        if cross_task:
            self.mixing_logits = nn.Parameter(self_logit * torch.eye(len(self.tasks)))
        else:
            self.register_parameter("mixing_logits", None)

    def mixing_weights(self) -> Tensor | None:
        """Cross-task weights a [target, source], (T, T) with rows summing to one; None without cross-task."""
        return None if self.mixing_logits is None else torch.softmax(self.mixing_logits, dim=1)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # A checkpoint of the per-task CSPN (before cross-task kernels) has no mixing logits: load it with
        # logits whose softmax is exactly the identity, so the model computes what it was trained to.
        key = prefix + "mixing_logits"
        if self.mixing_logits is not None and key not in state_dict:
            state_dict[key] = 1e4 * torch.eye(len(self.tasks))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def kernels(self, features: Mapping[str, Tensor]) -> Tensor:
        """The kernels each task diffuses with: (B, T, 9, h, w), combined across tasks when ``cross_task``."""
        own = torch.stack([self[t].kernel(features[t]) for t in self.tasks], dim=1)  # (B, T, 9, h, w)
        weights = self.mixing_weights()
        return own if weights is None else combine_kernels(weights, own)

    def propagate(
        self, features: Mapping[str, Tensor], initial: Mapping[str, Tensor], iterations: int | None = None
    ) -> tuple[TaskMaps, TaskMaps]:
        steps = self.iterations if iterations is None else iterations
        kernels = self.kernels(features)  # (B, T, 9, h, w)
        out_f, out_i = {}, {}
        for i, task in enumerate(self.tasks):
            c = initial[task].shape[1]
            both = torch.cat([initial[task], features[task]], dim=1)  # (B, C_t + C, h, w)
            both = cspn_propagate(kernels[:, i], both, steps)
            out_i[task], out_f[task] = both[:, :c], both[:, c:]
        return out_f, out_i

    def set_iterations(self, iterations: int) -> None:
        self.iterations = iterations
        for task in self.tasks:
            self[task].iterations = iterations


class NoPropagation(nn.Module):
    """Identity: features and initial predictions pass unchanged (no parameters)."""

    def __init__(self, tasks: Sequence[str], channels: int) -> None:
        super().__init__()
        self.tasks = tuple(tasks)

    def propagate(
        self, features: Mapping[str, Tensor], initial: Mapping[str, Tensor], iterations: int | None = None
    ) -> tuple[TaskMaps, TaskMaps]:
        return dict(features), dict(initial)

    def set_iterations(self, iterations: int) -> None:
        """Nothing iterates."""


#: Builders of the propagation kinds: ``(tasks, channels, **options) -> block``.
PROPAGATIONS: dict[str, Callable[..., nn.Module]] = {
    "pap": PAPPropagation,
    "cross_stitch": CrossStitchPropagation,
    "cspn": CSPNPropagation,
    "none": NoPropagation,
}


def register_propagation(kind: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a block class (or builder) under ``kind`` for :func:`build_propagation`."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if kind in PROPAGATIONS:
            raise ValueError(f"propagation {kind!r} is registered twice")
        PROPAGATIONS[kind] = builder
        return builder

    return decorate


def build_propagation(kind: str, *, tasks: Sequence[str], channels: int, **options: Any) -> nn.Module:
    """The propagation block ``kind`` for ``tasks`` whose features have ``channels`` channels.

    Args:
        kind: a key of :data:`PROPAGATIONS` (``pap``, ``cross_stitch``, ``cspn``, ``none``, ...).
        tasks: task names, in the order of the network.
        channels: channels of each task's features.
        **options: the block's own options (e.g. ``similarity`` for ``pap``, ``iterations`` for ``cspn``).
    """
    if kind not in PROPAGATIONS:
        raise ConfigError(f"unknown propagation {kind!r}; valid: {list(PROPAGATIONS)}")
    try:
        return PROPAGATIONS[kind](tuple(tasks), channels, **options)
    except TypeError as err:
        raise ConfigError(f"propagation {kind!r}: {err}") from err


from tridense.layers import gap as _gap  # noqa: E402, F401  (registers GAD's "gap" and "conv" kinds)
