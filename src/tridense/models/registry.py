"""One small registry, for model variants only: a variant is a short function over one class.

``create_model(name, **kwargs)`` calls the registered function; ``list_models()`` lists them (also shown by
``tridense info``). Each function's docstring is its one-line description.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from tridense.errors import ConfigError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register ``fn`` under its name."""
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is registered twice")
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    _import_variants()
    return sorted(_MODELS)


def describe_model(name: str) -> str:
    _import_variants()
    doc = (_MODELS[name].__doc__ or "").strip().splitlines()
    return doc[0] if doc else ""


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model ``name`` with keyword arguments (e.g. ``num_classes``, ``encoder``)."""
    _import_variants()
    if name not in _MODELS:
        raise ConfigError(f"unknown model {name!r}; registered models: {sorted(_MODELS)}")
    fn = _MODELS[name]
    try:
        inspect.signature(fn).bind(**kwargs)
    except TypeError as err:
        raise ConfigError(f"model {name!r}: {err} (its arguments: {list(inspect.signature(fn).parameters)})") from err
    try:
        return fn(**kwargs)
    except TypeError as err:  # an argument the variant passes on to its class does not exist there
        if "unexpected keyword argument" in str(err):
            raise ConfigError(f"model {name!r}: {err}; see `tridense info` and the class docstring") from err
        raise


def _import_variants() -> None:
    """Import the modules that register variants (lazily, so importing the registry has no side effects)."""
    from tridense.models import baseline, gad, pap  # noqa: F401
