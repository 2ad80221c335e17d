"""The one transformer core that ViT, ViLT and DiT build on. One concept per small file."""

from .attention import Attention
from .block import Block, LayerScale
from .drop import DropPath
from .mlp import Mlp, get_activation
from .patch_embed import ConvStem, OverlapConvEmbed, OverlapPatchEmbed, PatchEmbed
from .pos_embed import resample_pos_embed, sincos_2d_pos_embed

__all__ = [
    "Attention",
    "Block",
    "ConvStem",
    "DropPath",
    "LayerScale",
    "Mlp",
    "OverlapConvEmbed",
    "OverlapPatchEmbed",
    "PatchEmbed",
    "get_activation",
    "resample_pos_embed",
    "sincos_2d_pos_embed",
]
