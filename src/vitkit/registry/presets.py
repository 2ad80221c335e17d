"""Model names -> configs, in timm's naming for ViT.

`create_model(name, **overrides)` builds a fresh (randomly initialised) model; an unknown name or override is
rejected with the closest valid choices.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from ..config import replace_config
from ..errors import ConfigError, did_you_mean
from ..models import CLIP, CLIPConfig, DiT, DiTConfig, ViLT, ViLTConfig, VisionTransformer, ViTConfig
from ..models.base import PretrainedModel
from ..models.clip import TextTransformer

# model_type (as written in config.json) -> model class
MODEL_TYPES: dict[str, type[PretrainedModel]] = {
    cls.model_type: cls for cls in (VisionTransformer, ViLT, DiT, CLIP, TextTransformer)
}


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its name, its config (the architecture and, for presets, the preprocessing) and the
    one-line description `vitkit models` prints."""

    name: str
    config: Any
    description: str


_REGISTRY: dict[str, ModelEntry] = {}


def register(name: str, config: Any, description: str) -> None:
    """Add a model under `name` (a name registered twice is a programming error: ValueError)."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = ModelEntry(name, config, description)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style `pattern` (e.g. "vit_base*"), sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def model_entry(name: str) -> ModelEntry:
    """The registered entry of `name`; an unknown name raises ConfigError suggesting the closest one."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}{did_you_mean(name, _REGISTRY)}; see vitkit.list_models()")
    return _REGISTRY[name]


def get_config(name: str, **overrides: Any) -> Any:
    """The config registered under `name`, with `overrides` applied (unknown fields raise ConfigError)."""
    return replace_config(model_entry(name).config, **overrides)


def model_class_for(config: Any) -> type[PretrainedModel]:
    """The model class (ViT, ViLT, DiT, CLIP, CLIP text tower) that a config object builds."""
    for cls in MODEL_TYPES.values():  # the exact config class first (CLIPTextConfig subclasses CLIPConfig)
        if type(config) is cls.config_class:
            return cls
    for cls in MODEL_TYPES.values():
        if isinstance(config, cls.config_class):
            return cls
    raise ConfigError(f"no model class for config type {type(config).__name__}")


def build_model(config: Any) -> PretrainedModel:
    """A randomly initialised model of `config`'s class."""
    return model_class_for(config)(config)


# ------------------------------------------------------------------------------------------------- ViT sizes
# (embed_dim, depth, num_heads); mlp_ratio is 4 for all (Dosovitskiy et al. 2020, Table 1; Ti from DeiT).
VIT_SIZES = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
    "huge": (1280, 32, 16),
}
_VARIANT_LETTERS = {"Ti": "tiny", "S": "small", "B": "base", "L": "large", "H": "huge"}
_SIZE_LETTER = {v: k for k, v in _VARIANT_LETTERS.items()}


def decode_variant(variant: str) -> dict[str, int]:
    """Paper notation to sizes: "B/16" -> embed_dim 768, depth 12, num_heads 12, patch_size 16."""
    try:
        letter, patch = variant.split("/")
        dim, depth, heads = VIT_SIZES[_VARIANT_LETTERS[letter]]
        return {"embed_dim": dim, "depth": depth, "num_heads": heads, "patch_size": int(patch)}
    except (KeyError, ValueError):
        raise ConfigError(
            f"cannot decode ViT variant {variant!r}; expected e.g. 'Ti/16', 'S/32', 'B/16', 'L/14'"
        ) from None


# timm's names for the published ViT checkpoints: (size, patch, resolution).
_PUBLISHED = [
    ("tiny", 16, 224), ("tiny", 16, 384),
    ("small", 32, 224), ("small", 32, 384), ("small", 16, 224), ("small", 16, 384), ("small", 8, 224),
    ("base", 32, 224), ("base", 32, 384), ("base", 16, 224), ("base", 16, 384), ("base", 8, 224),
    ("large", 32, 224), ("large", 32, 384), ("large", 16, 224), ("large", 16, 384), ("large", 14, 224),
    ("huge", 14, 224),
]
for _size, _patch, _res in _PUBLISHED:
    _dim, _depth, _heads = VIT_SIZES[_size]
    register(
        f"vit_{_size}_patch{_patch}_{_res}",
        ViTConfig(img_size=_res, patch_size=_patch, embed_dim=_dim, depth=_depth, num_heads=_heads,
                  crop_pct=0.9 if _res == 224 else 1.0),
        f"ViT-{_SIZE_LETTER[_size]}/{_patch} at {_res}",
    )

register(
    "vit_base_patch16_gap_224",
    ViTConfig(num_heads=16, class_token=False, global_pool="avg", fc_norm=False),
    "ViT-B/16 without [CLS]: global average pooling of the patch tokens",
)
register(
    "vit_base_patch16_sincos_224",
    ViTConfig(pos_embed="sincos"),
    "ViT-B/16 with fixed 2-D sin-cos position embeddings",
)

# Hybrid ViT: a ResNet-V2 (weight-standardised convs, GroupNorm) feature map, tokenised with 1x1 patches.
for _res in (224, 384):
    register(
        f"vit_base_r50_s16_{_res}",
        ViTConfig(img_size=_res, patch_size=1, backbone_layers=(3, 4, 9), crop_pct=0.9 if _res == 224 else 1.0),
        f"R50+ViT-B/16 hybrid at {_res} (ResNet-V2 stages 3,4,9; stride 16)",
    )
    register(
        f"vit_large_r50_s32_{_res}",
        ViTConfig(img_size=_res, patch_size=1, backbone_layers=(3, 4, 6, 3), embed_dim=1024, depth=24,
                  num_heads=16, crop_pct=0.9 if _res == 224 else 1.0),
        f"R50+ViT-L/32 hybrid at {_res} (ResNet-V2 stages 3,4,6,3; stride 32)",
    )

# Small presets for CPU training on small images (not published checkpoints).
register(
    "vit_pico_patch2_16",
    ViTConfig(img_size=16, patch_size=2, embed_dim=64, depth=4, num_heads=4, mlp_ratio=2.0, num_classes=10,
              crop_pct=1.0),
    "CPU preset: 16x16 inputs (e.g. 8x8 digits upsampled), 64 tokens, 0.14M parameters",
)
# Pooled by the mean of the patch tokens (no [CLS]) over fixed 2-D sin-cos positions, as "Better plain ViT
# baselines" (Beyer et al. 2022): on a small dataset a token mean and a position code that needs no learning let
# a small model learn in far fewer epochs than a [CLS] token over learned positions (examples/digits.md).
register(
    "vit_nano_patch4_32",
    ViTConfig(img_size=32, patch_size=4, embed_dim=128, depth=6, num_heads=4, mlp_ratio=2.0, num_classes=10,
              crop_pct=1.0, class_token=False, global_pool="avg", pos_embed="sincos"),
    "CPU preset: 32x32 inputs (CIFAR, MNIST padded), 64 tokens, mean-pooled, sin-cos positions, 0.8M parameters",
)
register(
    "vit_micro_patch4_32",
    ViTConfig(img_size=32, patch_size=4, embed_dim=192, depth=9, num_heads=3, num_classes=10, crop_pct=1.0),
    "CPU preset: 32x32 inputs, ViT-Ti width at depth 9, 4M parameters",
)

# ViLT-B/32 (Kim et al. 2021): one ViT-B/32 encoder over [text | image]; 384-pixel shorter side, 32x32 patches.
register("vilt_b32", ViLTConfig(task="itm", extra_heads=("mlm",), max_image_len=200),
         "ViLT-B/32 for pretraining: ITM + MLM heads (+ WPA via vitkit.ot), 200 sampled patches per image")
register("vilt_b32_vqa", ViLTConfig(task="vqa"), "ViLT-B/32 for VQAv2: 3129-answer classifier on the pooled output")
register("vilt_b32_nlvr2",
         ViLTConfig(task="nlvr2", num_images=2, modality_type_vocab_size=3, num_answers=2, labels=("False", "True")),
         "ViLT-B/32 for NLVR2: two image-text passes, pooled outputs concatenated -> 2 classes")
register("vilt_b32_retrieval", ViLTConfig(task="retrieval"),
         "ViLT-B/32 for image-text retrieval: one matching score per pair")
register(
    "vilt_nano_patch8_64",
    ViLTConfig(task="vqa", img_size=64, patch_size=8, embed_dim=128, depth=4, num_heads=4, mlp_ratio=4.0,
               shorter_edge=64, longer_edge=106, size_divisor=8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
               image_attends_text=False, patch_stem="overlap_conv", weight_init="xavier"),
    "CPU preset: ViLT for 64x64 scenes, 8x8 patches (16x16 windows plus a conv stem), width 128, 4 layers, "
    "one-way fusion (each image encoded once for all its questions), xavier init (the vqa task's default)",
)

# DiT (Peebles & Xie 2022), under the official names: class-conditional latent diffusion on 32x32x4 Stable
# Diffusion VAE latents of 256px ImageNet (input_size=64 for 512px). (hidden_size, depth, num_heads); mlp_ratio 4.
DIT_SIZES = {"XL": (1152, 28, 16), "L": (1024, 24, 16), "B": (768, 12, 12), "S": (384, 12, 6)}
for _letter, (_dim, _depth, _heads) in DIT_SIZES.items():
    for _patch in (2, 4, 8):
        register(
            f"DiT-{_letter}/{_patch}",
            DiTConfig(patch_size=_patch, hidden_size=_dim, depth=_depth, num_heads=_heads,
                      latent_scale=0.18215, vae="stabilityai/sd-vae-ft-mse"),
            f"DiT-{_letter}/{_patch}: ImageNet-1k class-conditional diffusion on SD-VAE latents (256px -> 32x32x4)",
        )
register(
    "dit_nano_patch4_32",
    DiTConfig(input_size=32, patch_size=4, in_channels=1, hidden_size=128, depth=6, num_heads=4, num_classes=10,
              cond_init="wide"),
    "CPU preset: pixel-space DiT for 32x32 grey images, 10 classes, 64 tokens, wide conditioning init, 1.9M "
    "parameters (the default for --task diffusion)",
)
register(
    "dit_micro_patch4_32",
    DiTConfig(input_size=32, patch_size=4, in_channels=1, hidden_size=192, depth=8, num_heads=6, num_classes=10,
              cond_init="wide"),
    "CPU preset: pixel-space DiT for 32x32 grey images, 10 classes, width 192, depth 8, wide conditioning init, "
    "5.5M parameters",
)

# CLIP (Radford et al. 2021) as OpenAI released it: QuickGELU, 224 px (336 for the last), embed 512 / 768.
# (vision width, layers, heads, patch, image size, text width, text heads, embed dim)
CLIP_SIZES = {
    "clip_vit_b32": (768, 12, 12, 32, 224, 512, 8, 512),
    "clip_vit_b16": (768, 12, 12, 16, 224, 512, 8, 512),
    "clip_vit_l14": (1024, 24, 16, 14, 224, 768, 12, 768),
    "clip_vit_l14_336": (1024, 24, 16, 14, 336, 768, 12, 768),
}
for _name, (_vw, _vl, _vh, _p, _res, _tw, _th, _e) in CLIP_SIZES.items():
    register(
        _name,
        CLIPConfig(embed_dim=_e, image_size=_res, patch_size=_p, vision_width=_vw, vision_layers=_vl, vision_heads=_vh,
                   text_width=_tw, text_layers=12, text_heads=_th),
        f"CLIP ViT-{'B' if _vw == 768 else 'L'}/{_p} at {_res} (OpenAI's architecture: QuickGELU; act='gelu' for most "
        "LAION weights)",
    )
register(
    "clip_nano_patch8_64",
    CLIPConfig(embed_dim=128, image_size=64, patch_size=8, vision_width=128, vision_layers=4, vision_heads=4,
               text_width=128, text_layers=4, text_heads=4, context_length=32, act="gelu",
               mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    "CPU preset: CLIP for 64x64 scenes, 8x8 patches, width 128, 4 + 4 layers, 32-token context (the default for "
    "--task clip)",
)
