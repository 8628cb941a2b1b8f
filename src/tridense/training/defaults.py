"""What training reads from the model registry about a variant: its options, auxiliary stages, default loss.

``loss.aux_weights`` and ``loss.extra`` default to null, "the model's own defaults": a PAP variant trains its
initial predictions (``aux["initial"]``, weight 1) with the pair-wise term (weight 0.2, 300 pairs); the
multi-task baseline has neither. The registry declares them with the variant
(``register_model(options=..., aux_stages=..., default_loss=...)``, read through ``model_spec(name)``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tridense.training.config import LossConfig

# INTEGRATION(models): until the registry of branch `models` (``model_spec``, ``model_options``) is merged,
# the defaults that the default config used to write out for PAP are declared here for the PAP variants, so
# that `tridense train` trains what it trained before. Delete this table and `_legacy` at the merge.
_PAP_VARIANTS = ("pap", "pap_resnet18", "pap_resnet50", "pap_vgg16_bn", "cross_stitch", "cspn")
_PAP_LOSS = {"aux_weights": {"initial": 1.0}, "extra": {"pairwise": {"weight": 0.2, "pairs": 300}}}


def _spec(name: str) -> Any | None:
    try:
        from tridense.models.registry import model_spec
    except ImportError:  # INTEGRATION(models): registry without model_spec
        return None
    return model_spec(name)


def _legacy(name: str) -> tuple[tuple[str, ...], dict[str, Any]]:
    if name in _PAP_VARIANTS:
        return ("initial",), _PAP_LOSS
    return (), {}


def model_options_of(name: str) -> type[BaseModel] | None:
    """The pydantic model of the keys allowed in ``model.args`` for variant ``name`` (None: not declared)."""
    try:
        from tridense.models.registry import model_options
    except ImportError:  # INTEGRATION(models): registry without model_options; the model checks when built
        return None
    return model_options(name)


def model_aux_stages(name: str) -> tuple[str, ...]:
    """The auxiliary prediction stages (``outputs["aux"][stage]``) that variant ``name`` supervises."""
    spec = _spec(name)
    return tuple(spec.aux_stages) if spec is not None else _legacy(name)[0]


def model_default_loss(name: str) -> dict[str, Any]:
    """The variant's own ``aux_weights`` and ``extra`` (each key may be missing: none)."""
    spec = _spec(name)
    return dict(spec.default_loss or {}) if spec is not None else dict(_legacy(name)[1])


def resolve_loss(cfg: LossConfig, model_name: str) -> LossConfig:
    """``cfg`` with ``aux_weights`` and ``extra`` that are null replaced by the model's defaults."""
    defaults = model_default_loss(model_name)
    update = {}
    if cfg.aux_weights is None:
        update["aux_weights"] = dict(defaults.get("aux_weights") or {})
    if cfg.extra is None:
        update["extra"] = {k: dict(v or {}) for k, v in (defaults.get("extra") or {}).items()}
    return cfg.model_copy(update=update, deep=True) if update else cfg
