"""Training methods: the registry (:mod:`~tridense.training.methods.registry`) and the modules that register
themselves in it when this package is imported (a new method adds its import line here)."""

from tridense.training import module as _dense  # noqa: F401  (registers "dense")
from tridense.training.methods import adversarial as _adversarial  # noqa: F401  (registers "adversarial")
from tridense.training.methods.registry import METHODS, method_class, method_options, register_method

__all__ = ["METHODS", "method_class", "method_options", "register_method"]
