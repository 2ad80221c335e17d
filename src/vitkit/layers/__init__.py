"""The one transformer core that ViT, ViLT, DiT and CLIP build on. One concept per small file: the block is written
once (`block`); how its attention sees the tokens is a layout (`layout.Dense`, `packed.Packed`, `one_way.OneWay`)."""

from .attention import Attention
from .block import Block, LayerScale, Modulation, modulate, run_block
from .drop import DropPath
from .layout import DENSE, Dense, Layout
from .mlp import Mlp, get_activation
from .one_way import OneWay
from .packed import Packed
from .patch_embed import ConvStem, OverlapConvEmbed, OverlapPatchEmbed, PatchEmbed
from .pos_embed import resample_pos_embed, sincos_2d_pos_embed

__all__ = [
    "DENSE",
    "Attention",
    "Block",
    "ConvStem",
    "Dense",
    "DropPath",
    "LayerScale",
    "Layout",
    "Mlp",
    "Modulation",
    "OneWay",
    "OverlapConvEmbed",
    "OverlapPatchEmbed",
    "Packed",
    "PatchEmbed",
    "get_activation",
    "modulate",
    "resample_pos_embed",
    "run_block",
    "sincos_2d_pos_embed",
]
