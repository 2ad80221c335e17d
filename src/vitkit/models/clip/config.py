"""CLIPConfig: everything that defines a CLIP (Radford et al. 2021, https://arxiv.org/abs/2103.00020), plus the
preprocessing its weights expect. Defaults: ViT-B/32 as OpenAI released it."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...errors import ConfigError
from ...layers.mlp import get_activation
from ..vit import ViTConfig

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class CLIPConfig:
    """Two towers and a shared embedding space. The image tower is a ViT with CLIP's LayerNorm before the blocks
    (`ln_pre`) and its [CLS] output projected; the text tower a causal transformer whose end-of-text token's
    output is projected."""

    embed_dim: int = 512  # the shared space both towers project into
    # image tower
    image_size: int = 224
    patch_size: int = 32
    in_chans: int = 3
    vision_width: int = 768
    vision_layers: int = 12
    vision_heads: int = 12
    vision_mlp_ratio: float = 4.0
    # text tower
    context_length: int = 77  # = the number of text position embeddings
    vocab_size: int = 49408
    text_width: int = 512
    text_layers: int = 12
    text_heads: int = 8
    text_mlp_ratio: float = 4.0
    eot_token_id: int = 49407  # the text's features are read at its (first) end-of-text token
    # both
    act: str = "quick_gelu"  # OpenAI's weights use QuickGELU; most LAION / open_clip trainings use "gelu"
    norm_eps: float = 1e-5
    logit_scale_init: float = math.log(1 / 0.07)  # learnable temperature, clamped to ln(100) in training
    drop_path_rate: float = 0.0
    # preprocessing the weights expect: resize the shorter side to image_size (bicubic), centre crop, normalise
    mean: tuple[float, ...] = OPENAI_CLIP_MEAN
    std: tuple[float, ...] = OPENAI_CLIP_STD
    interpolation: str = "bicubic"

    def __post_init__(self) -> None:
        for name in ("embed_dim", "image_size", "patch_size", "vision_width", "vision_heads", "context_length",
                     "vocab_size", "text_width", "text_heads"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if self.vision_width % self.vision_heads:
            raise ConfigError(f"vision_width {self.vision_width} is not divisible by vision_heads {self.vision_heads}")
        if self.text_width % self.text_heads:
            raise ConfigError(f"text_width {self.text_width} is not divisible by text_heads {self.text_heads}")
        if self.image_size % self.patch_size:
            raise ConfigError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if not 0 <= self.eot_token_id < self.vocab_size:
            raise ConfigError(f"eot_token_id {self.eot_token_id} is outside the vocabulary of {self.vocab_size}")
        get_activation(self.act)  # raises ConfigError naming the known ones

    def vision_config(self) -> ViTConfig:
        """The image tower: a ViT whose head is the projection into the shared space."""
        return ViTConfig(
            img_size=self.image_size, patch_size=self.patch_size, in_chans=self.in_chans, num_classes=self.embed_dim,
            embed_dim=self.vision_width, depth=self.vision_layers, num_heads=self.vision_heads,
            mlp_ratio=self.vision_mlp_ratio, act=self.act, norm_eps=self.norm_eps, pre_norm=True, head_bias=False,
            drop_path_rate=self.drop_path_rate, mean=self.mean, std=self.std, crop_pct=1.0,
            interpolation=self.interpolation,
        )


@dataclass(frozen=True)
class CLIPTextConfig(CLIPConfig):
    """A CLIP text tower on its own (transformers' CLIPTextModelWithProjection): CLIPConfig's text fields and
    embed_dim are read, its image fields are not."""


__all__ = ["OPENAI_CLIP_MEAN", "OPENAI_CLIP_STD", "CLIPConfig", "CLIPTextConfig"]
