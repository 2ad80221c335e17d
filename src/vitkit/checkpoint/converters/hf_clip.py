"""Hugging Face transformers CLIP directories -> vitkit: `CLIPModel` (model_type "clip"), and the single towers
`CLIPVisionModelWithProjection` ("clip_vision_model": a vitkit ViT whose head is the projection) and
`CLIPTextModelWithProjection` ("clip_text_model": a vitkit CLIP text tower).

HF keeps q, k and v as three Linears (fused here into vitkit's one `qkv`, in that order), calls CLIP's `ln_pre`
`pre_layrnorm`, applies `post_layernorm` to the pooled [CLS] only (the same values: a LayerNorm is per token),
and stores position embeddings as Embedding tables (vitkit: [1, N, D] parameters).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ...errors import CheckpointError, ConfigError
from ...models.clip import CLIPConfig, CLIPTextConfig
from ..io import key_listing, read_json
from .hf import PREPROCESSOR_FILE, hf_activation, hf_preprocessing, read_hf_weights

MODEL_TYPES = ("clip", "clip_vision_model", "clip_text_model")
LAYER = {
    "layer_norm1.weight": "norm1.weight", "layer_norm1.bias": "norm1.bias",
    "self_attn.out_proj.weight": "attn.proj.weight", "self_attn.out_proj.bias": "attn.proj.bias",
    "layer_norm2.weight": "norm2.weight", "layer_norm2.bias": "norm2.bias",
    "mlp.fc1.weight": "mlp.fc1.weight", "mlp.fc1.bias": "mlp.fc1.bias",
    "mlp.fc2.weight": "mlp.fc2.weight", "mlp.fc2.bias": "mlp.fc2.bias",
}
VISION = {
    "vision_model.embeddings.patch_embedding.weight": "visual.patch_embed.proj.weight",
    "vision_model.pre_layrnorm.weight": "visual.norm_pre.weight",
    "vision_model.pre_layrnorm.bias": "visual.norm_pre.bias",
    "vision_model.post_layernorm.weight": "visual.norm.weight",
    "vision_model.post_layernorm.bias": "visual.norm.bias",
    "visual_projection.weight": "visual.head.weight",
}
TEXT = {
    "text_model.embeddings.token_embedding.weight": "text.token_embedding.weight",
    "text_model.final_layer_norm.weight": "text.norm.weight",
    "text_model.final_layer_norm.bias": "text.norm.bias",
    "text_projection.weight": "text.proj.weight",
}
RESHAPED = {  # HF key -> (vitkit key, shape change)
    "vision_model.embeddings.class_embedding": "visual.cls_token",
    "vision_model.embeddings.position_embedding.weight": "visual.pos_embed",
    "text_model.embeddings.position_embedding.weight": "text.pos_embed",
}
POSITION_IDS = ("vision_model.embeddings.position_ids", "text_model.embeddings.position_ids")


def convert_hf_clip(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers CLIPModel (or one tower's) state dict in vitkit's CLIP names (`visual.*`, `text.*`)."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for table in (VISION, TEXT):
        for src, dst in table.items():
            if src in state_dict:
                out[dst] = state_dict[src]
                used.add(src)
    for src, dst in RESHAPED.items():
        if src in state_dict:
            out[dst] = state_dict[src].reshape(1, -1, state_dict[src].shape[-1])
            used.add(src)
    if "logit_scale" in state_dict:
        out["logit_scale"] = state_dict["logit_scale"]
        used.add("logit_scale")
    for src in POSITION_IDS:  # a buffer of 0..N-1 in older checkpoints: nothing to keep
        if src in state_dict:
            ids = state_dict[src]
            if not torch.equal(ids.flatten().long(), torch.arange(ids.numel())):
                raise CheckpointError(f"{src} is not 0..{ids.numel() - 1}; vitkit computes positions in order")
            used.add(src)
    for tower, prefix in (("visual", "vision_model.encoder.layers."), ("text", "text_model.encoder.layers.")):
        depth = len({int(k[len(prefix):].split(".")[0]) for k in state_dict if k.startswith(prefix)})
        for i in range(depth):
            lp, dp = f"{prefix}{i}.", f"{tower}.blocks.{i}."
            for src, dst in LAYER.items():
                if lp + src in state_dict:
                    out[dp + dst] = state_dict[lp + src]
                    used.add(lp + src)
            for param in ("weight", "bias"):
                keys = [f"{lp}self_attn.{n}_proj.{param}" for n in "qkv"]
                if all(k in state_dict for k in keys):
                    out[f"{dp}attn.qkv.{param}"] = torch.cat([state_dict[k] for k in keys], dim=0)  # [q | k | v]
                    used.update(keys)
    unexpected = sorted(set(state_dict) - used)
    if unexpected:
        raise CheckpointError(f"not a transformers CLIP state dict; unexpected keys: {key_listing(unexpected)}")
    return out


def hf_clip_config(meta: Mapping[str, Any], processor: Mapping[str, Any] | None,
                   state_dict: Mapping[str, torch.Tensor]) -> CLIPConfig:
    """The CLIPConfig of a transformers CLIP config.json (a CLIPModel's, or one tower's)."""
    model_type = meta.get("model_type")
    vision = meta.get("vision_config", meta if model_type == "clip_vision_model" else {}) or {}
    text = meta.get("text_config", meta if model_type == "clip_text_model" else {}) or {}
    fields: dict[str, Any] = {}
    try:
        if vision:
            w = int(vision.get("hidden_size", 768))
            fields.update(image_size=int(vision.get("image_size", 224)), patch_size=int(vision.get("patch_size", 32)),
                          vision_width=w, vision_layers=int(vision.get("num_hidden_layers", 12)),
                          vision_heads=int(vision.get("num_attention_heads", 12)),
                          vision_mlp_ratio=int(vision.get("intermediate_size", 4 * w)) / w,
                          in_chans=int(vision.get("num_channels", 3)))
        if text:
            w = int(text.get("hidden_size", 512))
            fields.update(context_length=int(text.get("max_position_embeddings", 77)),
                          vocab_size=int(text.get("vocab_size", 49408)), text_width=w,
                          text_layers=int(text.get("num_hidden_layers", 12)),
                          text_heads=int(text.get("num_attention_heads", 8)),
                          text_mlp_ratio=int(text.get("intermediate_size", 4 * w)) / w)
            eos = text.get("eos_token_id")
            # eos_token_id 2 is the legacy value of the first released configs; their checkpoints read the
            # end-of-text position by argmax of the ids, which for CLIP's vocabulary is token 49407
            fields["eot_token_id"] = fields["vocab_size"] - 1 if eos in (None, 2) else int(eos)
        tower = vision or text
        fields["act"] = hf_activation(tower.get("hidden_act", "quick_gelu"))
        fields["norm_eps"] = float(tower.get("layer_norm_eps", 1e-5))
        proj = state_dict.get("visual.head.weight", state_dict.get("text.proj.weight"))
        fields["embed_dim"] = int(proj.shape[0]) if proj is not None else int(meta.get("projection_dim", 512))
        if "logit_scale_init_value" in meta:
            fields["logit_scale_init"] = float(meta["logit_scale_init_value"])
        if processor is not None:
            pre = hf_preprocessing(processor, fields.get("in_chans", 3))
            fields.update(mean=pre["mean"], std=pre["std"], interpolation=pre["interpolation"])
        return CLIPConfig(**fields)
    except (ConfigError, TypeError, ValueError) as e:
        raise CheckpointError(f"config.json does not describe a CLIP vitkit can build ({e})") from None


def read_hf_clip_directory(path: Path, meta: dict[str, Any]) -> tuple[Any, dict[str, torch.Tensor]]:
    """(config, vitkit state dict) of a transformers CLIP directory. A CLIPModel gives a `CLIPConfig` (-> CLIP);
    a vision tower a ViTConfig (-> a ViT whose head is the projection); a text tower a `CLIPTextConfig`
    (-> `TextTransformer`)."""
    processor = read_json(path / PREPROCESSOR_FILE) if (path / PREPROCESSOR_FILE).is_file() else None
    try:
        state_dict = convert_hf_clip(read_hf_weights(path))
        config = hf_clip_config(meta, processor, state_dict)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    model_type = meta.get("model_type")
    if model_type == "clip_vision_model":
        return config.vision_config(), {k[len("visual."):]: v for k, v in state_dict.items()}
    if model_type == "clip_text_model":
        return CLIPTextConfig(**dataclasses.asdict(config)), {k[len("text."):]: v for k, v in state_dict.items()}
    return config, state_dict


__all__ = ["MODEL_TYPES", "convert_hf_clip", "hf_clip_config", "read_hf_clip_directory"]
