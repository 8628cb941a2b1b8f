"""What training reads from the model registry about a variant: its options, auxiliary stages, default loss.

``loss.aux_weights`` and ``loss.extra`` default to null, "the model's own defaults": a PAP variant trains its
initial predictions (``aux["initial"]``, weight 1) with the pair-wise term (weight 0.2, 300 pairs); the
multi-task baseline has neither. The registry declares them with the variant
(``register_model(options=..., aux_stages=..., default_loss=...)``, read through ``registry.model_spec(name)``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tridense.models import registry
from tridense.training.config import LossConfig


def model_options_of(name: str) -> type[BaseModel] | None:
    """The pydantic model of the keys allowed in ``model.args`` for variant ``name`` (None: takes none)."""
    return registry.model_spec(name).options


def model_aux_stages(name: str) -> tuple[str, ...]:
    """The auxiliary prediction stages (``outputs["aux"][stage]``) that variant ``name`` supervises."""
    return tuple(registry.model_spec(name).aux_stages)


def model_default_loss(name: str) -> dict[str, Any]:
    """The variant's own ``aux_weights`` and ``extra`` (each key may be missing: none)."""
    return dict(registry.model_spec(name).default_loss or {})


def resolve_loss(cfg: LossConfig, model_name: str) -> LossConfig:
    """``cfg`` with ``aux_weights`` and ``extra`` that are null replaced by the model's defaults."""
    defaults = model_default_loss(model_name)
    update = {}
    if cfg.aux_weights is None:
        update["aux_weights"] = dict(defaults.get("aux_weights") or {})
    if cfg.extra is None:
        update["extra"] = {k: dict(v or {}) for k, v in (defaults.get("extra") or {}).items()}
    return cfg.model_copy(update=update, deep=True) if update else cfg
