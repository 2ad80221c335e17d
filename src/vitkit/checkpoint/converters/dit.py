"""Official DiT checkpoints (facebookresearch/DiT: `DiT-XL-2-256x256.pt`, train.py's `0400000.pt`) -> vitkit's DiT.

vitkit's DiT uses the official parameter names, so the key table is the identity (DDP's `module.` and
torch.compile's `_orig_mod.` prefixes are stripped). A released checkpoint is a bare state dict; a train.py
checkpoint is {"model", "ema", "opt", "args"}, of which the EMA weights are taken, as the official sample.py's
find_model does. A file is recognised as DiT by its keys (`x_embedder.proj.weight` and `t_embedder.mlp.0.weight`).

Sizes are read from the weight shapes: hidden size, patch size and input channels from the patch conv, depth
from the blocks, MLP ratio from `mlp.fc1`, learn_sigma from the output Linear (2x the input channels or 1x),
input_size from `pos_embed` (a square grid), num_classes from the label table (one row less when the model has
a null label, i.e. class_dropout_prob > 0: 0.1, DiT's default, unless model= says otherwise). The number of
heads is not visible in the weights: it comes from `model=` (a registered DiT name, e.g. "DiT-XL/2", whose
architecture must then match the weights) or else from the registered DiT of that hidden size (DiT's table:
1152 -> 16, 1024 -> 16, 768 -> 12, 384 -> 6). A 4-channel model is taken to work on Stable Diffusion VAE latents
(latent_scale 0.18215, vae "stabilityai/sd-vae-ft-mse", sample.py's default), unless model= says otherwise.

Pickles are read with torch.load(weights_only=True); train.py's `args` (an argparse.Namespace) is allowed as
an inert container.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ...errors import CheckpointError, ConfigError
from ...models.dit import SD_VAE_LATENT_SCALE, DiTConfig
from ..io import load_plain_pickle, read_state_dict, strip_prefixes

log = logging.getLogger("vitkit")

DIT_KEYS = ("x_embedder.proj.weight", "t_embedder.mlp.0.weight")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
DEFAULT_VAE = "stabilityai/sd-vae-ft-mse"
_BLOCK = re.compile(r"blocks\.(\d+)\.adaLN_modulation\.1\.weight$")


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def dit_state_dict(obj: Any) -> dict[str, torch.Tensor] | None:
    """The DiT weights in a loaded checkpoint object (a bare state dict, or train.py's dict: "ema" preferred
    over "model"), prefixes stripped; None when it holds no DiT."""
    candidates = [obj]
    if isinstance(obj, Mapping):
        candidates = [obj.get(k) for k in ("ema", "model", "state_dict", "module")] + [obj]
    for cand in candidates:
        if _is_tensor_dict(cand):
            sd = strip_prefixes(cand, WRAPPER_PREFIXES)
            if all(k in sd for k in DIT_KEYS):
                return sd
    return None


def is_dit_state_dict(state_dict: Mapping[str, Any]) -> bool:
    return all(k in state_dict for k in DIT_KEYS)


def _shape(sd: Mapping[str, torch.Tensor], key: str, ndim: int) -> tuple[int, ...]:
    if key not in sd:
        raise CheckpointError(f"missing {key}, which every DiT has")
    shape = tuple(sd[key].shape)
    if len(shape) != ndim:
        raise CheckpointError(f"{key} has shape {shape}, expected {ndim} dimensions")
    return shape


def _heads_for(hidden: int, known_heads: Mapping[int, int]) -> int:
    if hidden in known_heads:
        return known_heads[hidden]
    head_dim = next((d for d in (64, 72, 32, 16) if hidden % d == 0), hidden)
    log.warning("DiT hidden size %d is not a registered size: assuming %d head(s) of %d; pass num_heads= (or "
                "model=) if it was trained with others", hidden, hidden // head_dim, head_dim)
    return hidden // head_dim


def dit_config_from_state_dict(sd: Mapping[str, torch.Tensor], base: DiTConfig | None = None,
                               known_heads: Mapping[int, int] | None = None) -> DiTConfig:
    """The DiTConfig of an official state dict (see the module docstring for what comes from where).
    `known_heads`: hidden size -> number of heads of the registered DiTs (the weights do not say)."""
    D, C, p, q = _shape(sd, "x_embedder.proj.weight", 4)
    if p != q:
        raise CheckpointError(f"x_embedder.proj.weight has a {p}x{q} kernel; DiT patches are square")
    _, T, D2 = _shape(sd, "pos_embed", 3)
    side = math.isqrt(T)
    if side * side != T or D2 != D:
        raise CheckpointError(f"pos_embed {tuple(sd['pos_embed'].shape)} is not a square grid of width {D}")
    depth = len({int(m.group(1)) for k in sd if (m := _BLOCK.match(k))})
    mlp_ratio = _shape(sd, "blocks.0.mlp.fc1.weight", 2)[0] / D if depth else 4.0
    out_rows = _shape(sd, "final_layer.linear.weight", 2)[0]
    if out_rows == p * p * 2 * C:
        learn_sigma = True
    elif out_rows == p * p * C:
        learn_sigma = False
    else:
        raise CheckpointError(f"final_layer.linear has {out_rows} outputs: neither {p}x{p}x{C} (noise) nor "
                              f"{p}x{p}x{2 * C} (noise and variance)")
    rows = _shape(sd, "y_embedder.embedding_table.weight", 2)[0]
    dropout = base.class_dropout_prob if base is not None else 0.1
    num_classes = rows - 1 if dropout > 0 else rows
    if num_classes < 1:
        raise CheckpointError(f"the label table has {rows} row(s): no class besides the null label")
    found = {"hidden_size": D, "patch_size": p, "in_channels": C, "depth": depth, "mlp_ratio": mlp_ratio,
             "learn_sigma": learn_sigma}
    if base is not None:
        differ = {k: (getattr(base, k), v) for k, v in found.items() if getattr(base, k) != v}
        if differ:
            listing = ", ".join(f"{k} {b} (weights: {v})" for k, (b, v) in differ.items())
            raise CheckpointError(f"the weights are not the model= architecture: {listing}")
        labels = base.labels if base.labels is not None and len(base.labels) == num_classes else None
        changes = {"input_size": side * p, "num_classes": num_classes, "labels": labels}
        for k in ("input_size", "num_classes"):
            if getattr(base, k) != changes[k]:
                log.info("DiT checkpoint: %s %s from the weights (model= says %s)", k, changes[k], getattr(base, k))
        return dataclasses.replace(base, **changes)
    latent = {"latent_scale": SD_VAE_LATENT_SCALE, "vae": DEFAULT_VAE} if C == 4 else {}
    try:
        return DiTConfig(**found, input_size=side * p, num_heads=_heads_for(D, known_heads or {}),
                         num_classes=num_classes,
                         class_dropout_prob=dropout, **latent)
    except ConfigError as e:
        raise CheckpointError(f"the weights describe no valid DiT ({e})") from None


def read_dit_file(path: Path, base: Any = None, *, known_heads: Mapping[int, int] | None = None
                  ) -> tuple[DiTConfig, dict[str, torch.Tensor]] | None:
    """Config and state dict of an official DiT weight file, or None when it is not one and `base` (the config of
    the model= name, if given) is not a DiT's (the caller then tries other formats; a file it cannot read is left
    to them, too). known_heads: see `dit_config_from_state_dict`."""
    if base is not None and not isinstance(base, DiTConfig):
        return None  # another family's name: not ours to read
    try:
        if path.suffix == ".safetensors":
            obj: Any = read_state_dict(path)
        else:
            obj = load_plain_pickle(path, safe_globals=[argparse.Namespace],
                                    refused_hint="; re-save its state dict alone with torch.save")
    except CheckpointError:
        if base is None:
            return None
        raise
    sd = dit_state_dict(obj)
    if sd is None:
        if base is None:
            return None
        raise CheckpointError(f"{path} is not an official DiT checkpoint (no {' / '.join(DIT_KEYS)}), "
                              "but model= names a DiT")
    try:
        return dit_config_from_state_dict(sd, base, known_heads), sd
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None


__all__ = ["dit_config_from_state_dict", "dit_state_dict", "is_dit_state_dict", "read_dit_file"]
