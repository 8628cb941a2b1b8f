"""One small registry, for model variants only: a variant is a short function over one class.

Every variant has one signature::

    def name(*, encoder: str = "...", pretrained: bool | str = False, tasks: Sequence[str] | None = None,
             num_classes: int | None = None, **args: Any) -> nn.Module

(``tasks=None``: the variant's default tasks; the model exposes ``model.tasks``). The keys allowed in
``**args`` (``model.args`` of a config) are described by the variant's options class, a pydantic
``BaseModel`` with ``extra="forbid"``; :func:`create_model` validates them through it, so a typo, a value
outside an enumeration or a key with no effect is a :class:`~tridense.errors.ConfigError` listing the valid
ones. A variant also declares its auxiliary output stages (``aux_stages``) and the loss terms it is trained
with by default (``default_loss``), which the training configuration falls back on.

This module imports none of the variant modules: ``tridense.models`` imports them, so that importing
``tridense.models`` (or any of its submodules, such as this one) registers every variant.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, overload

from pydantic import BaseModel, ValidationError
from torch import nn

from tridense.errors import ConfigError

ModelFn = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """A registered variant.

    Attributes:
        name: the registry name (the function's name).
        fn: the variant function (uniform signature).
        description: first line of the function's docstring.
        options: pydantic model of the keys allowed in ``model.args`` (None: the variant takes none).
        aux_stages: names of the auxiliary prediction stages in ``outputs["aux"]`` (e.g. ``("initial",)``).
        default_loss: the loss sections the variant is trained with unless a config names them:
            ``{"aux_weights": {stage: weight}, "extra": {name: options}}`` (read-only copies via
            :meth:`loss_defaults`).
    """

    name: str
    fn: ModelFn
    description: str
    options: type[BaseModel] | None = None
    aux_stages: tuple[str, ...] = ()
    default_loss: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def loss_defaults(self) -> dict[str, Any]:
        """A fresh, mutable deep copy of :attr:`default_loss`."""
        return copy.deepcopy(dict(self.default_loss))


_SPECS: dict[str, ModelSpec] = {}
_LOSS_SECTIONS = ("aux_weights", "extra")


def _register(
    fn: ModelFn,
    options: type[BaseModel] | None,
    aux_stages: Sequence[str],
    default_loss: Mapping[str, Any] | None,
) -> ModelFn:
    name = fn.__name__
    if options is not None and not (isinstance(options, type) and issubclass(options, BaseModel)):
        raise TypeError(f"model {name!r}: options must be a pydantic BaseModel class, got {options!r}")
    loss = dict(default_loss or {})
    unknown = sorted(set(loss) - set(_LOSS_SECTIONS))
    if unknown:
        raise ValueError(f"model {name!r}: default_loss sections {unknown} unknown; valid: {list(_LOSS_SECTIONS)}")
    stray = sorted(set(loss.get("aux_weights") or {}) - set(aux_stages))
    if stray:
        raise ValueError(f"model {name!r}: default aux_weights name stages {stray} not in aux_stages {aux_stages}")
    if name in _SPECS:
        raise ValueError(f"model {name!r} is registered twice")
    doc = (fn.__doc__ or "").strip().splitlines()
    _SPECS[name] = ModelSpec(
        name=name,
        fn=fn,
        description=doc[0] if doc else "",
        options=options,
        aux_stages=tuple(aux_stages),
        default_loss=MappingProxyType(copy.deepcopy(loss)),
    )
    return fn


@overload
def register_model(fn: ModelFn, /) -> ModelFn: ...


@overload
def register_model(
    *,
    options: type[BaseModel] | None = None,
    aux_stages: Sequence[str] = (),
    default_loss: Mapping[str, Any] | None = None,
) -> Callable[[ModelFn], ModelFn]: ...


def register_model(
    fn: ModelFn | None = None,
    /,
    *,
    options: type[BaseModel] | None = None,
    aux_stages: Sequence[str] = (),
    default_loss: Mapping[str, Any] | None = None,
) -> ModelFn | Callable[[ModelFn], ModelFn]:
    """Register a variant under its function name; usable bare (``@register_model``) or with keywords.

    Args:
        fn: the variant (when used bare).
        options: pydantic model of the keys allowed in ``model.args``.
        aux_stages: auxiliary prediction stages the model returns under ``outputs["aux"]``.
        default_loss: ``{"aux_weights": {...}, "extra": {...}}`` used when a config leaves them null.
    """
    if fn is not None:
        return _register(fn, options, aux_stages, default_loss)

    def decorate(f: ModelFn) -> ModelFn:
        return _register(f, options, aux_stages, default_loss)

    return decorate


def list_models() -> list[str]:
    """Names of every registered variant, sorted."""
    return sorted(_SPECS)


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; ConfigError listing the registered names if there is none."""
    if name not in _SPECS:
        raise ConfigError(f"unknown model {name!r}; registered models: {sorted(_SPECS)}")
    return _SPECS[name]


def model_options(name: str) -> type[BaseModel] | None:
    """The options class of ``name`` (the keys of ``model.args``), or None if it takes none."""
    return model_spec(name).options


def describe_model(name: str) -> str:
    """One-line description of ``name`` (its docstring's first line)."""
    return model_spec(name).description


def _error_message(name: str, options: type[BaseModel], err: ValidationError) -> str:
    valid = sorted(options.model_fields)
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        where = f"model.args.{key}" if key else "model.args"
        if e["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key for model {name!r}; valid keys: {valid}")
        elif key:
            lines.append(f"{where}={e.get('input')!r}: {e['msg']}")
        else:
            lines.append(f"{where}: {e['msg'].removeprefix('Value error, ')}")
    return "; ".join(lines)


def validate_args(name: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``args`` (``model.args``) against the options of ``name``; returns the keys given, converted.

    Raises:
        ConfigError: an unknown key, a wrong type or value, or a key with no effect for this variant.
    """
    options = model_options(name)
    if options is None:
        if args:
            raise ConfigError(f"model {name!r} takes no model.args, got {sorted(args)}")
        return {}
    try:
        parsed = options.model_validate(dict(args))
    except ValidationError as err:
        raise ConfigError(_error_message(name, options, err)) from None
    return parsed.model_dump(include=set(parsed.model_fields_set))


def create_model(
    name: str,
    *,
    encoder: str | None = None,
    pretrained: bool | str = False,
    tasks: Sequence[str] | None = None,
    num_classes: int | None = None,
    **args: Any,
) -> nn.Module:
    """Build the registered variant ``name``.

    Args:
        name: a registered name (:func:`list_models`).
        encoder: timm encoder name (None: the variant's default).
        pretrained: False, True (timm's hub) or the path of a local weights file.
        tasks: tasks to predict (None: the variant's default tasks).
        num_classes: segmentation classes (for variants that predict ``semseg``).
        **args: the variant's options (``model.args``), validated by its options class.
    """
    spec = model_spec(name)
    kwargs = validate_args(name, args)
    if encoder is not None:
        kwargs["encoder"] = encoder
    return spec.fn(
        pretrained=pretrained, tasks=None if tasks is None else tuple(tasks), num_classes=num_classes, **kwargs
    )
