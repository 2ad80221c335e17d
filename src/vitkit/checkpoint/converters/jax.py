"""Google JAX/Flax ViT checkpoints (.npz) -> vitkit.

Two naming schemes are read, both as flat "/"-joined parameter paths:

- the original release (github.com/google-research/vision_transformer): blocks
  `Transformer/encoderblock_{i}/` with `LayerNorm_0` / `LayerNorm_2`, `MultiHeadDotProductAttention_1`,
  `MlpBlock_3`; the position table `Transformer/posembed_input/pos_embedding` covers [CLS] + patches.
  Some files nest it all under `opt/target/`.
- big_vision (github.com/google-research/big_vision): everything under `params/`, `LayerNorm_0` /
  `LayerNorm_1`, `MultiHeadDotProductAttention_0`, `MlpBlock_0`, and `pos_embedding` at the root, added to the
  patches *before* [CLS] is prepended (vitkit's `no_embed_class=True`). `gap` models have no `cls` and average
  the normed tokens. Layers stacked by `nn.scan` (`Transformer/encoderblock/...`, a leading layer axis) are
  split first.

Flax -> torch layouts: conv kernel [kh, kw, in, out] -> [out, in, kh, kw]; dense kernel [in, out] ->
[out, in]; attention q/k/v kernels [D, heads, hd] -> [heads*hd, D], fused into `qkv` in q, k, v order;
attention out kernel [heads, hd, D] -> [D, heads*hd].

The checkpoint decides the architecture it holds (width, depth, heads, MLP width, patch size, head,
pre-logits, [CLS] or not); the registered model name passed by the user decides the rest (image size,
preprocessing). A position grid saved for another image size is returned as is: `from_pretrained`
resamples it.
"""

from __future__ import annotations

import logging
import math
import re
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...config import replace_config
from ...errors import CheckpointError, InputTooLarge
from ...models.vit import ViTConfig
from ...utils.limits import check_npz
from ..io import key_listing
from .keys import key_problems

log = logging.getLogger("vitkit")

# Where the parameter tree may sit inside the file; keys outside it (optimizer state) are ignored.
PREFIXES = ("opt/target/", "params/", "")


@dataclass(frozen=True)
class JaxLayout:
    name: str
    pos_key: str
    norm1: str
    norm2: str
    attn: str
    mlp: str
    pos_before_cls: bool  # big_vision adds positions to the patches, then prepends [CLS]


ORIGINAL = JaxLayout(
    "vision_transformer", "Transformer/posembed_input/pos_embedding",
    "LayerNorm_0", "LayerNorm_2", "MultiHeadDotProductAttention_1", "MlpBlock_3", pos_before_cls=False,
)
BIG_VISION = JaxLayout(
    "big_vision", "pos_embedding",
    "LayerNorm_0", "LayerNorm_1", "MultiHeadDotProductAttention_0", "MlpBlock_0", pos_before_cls=True,
)

_SCANNED = "Transformer/encoderblock/"
_BLOCK = re.compile(r"^Transformer/encoderblock_(\d+)/")
# Top-level groups a ViT may lack: [CLS] (gap models), the pre-logits layer (in21k releases), the head.
_OPTIONAL_GROUPS = ("cls", "pre_logits", "head")


# ------------------------------------------------------------------------------------------- layouts
def _ndim(a: np.ndarray, n: int, key: str) -> np.ndarray:
    if a.ndim != n:
        raise CheckpointError(f"npz array {key} has shape {tuple(a.shape)}; expected {n} dimensions")
    return a


def _same(a: np.ndarray, key: str) -> np.ndarray:
    return a


def _conv(a: np.ndarray, key: str) -> np.ndarray:
    return _ndim(a, 4, key).transpose(3, 2, 0, 1)  # [kh, kw, in, out] -> [out, in, kh, kw]


def _dense(a: np.ndarray, key: str) -> np.ndarray:
    return _ndim(a, 2, key).T  # [in, out] -> [out, in]


def _pos(a: np.ndarray, key: str) -> np.ndarray:
    return a[None] if a.ndim == 2 else _ndim(a, 3, key)  # -> [1, L, D]


def _attn_in(a: np.ndarray, key: str) -> np.ndarray:
    return _ndim(a, 3, key).reshape(a.shape[0], -1).T  # [D, heads, hd] -> [heads*hd, D]


def _attn_in_bias(a: np.ndarray, key: str) -> np.ndarray:
    return _ndim(a, 2, key).reshape(-1)  # [heads, hd] -> [heads*hd]


def _attn_out(a: np.ndarray, key: str) -> np.ndarray:
    return _ndim(a, 3, key).reshape(-1, a.shape[-1]).T  # [heads, hd, D] -> [D, heads*hd]


Transform = Callable[[np.ndarray, str], np.ndarray]


def _top_table(layout: JaxLayout) -> dict[str, tuple[str, Transform]]:
    """npz key -> (vitkit key, transform) outside the encoder blocks."""
    return {
        "embedding/kernel": ("patch_embed.proj.weight", _conv),
        "embedding/bias": ("patch_embed.proj.bias", _same),
        "cls": ("cls_token", _same),
        layout.pos_key: ("pos_embed", _pos),
        "Transformer/encoder_norm/scale": ("norm.weight", _same),
        "Transformer/encoder_norm/bias": ("norm.bias", _same),
        "pre_logits/kernel": ("pre_logits.fc.weight", _dense),
        "pre_logits/bias": ("pre_logits.fc.bias", _same),
        "head/kernel": ("head.weight", _dense),
        "head/bias": ("head.bias", _same),
    }


def _block_table(layout: JaxLayout) -> dict[str, tuple[str, Transform]]:
    """Key inside `Transformer/encoderblock_{i}/` -> (key inside `blocks.{i}.`, transform)."""
    n1, n2, a, m = layout.norm1, layout.norm2, layout.attn, layout.mlp
    return {
        f"{n1}/scale": ("norm1.weight", _same),
        f"{n1}/bias": ("norm1.bias", _same),
        f"{a}/out/kernel": ("attn.proj.weight", _attn_out),
        f"{a}/out/bias": ("attn.proj.bias", _same),
        f"{n2}/scale": ("norm2.weight", _same),
        f"{n2}/bias": ("norm2.bias", _same),
        f"{m}/Dense_0/kernel": ("mlp.fc1.weight", _dense),
        f"{m}/Dense_0/bias": ("mlp.fc1.bias", _same),
        f"{m}/Dense_1/kernel": ("mlp.fc2.weight", _dense),
        f"{m}/Dense_1/bias": ("mlp.fc2.bias", _same),
    }


def _qkv_table(layout: JaxLayout) -> dict[str, tuple[list[str], Transform]]:
    """Flax keeps query, key and value apart; vitkit fuses them (concatenated in that order, output axis)."""
    a = layout.attn
    return {
        "attn.qkv.weight": ([f"{a}/{n}/kernel" for n in ("query", "key", "value")], _attn_in),
        "attn.qkv.bias": ([f"{a}/{n}/bias" for n in ("query", "key", "value")], _attn_in_bias),
    }


# ---------------------------------------------------------------------------------------------- reading
def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """All arrays of an .npz archive, never unpickling anything; a bad file raises CheckpointError."""
    try:
        check_npz(path)  # declared shapes against the bytes each member holds, before numpy allocates them
        archive = np.load(path, allow_pickle=False)
    except InputTooLarge as e:
        raise CheckpointError(str(e)) from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path} is not a readable .npz archive ({type(e).__name__}: {e})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise CheckpointError(f"{path} holds a single array, not a named .npz archive of parameters")
    try:
        with archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise CheckpointError(f"{path} is a damaged .npz archive ({type(e).__name__}: {e})") from None
    if not arrays:
        raise CheckpointError(f"{path} is an empty .npz archive")
    return arrays


def _params_of(arrays: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], JaxLayout]:
    """The parameter tree (wrapper prefix removed, scanned layers split) and its naming scheme."""
    for prefix in PREFIXES:
        if f"{prefix}embedding/kernel" in arrays:
            break
    else:
        if "params/img/embedding/kernel" in arrays:
            raise CheckpointError(
                "this npz holds the image tower of an image-text model (`params/img/`, e.g. SigLIP or LiT); "
                "only ViT classifiers are supported"
            )
        raise CheckpointError(
            "no patch embedding `embedding/kernel` (optionally under `opt/target/` or `params/`): not a ViT "
            f"checkpoint? keys: {key_listing(sorted(arrays))}"
        )
    params = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
    for key, a in params.items():
        if a.dtype.kind != "f":
            raise CheckpointError(
                f"array {prefix}{key} has dtype {a.dtype}; only float parameters are read "
                "(bfloat16 files store raw 2-byte records: convert them to float32 first)"
            )
    scanned = any(k.startswith(_SCANNED) for k in params)
    big_vision = prefix == "params/" or BIG_VISION.pos_key in params or scanned
    if "conv_root/kernel" in params:
        raise CheckpointError("hybrid (ResNet + ViT) JAX checkpoints are not supported; use the timm weights")
    if any(k.startswith("MAPHead_0/") for k in params):
        raise CheckpointError("big_vision checkpoints with a MAP (attention-pooling) head are not supported")
    return (_unstack(params) if scanned else params), (BIG_VISION if big_vision else ORIGINAL)


def _unstack(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`Transformer/encoderblock/X` [depth, ...] -> `Transformer/encoderblock_{i}/X` [...] (nn.scan)."""
    out = {k: v for k, v in params.items() if not k.startswith(_SCANNED)}
    depths = {v.shape[0] for k, v in params.items() if k.startswith(_SCANNED) and v.ndim}
    if len(depths) != 1:
        raise CheckpointError(f"scanned encoder arrays disagree on the number of layers: {sorted(depths)}")
    for k, v in params.items():
        if k.startswith(_SCANNED):
            for i in range(v.shape[0]):
                out[f"Transformer/encoderblock_{i}/{k[len(_SCANNED):]}"] = v[i]
    return out


def _depth(params: Mapping[str, np.ndarray]) -> int:
    found = {int(m.group(1)) for k in params if (m := _BLOCK.match(k))}
    if not found:
        raise CheckpointError("no encoder blocks (`Transformer/encoderblock_0/...`): not a ViT checkpoint?")
    depth = max(found) + 1
    gaps = sorted(set(range(depth)) - found)
    if gaps:
        raise CheckpointError(f"encoder blocks are not numbered 0..{depth - 1}: no encoderblock_{gaps[0]}")
    return depth


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, order="C"))  # a contiguous, writable copy


# -------------------------------------------------------------------------------------------- converting
def convert_jax_vit(arrays: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """A JAX ViT parameter dict (as read from the .npz) in vitkit's names and layouts.

    Raises CheckpointError naming the first missing or unexpected npz keys.
    """
    params, layout = _params_of(arrays)
    depth = _depth(params)
    present_groups = {k.split("/")[0] for k in params}
    used: set[str] = set()
    missing: list[str] = []
    out: dict[str, torch.Tensor] = {}

    def take(key: str) -> np.ndarray | None:
        if key not in params:
            missing.append(key)
            return None
        used.add(key)
        return params[key]

    for jkey, (vkey, fn) in _top_table(layout).items():
        group = jkey.split("/")[0]
        if group in _OPTIONAL_GROUPS and group not in present_groups:
            continue
        if (a := take(jkey)) is not None:
            out[vkey] = _tensor(fn(a, jkey))
    for i in range(depth):
        bp = f"Transformer/encoderblock_{i}/"
        for jkey, (vkey, fn) in _block_table(layout).items():
            if (a := take(bp + jkey)) is not None:
                out[f"blocks.{i}.{vkey}"] = _tensor(fn(a, bp + jkey))
        for vkey, (jkeys, fn) in _qkv_table(layout).items():
            parts = [take(bp + k) for k in jkeys]
            if all(p is not None for p in parts):
                fused = np.concatenate([fn(p, bp + k) for p, k in zip(parts, jkeys)], axis=0)
                out[f"blocks.{i}.{vkey}"] = _tensor(fused)
    unexpected = sorted(set(params) - used)
    hint = ""
    if layout.pos_key in missing:
        hint = " (models without a learned position table, e.g. big_vision 'sincos2d', are not supported)"
    problems = key_problems(missing, unexpected, missing_hint=hint)
    if problems:
        raise CheckpointError(f"not a {layout.name} ViT checkpoint vitkit can read; " + "; ".join(problems))
    return out


def jax_vit_fields(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The ViTConfig fields a JAX ViT checkpoint determines (width, depth, heads, head, pre-logits, [CLS])."""
    params, layout = _params_of(arrays)
    depth = _depth(params)
    kh, kw, in_chans, dim = _ndim(params["embedding/kernel"], 4, "embedding/kernel").shape
    if kh != kw:
        raise CheckpointError(f"non-square {kh}x{kw} patches are not supported")
    b0 = "Transformer/encoderblock_0/"
    num_heads = _param(params, f"{b0}{layout.attn}/query/kernel", 3).shape[1]  # [D, heads, hd]
    mlp_hidden = _param(params, f"{b0}{layout.mlp}/Dense_0/kernel", 2).shape[1]  # [D, hidden]
    has_cls = "cls" in params
    head = params.get("head/kernel")  # [features, classes]
    pre_logits = params.get("pre_logits/kernel")  # [D, representation]
    return {
        "embed_dim": int(dim),
        "depth": depth,
        "num_heads": int(num_heads),
        "mlp_ratio": mlp_ratio_for(int(dim), int(mlp_hidden)),
        "patch_size": int(kh),
        "in_chans": int(in_chans),
        "qkv_bias": True,
        "init_values": None,
        "pos_embed": "learn",
        "class_token": has_cls,
        # Without [CLS] the encoder-normed patch tokens are averaged (no extra norm after pooling).
        "global_pool": "token" if has_cls else "avg",
        "fc_norm": None if has_cls else False,
        "no_embed_class": layout.pos_before_cls and has_cls,
        "representation_size": int(pre_logits.shape[-1]) if pre_logits is not None else None,
        "num_classes": int(head.shape[-1]) if head is not None else 0,
    }


def _param(params: Mapping[str, np.ndarray], key: str, ndim: int) -> np.ndarray:
    if key not in params:
        raise CheckpointError(f"missing key {key}")
    return _ndim(params[key], ndim, key)


def mlp_ratio_for(dim: int, hidden: int) -> float:
    """A ratio r with int(dim * r) == hidden exactly (hidden / dim can land one ulp short)."""
    ratio = hidden / dim
    if int(dim * ratio) != hidden:
        ratio = math.nextafter(ratio, math.inf)
    return ratio


def read_jax_checkpoint(path: str | Path, config: ViTConfig) -> tuple[ViTConfig, dict[str, torch.Tensor]]:
    """Read a JAX .npz ViT checkpoint; `config` (the registered model's) is updated to what the file holds."""
    arrays = read_npz(path)
    try:
        state_dict = convert_jax_vit(arrays)
        fields = jax_vit_fields(arrays)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if config.backbone_layers:
        raise CheckpointError(f"{path}: hybrid (ResNet + ViT) JAX checkpoints are not supported")
    changes = {k: v for k, v in fields.items() if getattr(config, k) != v}
    if "num_classes" in changes and config.labels is not None:
        changes["labels"] = None  # the registered names no longer fit this head
    if changes:
        log.info("%s: taking from the checkpoint %s", Path(path).name,
                 ", ".join(f"{k}={v!r}" for k, v in changes.items()))
    return replace_config(config, **changes), state_dict


__all__ = ["convert_jax_vit", "jax_vit_fields", "read_jax_checkpoint", "read_npz"]
