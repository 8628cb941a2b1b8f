"""Extra loss terms a config can name under ``loss.extra`` (method-specific, e.g. PAP's pair-wise term).

A term is a module class ``cls(tasks, **options)`` whose ``forward(outputs, batch)`` returns
``{name: weighted term}``; it registers itself in its own file (``@register_extra_loss("pairwise")``) and
is importable once :mod:`tridense.losses` is. A term must not own parameters: training builds its optimisers
from the model's parameters, so they would never be updated (:func:`tridense.training.build.build_loss`
refuses it).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

#: Registered extra terms by name.
EXTRA_LOSSES: dict[str, type[nn.Module]] = {}


def register_extra_loss(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: register an extra loss term under ``name``."""

    def register(cls: type[nn.Module]) -> type[nn.Module]:
        if name in EXTRA_LOSSES:
            raise ValueError(f"extra loss {name!r} is registered twice")
        EXTRA_LOSSES[name] = cls
        return cls

    return register
