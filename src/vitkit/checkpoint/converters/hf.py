"""Hugging Face transformers ViT directories -> vitkit.

A directory holds `config.json` (model_type "vit"), the weights (`model.safetensors` or `pytorch_model.bin`,
or their sharded `*.index.json` form) and, optionally, `preprocessor_config.json`. Two head classes are read:

- `ViTModel`: keys without a prefix. Its pooler (Linear + tanh on the [CLS] output) becomes vitkit's
  `pre_logits` (representation_size = the pooler width) and there is no classifier (num_classes = 0), so the
  vitkit forward returns the pooler output.
- `ViTForImageClassification`: the backbone under `vit.`, no pooler, `classifier` -> `head` on [CLS].

Both the key names on the Hub (`encoder.layer.{i}.attention.attention.query`, ...) and transformers 5's
in-memory names (`layers.{i}.attention.q_proj`, ...) are read. HF keeps q, k and v as three Linears; vitkit
fuses them into one `qkv` (concatenated in that order along the output axis). Every other tensor keeps its
layout.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...errors import CheckpointError, ConfigError
from ...layers.mlp import ACTIVATION_ALIASES, get_activation
from ...models.vit import ViTConfig
from ..io import read_json, read_state_dict
from .jax import mlp_ratio_for
from .keys import fuse_qkv, key_problems

log = logging.getLogger("vitkit")

SUPPORTED_MODEL_TYPES = ("vit",)
# Model types another part of vitkit will read; until then they get a clear "not yet".
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
PREPROCESSOR_FILE = "preprocessor_config.json"

# ---------------------------------------------------------------------------------------------- key tables
# Backbone keys (after the `vit.` prefix of the head classes) -> vitkit.
EMBED_TABLE = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}
POOLER_TABLE = {"pooler.dense.weight": "pre_logits.fc.weight", "pooler.dense.bias": "pre_logits.fc.bias"}
# At the root of ViTForImageClassification, beside `vit.`.
CLASSIFIER_TABLE = {"classifier.weight": "head.weight", "classifier.bias": "head.bias"}


@dataclass(frozen=True)
class BlockNames:
    """How one naming scheme spells encoder layer i."""

    prefix: str  # with an `{i}` for the layer index
    table: dict[str, str]  # key inside the layer -> key inside vitkit's `blocks.{i}.`
    qkv: tuple[str, str, str]  # the query, key and value Linears, fused into `attn.qkv`


HUB_BLOCK = BlockNames(
    "encoder.layer.{i}.",
    {
        "layernorm_before.weight": "norm1.weight",
        "layernorm_before.bias": "norm1.bias",
        "attention.output.dense.weight": "attn.proj.weight",
        "attention.output.dense.bias": "attn.proj.bias",
        "layernorm_after.weight": "norm2.weight",
        "layernorm_after.bias": "norm2.bias",
        "intermediate.dense.weight": "mlp.fc1.weight",
        "intermediate.dense.bias": "mlp.fc1.bias",
        "output.dense.weight": "mlp.fc2.weight",
        "output.dense.bias": "mlp.fc2.bias",
    },
    ("attention.attention.query", "attention.attention.key", "attention.attention.value"),
)
V5_BLOCK = BlockNames(
    "layers.{i}.",
    {
        "layernorm_before.weight": "norm1.weight",
        "layernorm_before.bias": "norm1.bias",
        "attention.o_proj.weight": "attn.proj.weight",
        "attention.o_proj.bias": "attn.proj.bias",
        "layernorm_after.weight": "norm2.weight",
        "layernorm_after.bias": "norm2.bias",
        "mlp.fc1.weight": "mlp.fc1.weight",
        "mlp.fc1.bias": "mlp.fc1.bias",
        "mlp.fc2.weight": "mlp.fc2.weight",
        "mlp.fc2.bias": "mlp.fc2.bias",
    },
    ("attention.q_proj", "attention.k_proj", "attention.v_proj"),
)

# HF `hidden_act` names vitkit's get_activation does not know, for functions it has.
HF_ACTIVATIONS = {"gelu_python": "gelu", "gelu_fast": "gelu_tanh", "gelu_python_tanh": "gelu_tanh"}
# The integer `resample` codes a preprocessor_config.json holds (PIL's enum values) -> vitkit's filter names.
HF_RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
# transformers' ViTConfig / ViTImageProcessor defaults, for keys a config file leaves out.
HF_VIT_DEFAULTS: dict[str, Any] = {
    "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
    "layer_norm_eps": 1e-12, "image_size": 224, "patch_size": 16, "num_channels": 3, "qkv_bias": True,
    "pooler_act": "tanh",
}
HF_PROCESSOR_DEFAULTS: dict[str, Any] = {
    "image_mean": (0.5, 0.5, 0.5), "image_std": (0.5, 0.5, 0.5), "resample": 2,
}


# -------------------------------------------------------------------------------------------- converting
def convert_hf_vit(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A transformers ViTModel / ViTForImageClassification state dict in vitkit's names.

    Raises CheckpointError naming the first missing or unexpected keys.
    """
    prefix = "vit." if any(k.startswith("vit.") for k in state_dict) else ""
    names = V5_BLOCK if any(k.startswith(f"{prefix}layers.") for k in state_dict) else HUB_BLOCK
    layer_re = re.compile("^" + re.escape(prefix + names.prefix).replace(r"\{i\}", r"(\d+)"))
    found = {int(m.group(1)) for k in state_dict if (m := layer_re.match(k))}
    depth = max(found) + 1 if found else 0
    used: set[str] = set()
    missing: list[str] = []
    out: dict[str, torch.Tensor] = {}

    def copy(table: Mapping[str, str], src_prefix: str, dst_prefix: str, optional: bool = False) -> None:
        if optional and not any(src_prefix + k in state_dict for k in table):
            return
        for src, dst in table.items():
            if src_prefix + src in state_dict:
                out[dst_prefix + dst] = state_dict[src_prefix + src]
                used.add(src_prefix + src)
            else:
                missing.append(src_prefix + src)

    copy(EMBED_TABLE, prefix, "")
    copy(POOLER_TABLE, prefix, "", optional=True)
    copy(CLASSIFIER_TABLE, "", "", optional=True)
    for i in range(depth):
        lp = prefix + names.prefix.format(i=i)
        copy(names.table, lp, f"blocks.{i}.")
        for param, fused in fuse_qkv(state_dict, lp, names.qkv, used=used, missing=missing).items():
            out[f"blocks.{i}.attn.qkv.{param}"] = fused
    unexpected = sorted(set(state_dict) - used)
    problems = [f"no encoder layers ({prefix}{names.prefix.format(i=0)}...)"] if depth == 0 else []
    hint = ""
    if any(k.endswith("mask_token") or k.startswith("decoder.") for k in unexpected):
        hint = " (ViTForMaskedImageModeling checkpoints are not supported)"
    problems += key_problems(missing, unexpected, unexpected_hint=hint)
    if problems:
        raise CheckpointError(
            "not a transformers ViTModel / ViTForImageClassification state dict; " + "; ".join(problems)
        )
    return out


# --------------------------------------------------------------------------------------------- config
def square_size(value: Any, what: str) -> int:
    """An HF size field (an int, or a [h, w] pair) as one side; a non-square pair raises CheckpointError."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or value[0] != value[1]:
            raise CheckpointError(f"non-square {what} {value} is not supported")
        value = value[0]
    return int(value)


def hf_activation(name: str) -> str:
    """An HF `hidden_act` as the vitkit activation name that computes it; CheckpointError when none does."""
    name = HF_ACTIVATIONS.get(name, name)
    name = ACTIVATION_ALIASES.get(name, name)
    try:
        get_activation(name)
    except ConfigError as e:
        raise CheckpointError(f"hidden_act {name!r} has no vitkit equivalent ({e})") from None
    return name


def hf_labels(meta: Mapping[str, Any], num_classes: int) -> tuple[str, ...] | None:
    """A config.json's `id2label`, ordered by id, as the class names of a head with `num_classes` outputs.

    None when there is no head, when `id2label` does not name exactly outputs 0..num_classes-1 (logged, since
    the labels are then dropped), or when it holds only transformers' placeholders `LABEL_0`, `LABEL_1`, ...
    (what it writes when a model was given no names; reading them as names would hide that).
    """
    id2label = meta.get("id2label") or {}
    if not num_classes:
        return None
    try:
        by_id = {int(k): str(v) for k, v in id2label.items()}
    except (AttributeError, TypeError, ValueError):  # not a mapping, or keys that are not ids
        by_id = {}
    if sorted(by_id) != list(range(num_classes)):
        if id2label:
            log.warning("id2label (%d entries) does not name the %d classifier outputs; labels dropped",
                        len(id2label), num_classes)
        return None
    if all(v == f"LABEL_{i}" for i, v in by_id.items()):
        return None
    return tuple(by_id[i] for i in range(num_classes))


def _edge(size: Any) -> int | None:
    """One side of an HF `size`/`crop_size` (an int, {height, width} or {shortest_edge})."""
    if isinstance(size, int):
        return size
    if isinstance(size, Mapping):
        side = size.get("shortest_edge", size.get("height"))
        return int(side) if isinstance(side, (int, float)) else None
    return None


def hf_preprocessing(processor: Mapping[str, Any] | None, in_chans: int = 3) -> dict[str, Any]:
    """mean/std/interpolation/crop_pct from a preprocessor_config.json (transformers' defaults if absent)."""
    p = {**HF_PROCESSOR_DEFAULTS, **(processor or {})}

    def per_channel(v: Any) -> tuple[float, ...]:
        return tuple(float(x) for x in v) if isinstance(v, (list, tuple)) else (float(v),) * in_chans

    if p.get("do_normalize", True):
        mean, std = per_channel(p["image_mean"]), per_channel(p["image_std"])
    else:
        mean, std = (0.0,) * in_chans, (1.0,) * in_chans
    resample = p["resample"]
    interpolation = HF_RESAMPLE_NAMES.get(resample) if isinstance(resample, int) else str(resample).lower()
    if interpolation not in HF_RESAMPLE_NAMES.values():
        log.warning("unknown resample %r in %s; using bilinear", resample, PREPROCESSOR_FILE)
        interpolation = "bilinear"
    # ViTImageProcessor resizes straight to `size`; processors that centre-crop say so.
    crop_pct = 1.0
    if p.get("do_center_crop"):
        resize, crop = _edge(p.get("size")), _edge(p.get("crop_size"))
        if resize and crop:
            crop_pct = crop / resize
    return {"mean": mean, "std": std, "interpolation": interpolation, "crop_pct": crop_pct}


def hf_vit_config(
    meta: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    processor: Mapping[str, Any] | None = None,
) -> ViTConfig:
    """The ViTConfig of a transformers ViT: sizes from config.json, head and pooler from the weights."""
    c = {**HF_VIT_DEFAULTS, **meta}
    head, pooler = state_dict.get("head.weight"), state_dict.get("pre_logits.fc.weight")
    if pooler is not None and c["pooler_act"] != "tanh":
        raise CheckpointError(f"pooler_act {c['pooler_act']!r} is not supported (vitkit's pre-logits: tanh)")
    if pooler is not None and head is not None:
        raise CheckpointError("weights hold both a pooler and a classifier; no transformers ViT class does")
    depth = 1 + max((int(k.split(".")[1]) for k in state_dict if k.startswith("blocks.")), default=-1)
    if depth != c["num_hidden_layers"]:
        layers = c["num_hidden_layers"]
        raise CheckpointError(f"config.json says num_hidden_layers={layers}; weights hold {depth}")
    has_qkv_bias = "blocks.0.attn.qkv.bias" in state_dict
    if bool(c["qkv_bias"]) != has_qkv_bias:
        have = "have" if has_qkv_bias else "lack"
        raise CheckpointError(f"config.json says qkv_bias={c['qkv_bias']}; the weights {have} q/k/v biases")
    num_classes = int(head.shape[0]) if head is not None else 0  # the weights decide, as for timm and JAX
    in_chans = int(c["num_channels"])
    image_size = c["image_size"]
    if isinstance(image_size, (list, tuple)) and len(image_size) == 2 and image_size[0] != image_size[1]:
        img_size: int | tuple[int, int] = (int(image_size[0]), int(image_size[1]))
    else:
        img_size = square_size(image_size, "image_size")
    try:
        return ViTConfig(
            img_size=img_size,
            patch_size=square_size(c["patch_size"], "patch_size"),
            in_chans=in_chans,
            num_classes=num_classes,
            embed_dim=int(c["hidden_size"]),
            depth=depth,
            num_heads=int(c["num_attention_heads"]),
            mlp_ratio=mlp_ratio_for(int(c["hidden_size"]), int(c["intermediate_size"])),
            qkv_bias=has_qkv_bias,
            act=hf_activation(c["hidden_act"]),
            norm_eps=float(c["layer_norm_eps"]),
            class_token=True,
            global_pool="token",
            representation_size=int(pooler.shape[0]) if pooler is not None else None,
            # HF drops out the embeddings and each residual branch with hidden_dropout_prob
            pos_drop_rate=float(c["hidden_dropout_prob"]),
            proj_drop_rate=float(c["hidden_dropout_prob"]),
            attn_drop_rate=float(c["attention_probs_dropout_prob"]),
            labels=hf_labels(meta, num_classes),
            **hf_preprocessing(processor, in_chans),
        )
    except (ConfigError, TypeError, ValueError) as e:
        raise CheckpointError(f"config.json does not describe a ViT vitkit can build ({e})") from None


# ---------------------------------------------------------------------------------------------- reading
def read_hf_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of an HF directory: a single weight file, or the shards its `*.index.json` lists."""
    for name in WEIGHT_FILES:
        if (path / name).is_file():
            return read_state_dict(path / name)
        index = path / f"{name}.index.json"
        if index.is_file():
            weight_map = read_json(index).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise CheckpointError(f"{index} has no weight_map")
            state_dict: dict[str, torch.Tensor] = {}
            for shard in sorted(set(weight_map.values())):
                if not isinstance(shard, str) or Path(shard).name != shard:
                    raise CheckpointError(f"{index} names a shard outside the directory: {shard!r}")
                state_dict.update(read_state_dict(path / shard))
            return state_dict
    raise CheckpointError(
        f"{path} holds no PyTorch weights ({' or '.join(WEIGHT_FILES)}, or a sharded *.index.json); "
        "TensorFlow / Flax-only repositories are not read"
    )


def read_hf_directory(path: Path, meta: dict[str, Any]) -> tuple[ViTConfig, dict[str, torch.Tensor]]:
    """Config and vitkit state dict of a transformers model directory; `meta` is its parsed config.json."""
    model_type = meta.get("model_type")
    supported = ", ".join(repr(t) for t in (*SUPPORTED_MODEL_TYPES, "vilt"))
    if model_type not in SUPPORTED_MODEL_TYPES:  # 'vilt' directories are routed to hf_vilt before this
        raise CheckpointError(f"{path}: Hugging Face model_type {model_type!r} is not supported; "
                              f"supported model types: {supported}")
    processor = read_json(path / PREPROCESSOR_FILE) if (path / PREPROCESSOR_FILE).is_file() else None
    try:
        state_dict = convert_hf_vit(read_hf_weights(path))
        config = hf_vit_config(meta, state_dict, processor)
    except CheckpointError as e:
        msg = str(e)
        raise CheckpointError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    return config, state_dict


__all__ = [
    "HF_RESAMPLE_NAMES",
    "convert_hf_vit",
    "hf_activation",
    "hf_labels",
    "hf_preprocessing",
    "hf_vit_config",
    "read_hf_directory",
    "read_hf_weights",
    "square_size",
]
