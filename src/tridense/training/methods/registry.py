"""The registry of training methods: name -> LightningModule class (``method.name`` in the config).

A method is a :class:`~tridense.training.base.MethodModule` subclass that registers itself in its own file,
``@register_method("adversarial", options=AdversarialOptions)``, where ``options`` (optional) is a pydantic
model (``extra="forbid"``) of the keys allowed in ``method.args``. The file is imported by
:mod:`tridense.training.methods` (one line there). This module imports none of its clients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from tridense.errors import ConfigError

#: Registered methods by name.
METHODS: dict[str, type[Any]] = {}
_OPTIONS: dict[str, type[BaseModel] | None] = {}


def register_method(name: str, *, options: type[BaseModel] | None = None) -> Callable[[type[Any]], type[Any]]:
    """Class decorator: register a training method under ``name``, with the pydantic model of its options."""

    def register(cls: type[Any]) -> type[Any]:
        if name in METHODS:
            raise ValueError(f"training method {name!r} is registered twice")
        METHODS[name] = cls
        _OPTIONS[name] = options
        return cls

    return register


def method_class(name: str) -> type[Any]:
    """The LightningModule class of method ``name``."""
    if name not in METHODS:
        raise ConfigError(f"method.name: {name!r} is not valid; valid values: {sorted(METHODS)}")
    return METHODS[name]


def method_options(name: str) -> type[BaseModel] | None:
    """The pydantic model of ``method.args`` for method ``name`` (None: the method takes no options)."""
    method_class(name)
    return _OPTIONS[name]
