"""The thin stateful shell shared by the metric classes: sum sufficient statistics, compute from them."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torchmetrics import Metric


class StatsMetric(Metric):
    """A torchmetrics ``Metric`` whose states are sufficient statistics summed over batches and processes.

    Subclasses register each statistic with :meth:`add_stat` and call :meth:`accumulate` with the dict that
    their ``*_stats`` function returns; ``compute`` reads them back with :meth:`stats`. Every state is
    reduced across processes with ``dist_reduce_fx="sum"``, so the result is independent of the batch
    size and of the number of processes.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def add_stat(self, name: str, default: torch.Tensor) -> None:
        """Register a summed statistic (float64 or int64) with its zero value."""
        self.add_state(name, default=default, dist_reduce_fx="sum")
        self._stat_names = (*getattr(self, "_stat_names", ()), name)

    def accumulate(self, stats: Mapping[str, torch.Tensor]) -> None:
        """Add the statistics of one batch to the states."""
        for name in self._stat_names:
            state = getattr(self, name)
            setattr(self, name, state + stats[name].to(device=state.device, dtype=state.dtype))

    def stats(self) -> dict[str, torch.Tensor]:
        """The current (after ``compute``'s sync: global) statistics."""
        return {name: getattr(self, name) for name in self._stat_names}
