"""Helpers the key-table converters share: fusing separate q/k/v projections, and reporting keys that do not fit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..io import key_listing


def fuse_qkv(
    state_dict: Mapping[str, torch.Tensor],
    prefix: str,
    names: Sequence[str],
    *,
    used: set[str],
    missing: list[str],
) -> dict[str, torch.Tensor]:
    """One layer's separate query, key and value Linears -> vitkit's fused `qkv` tensors, by parameter.

    Reads `{prefix}{name}.weight` / `.bias` for the three `names` (in q, k, v order) and returns
    {"weight": [3D, D], "bias": [3D]}, concatenated along the output axis. The weights are required; the biases
    are all or nothing (a model built with qkv_bias=False has none). Keys read are added to `used`, keys that
    should be there but are not to `missing`, so the caller reports every problem at once.
    """
    fused: dict[str, torch.Tensor] = {}
    for param in ("weight", "bias"):
        keys = [f"{prefix}{name}.{param}" for name in names]
        present = [k for k in keys if k in state_dict]
        if param == "bias" and not present:
            continue
        if len(present) < len(keys):
            missing.extend(k for k in keys if k not in state_dict)
            continue
        fused[param] = torch.cat([state_dict[k] for k in keys], dim=0)  # [3D, ...] q, k, v
        used.update(keys)
    return fused


def key_problems(
    missing: Sequence[str], unexpected: Sequence[str], *, missing_hint: str = "", unexpected_hint: str = ""
) -> list[str]:
    """The "missing keys: ..." / "unexpected keys: ..." parts of a converter's error (empty when all keys fit).

    A hint (with its leading space) follows its listing, e.g. which related format the keys point to.
    """
    problems = []
    if missing:
        problems.append(f"missing keys: {key_listing(list(missing))}{missing_hint}")
    if unexpected:
        problems.append(f"unexpected keys: {key_listing(list(unexpected))}{unexpected_hint}")
    return problems


__all__ = ["fuse_qkv", "key_problems"]
