"""Model families. Each model is a `PretrainedModel` built from one small dataclass config."""

from .dit import DiT, DiTConfig
from .vilt.model import ViLT, ViLTConfig, ViLTOutput
from .vit import VisionTransformer, ViTConfig

__all__ = ["DiT", "DiTConfig", "ViLT", "ViLTConfig", "ViLTOutput", "ViTConfig", "VisionTransformer"]
