"""Model families. Each model is a `PretrainedModel` built from one small dataclass config."""

from .clip import CLIP, CLIPConfig, CLIPOutput
from .dit import DiT, DiTConfig
from .vilt.model import ViLT, ViLTConfig, ViLTOutput
from .vit import VisionTransformer, ViTConfig

__all__ = [
    "CLIP",
    "CLIPConfig",
    "CLIPOutput",
    "DiT",
    "DiTConfig",
    "ViLT",
    "ViLTConfig",
    "ViLTOutput",
    "ViTConfig",
    "VisionTransformer",
]
