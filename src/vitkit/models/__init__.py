"""Model families. Each model is a `PretrainedModel` built from one small dataclass config."""

from .vit import ViTConfig, VisionTransformer

__all__ = ["ViTConfig", "VisionTransformer"]
