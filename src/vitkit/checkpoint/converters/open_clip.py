"""OpenAI / open_clip CLIP state dicts -> vitkit.

OpenAI's released CLIP weights and open_clip's ViT models share one naming (`visual.conv1.weight`,
`visual.class_embedding`, `visual.transformer.resblocks.{i}.attn.in_proj_weight`, `visual.proj`,
`token_embedding.weight`, `positional_embedding`, `transformer.resblocks.{i}...`, `ln_final`, `text_projection`,
`logit_scale`), read from `.bin` / `.pt` / `.pth` state dicts or `.safetensors`. Their fused `in_proj` is already
vitkit's [q | k | v] layout; the projections are stored [width, embed] and become vitkit's Linear weights
[embed, width] (a transpose). Entries that are not weights in OpenAI's jit-exported dicts (`input_resolution`,
`context_length`, `vocab_size`, an `attn_mask` buffer) are checked for shape and dropped.

Sizes come from the weights; the number of heads (not in the weights) from `model=`'s config, else width / 64
(every OpenAI and open_clip ViT). The activation cannot be read from weights: OpenAI's are QuickGELU (vitkit's
CLIP presets), most LAION trainings GELU (pass `act="gelu"`, or load the hub repo, whose open_clip_config.json
says which).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from typing import Any

import torch

from ...errors import CheckpointError, ConfigError
from ...models.clip import CLIPConfig
from ..io import key_listing

OPEN_CLIP_KEYS = ("visual.conv1.weight", "token_embedding.weight", "ln_final.weight")
NOT_WEIGHTS = ("input_resolution", "context_length", "vocab_size", "attn_mask", "visual.attn_mask")
CONFIG_FILE = "open_clip_config.json"
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")

BLOCK_TABLE = {
    "ln_1.weight": "norm1.weight", "ln_1.bias": "norm1.bias",
    "attn.in_proj_weight": "attn.qkv.weight", "attn.in_proj_bias": "attn.qkv.bias",
    "attn.out_proj.weight": "attn.proj.weight", "attn.out_proj.bias": "attn.proj.bias",
    "ln_2.weight": "norm2.weight", "ln_2.bias": "norm2.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight", "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight", "mlp.c_proj.bias": "mlp.fc2.bias",
}
VISUAL_TABLE = {
    "visual.conv1.weight": "visual.patch_embed.proj.weight",
    "visual.ln_pre.weight": "visual.norm_pre.weight", "visual.ln_pre.bias": "visual.norm_pre.bias",
    "visual.ln_post.weight": "visual.norm.weight", "visual.ln_post.bias": "visual.norm.bias",
}
TEXT_TABLE = {
    "token_embedding.weight": "text.token_embedding.weight",
    "ln_final.weight": "text.norm.weight", "ln_final.bias": "text.norm.bias",
    "logit_scale": "logit_scale",
}
_BLOCK = re.compile(r"^(visual\.)?transformer\.resblocks\.(\d+)\.(.+)$")


def is_open_clip_state_dict(state_dict: Mapping[str, Any]) -> bool:
    return all(k in state_dict for k in OPEN_CLIP_KEYS)


def convert_open_clip(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An OpenAI / open_clip ViT CLIP state dict in vitkit's names (CheckpointError on anything unknown)."""
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in sd.items():
        if key in NOT_WEIGHTS:
            continue
        if key in VISUAL_TABLE:
            out[VISUAL_TABLE[key]] = value
        elif key in TEXT_TABLE:
            out[TEXT_TABLE[key]] = value
        elif key == "visual.class_embedding":
            out["visual.cls_token"] = value.reshape(1, 1, -1)
        elif key == "visual.positional_embedding":
            out["visual.pos_embed"] = value[None]
        elif key == "positional_embedding":
            out["text.pos_embed"] = value[None]
        elif key == "visual.proj":
            out["visual.head.weight"] = value.t()
        elif key == "text_projection":
            out["text.proj.weight"] = value.t()
        elif (m := _BLOCK.match(key)) and m.group(3) in BLOCK_TABLE:
            tower = "visual" if m.group(1) else "text"
            out[f"{tower}.blocks.{m.group(2)}.{BLOCK_TABLE[m.group(3)]}"] = value
        else:
            unknown.append(key)
    if unknown:
        hint = " (open_clip's ModifiedResNet, CoCa and SigLIP models are not supported)" if any(
            k.startswith(("visual.layer", "visual.attnpool", "text_decoder", "logit_bias")) for k in unknown) else ""
        raise CheckpointError(f"not an OpenAI / open_clip ViT CLIP state dict; unexpected keys: "
                              f"{key_listing(sorted(unknown))}{hint}")
    missing = [k for k in (*OPEN_CLIP_KEYS, "visual.proj", "text_projection", "positional_embedding",
                           "visual.positional_embedding") if k not in sd]
    if missing:
        raise CheckpointError(f"not an OpenAI / open_clip CLIP state dict; missing keys: {key_listing(missing)}")
    return out


def _depth(sd: Mapping[str, torch.Tensor], prefix: str) -> int:
    return len({int(k.split(".")[2]) for k in sd if k.startswith(prefix + "blocks.")})


def clip_config_from_state_dict(sd: Mapping[str, torch.Tensor], base: CLIPConfig | None = None,
                                **fields: Any) -> CLIPConfig:
    """The CLIPConfig of a converted (vitkit-named) CLIP state dict: sizes from the weights; heads, activation
    and preprocessing from `base` (a model= preset) or CLIP's defaults; `fields` (from a config file) win."""
    try:
        vw, _, patch, _ = sd["visual.patch_embed.proj.weight"].shape
        grid = math.isqrt(sd["visual.pos_embed"].shape[1] - 1)
        tw = sd["text.norm.weight"].shape[0]
        found = {
            "embed_dim": int(sd["visual.head.weight"].shape[0]), "image_size": int(grid * patch),
            "patch_size": int(patch), "vision_width": int(vw), "vision_layers": _depth(sd, "visual."),
            "vision_mlp_ratio": sd["visual.blocks.0.mlp.fc1.weight"].shape[0] / vw,
            "context_length": int(sd["text.pos_embed"].shape[1]),
            "vocab_size": int(sd["text.token_embedding.weight"].shape[0]), "text_width": int(tw),
            "text_layers": _depth(sd, "text."), "text_mlp_ratio": sd["text.blocks.0.mlp.fc1.weight"].shape[0] / tw,
        }
    except (KeyError, ValueError, IndexError) as e:
        raise CheckpointError(f"the CLIP weights lack a tensor vitkit reads its sizes from ({e})") from None
    if int(sd["text.proj.weight"].shape[0]) != found["embed_dim"]:
        raise CheckpointError(f"the image projection gives {found['embed_dim']} dims, the text projection "
                              f"{int(sd['text.proj.weight'].shape[0])}")
    if base is None:
        found.update(vision_heads=max(1, int(vw) // 64), text_heads=max(1, int(tw) // 64),
                     eot_token_id=found["vocab_size"] - 1)
        base = CLIPConfig()
    found.update(fields)
    try:
        return dataclasses.replace(base, **found)
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"the weights describe no valid CLIP ({e})") from None


def open_clip_config_fields(meta: Mapping[str, Any]) -> dict[str, Any]:
    """CLIPConfig fields an open_clip_config.json states: heads, activation, preprocessing."""
    model = meta.get("model_cfg", {}) if isinstance(meta.get("model_cfg"), Mapping) else {}
    vision = model.get("vision_cfg", {}) if isinstance(model.get("vision_cfg"), Mapping) else {}
    text = model.get("text_cfg", {}) if isinstance(model.get("text_cfg"), Mapping) else {}
    pre = meta.get("preprocess_cfg", {}) if isinstance(meta.get("preprocess_cfg"), Mapping) else {}
    out: dict[str, Any] = {"act": "quick_gelu" if model.get("quick_gelu") else "gelu"}
    width = vision.get("width")
    if isinstance(width, int):
        out["vision_heads"] = max(1, width // int(vision.get("head_width", 64)))
    if isinstance(text.get("heads"), int):
        out["text_heads"] = text["heads"]
    for key in ("mean", "std"):
        if isinstance(pre.get(key), (list, tuple)):
            out[key] = tuple(float(v) for v in pre[key])
    if pre.get("interpolation") in ("bicubic", "bilinear", "nearest"):
        out["interpolation"] = pre["interpolation"]
    return out


__all__ = ["clip_config_from_state_dict", "convert_open_clip", "is_open_clip_state_dict", "open_clip_config_fields"]
