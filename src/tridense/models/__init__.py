"""Models: timm encoders, decoders and heads, the baselines and the methods, one registry of variants.

Importing this package imports every variant module, which registers its variants.
"""

from tridense.models import baseline, gad, pap, segmentation  # noqa: F401  (registers the variants)
from tridense.models.registry import (
    ModelSpec,
    create_model,
    describe_model,
    list_models,
    model_options,
    model_spec,
    register_model,
)

__all__ = [
    "ModelSpec",
    "create_model",
    "describe_model",
    "list_models",
    "model_options",
    "model_spec",
    "register_model",
]
