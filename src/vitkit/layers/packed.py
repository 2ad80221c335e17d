"""Inference over variable-length sequences without padding in the per-token layers.

A padded batch spends as much on a padding position as on a real token in every LayerNorm, projection and MLP,
which is nearly all of a transformer's work. Here the real tokens of b sequences sit back to back in one
[T, D] tensor; the per-token layers run on those T rows only, and each block's attention alone goes through a
padded [b, N] layout (the sequences' keys side by side, a key-padding mask), so a token attends within its own
sequence exactly as it would alone. The result equals running each sequence separately, up to float rounding.
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


@torch.no_grad()
def packed_first_tokens(blocks: nn.ModuleList | list[Block], x: torch.Tensor, slots: torch.Tensor,
                        first: torch.Tensor) -> torch.Tensor:
    """Run pre-norm `blocks` over packed sequences (see `pack`) and return each sequence's first token after the
    last block, [b, D]: what a [CLS]-pooled head reads. The last block computes those b rows only (their queries
    against every key of their sequence). Inference only: stochastic depth and dropout would draw per token."""
    if any(blk.training for blk in blocks):
        raise RuntimeError("packed_first_tokens is for inference; call .eval() first")
    # packed row t -> its slot in the flattened [b, N] layout; None when every sequence has N tokens (the packed
    # rows are that layout already: no scatter, no gather, no mask)
    where = None if bool(slots.all()) else slots.flatten().nonzero().squeeze(1)
    for blk in blocks[:-1]:
        x = _block(blk, x, slots, where, None)
    return _block(blocks[-1], x, slots, where, first)


def _block(blk: Block, x: torch.Tensor, slots: torch.Tensor, where: torch.Tensor | None,
           rows: torch.Tensor | None) -> torch.Tensor:
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
