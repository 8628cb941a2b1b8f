"""Models: timm encoders, decoders and heads, the baselines and the methods, one registry of variants."""

from tridense.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
