"""Model families. Each model is a `PretrainedModel` built from one small dataclass config."""

from .vilt import ViLT, ViLTConfig, ViLTOutput
from .vit import VisionTransformer, ViTConfig

__all__ = ["ViLT", "ViLTConfig", "ViLTOutput", "ViTConfig", "VisionTransformer"]
