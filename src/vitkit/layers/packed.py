"""Inference over variable-length sequences without padding in the per-token layers.

A padded batch spends as much on a padding position as on a real token in every LayerNorm, projection and MLP,
which is nearly all of a transformer's work. Here the real tokens of b sequences sit back to back in one
[T, D] tensor (`pack`); the per-token layers run on those T rows only, and each block's attention alone goes
through a padded [b, N] layout (the sequences' keys side by side, a key-padding mask), so a token attends within
its own sequence exactly as it would alone. The result equals running each sequence separately, up to float
rounding.

    x, slots, first = pack(tokens, mask)  # [T, D]
    where = layout(slots)
    x = through(blocks[:-1], x, slots, where)
    cls = block(blocks[-1], x, slots, where, first)  # [b, D]: the last block on each sequence's first row
    feats = unpack(block(blocks[-1], x, slots, where), mask)  # or every row, [b, L, D] with zeros at padding
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .block import Block


def pack(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Padded tokens x [b, L, D] with mask [b, L] (True = real, anywhere in the row) -> (packed [T, D]: each row's
    real tokens in order, row after row; slots [b, N] bool, row j's n_j tokens at slots[j, :n_j] with N the
    longest n_j; first [b]: the packed index of each row's first real token)."""
    lengths = mask.sum(1)
    packed = x.flatten(0, 1)[mask.flatten()]
    n = int(lengths.max())
    slots = torch.arange(n, device=mask.device)[None, :] < lengths[:, None]
    return packed, slots, lengths.cumsum(0) - lengths


def unpack(packed: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The inverse of `pack`: packed [T, D] -> padded [b, L, D] laid out as `mask` [b, L], zeros where it is
    False."""
    b, L = mask.shape
    return packed.new_zeros(b * L, packed.shape[-1]).index_copy_(
        0, mask.flatten().nonzero().squeeze(1), packed).view(b, L, -1)


def layout(slots: torch.Tensor) -> torch.Tensor | None:
    """Where each packed row sits in the flattened [b, N] attention layout (for `block`); None when every sequence
    has N tokens (the packed rows are that layout already: no scatter, no gather, no mask)."""
    return None if bool(slots.all()) else slots.flatten().nonzero().squeeze(1)


def through(blocks: nn.ModuleList | list[Block], x: torch.Tensor, slots: torch.Tensor,
            where: torch.Tensor | None) -> torch.Tensor:
    """Run pre-norm `blocks` (eval) over packed rows x [T, D] -> [T, D]. where: `layout(slots)`."""
    if any(blk.training for blk in blocks):
        raise RuntimeError("packed blocks are for inference; call .eval() first")
    for blk in blocks:
        x = block(blk, x, slots, where)
    return x


def block(blk: Block, x: torch.Tensor, slots: torch.Tensor, where: torch.Tensor | None,
          rows: torch.Tensor | None = None) -> torch.Tensor:
    """One pre-norm block (eval) over packed rows x [T, D] -> [T, D]. With `rows` [b] (one packed index per
    sequence, e.g. each one's first token: what a [CLS]-pooled head reads) only those rows' outputs [b, D], their
    queries against every key of their sequence. where: `layout(slots)`. Stochastic depth and dropout would
    draw per token: inference only."""
    attn = blk.attn
    b, n = slots.shape
    C = x.shape[-1]
    h = blk.norm1(x)
    qkv = attn.project(h, "qkv" if rows is None else "kv")  # every row's q, k, v; or only k, v
    padded = qkv if where is None else qkv.new_zeros(b * n, qkv.shape[-1]).index_copy_(0, where, qkv)
    heads = attn.heads(padded.view(b, n, -1))  # each [b, H, n, hd]
    if rows is None:
        q, k, v = heads
    else:  # queries of `rows` only
        k, v = heads
        (q,) = attn.heads(attn.project(h[rows][:, None], "q"))  # [b, H, 1, hd]
    mask = None if where is None else slots[:, None, None, :]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [b, H, Q, hd]
    out = out.transpose(1, 2).reshape(-1, C)  # [b * Q, C]
    if rows is None:
        out = out if where is None else out.index_select(0, where)  # back to the packed rows
        res = x
    else:
        res = x[rows]
    res = res + blk.ls1(attn.proj(out))
    return res.add_(blk.ls2(blk.mlp(blk.norm2(res))))
