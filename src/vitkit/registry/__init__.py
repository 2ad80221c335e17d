"""Names -> models: the registered presets (`presets`) and `from_pretrained` (`load`), which turns any checkpoint
source into a model through the converters of `vitkit.checkpoint`."""

from .load import create_model, from_pretrained
from .presets import (
    MODEL_TYPES,
    VIT_SIZES,
    build_model,
    decode_variant,
    get_config,
    list_models,
    model_class_for,
    model_entry,
    register,
)

__all__ = [
    "MODEL_TYPES",
    "VIT_SIZES",
    "build_model",
    "create_model",
    "decode_variant",
    "from_pretrained",
    "get_config",
    "list_models",
    "model_class_for",
    "model_entry",
    "register",
]
