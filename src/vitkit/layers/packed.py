"""Inference over variable-length sequences without padding in the per-token layers.

A padded batch spends as much on a padding position as on a real token in every LayerNorm, projection and MLP,
which is nearly all of a transformer's work. Here the real tokens of b sequences sit back to back in one
[T, D] tensor (`pack`); the per-token layers run on those T rows only, and a token attends within its own
sequence exactly as it would alone. The result equals running each sequence separately, up to float rounding.

The attention, the one step that needs the sequences apart, takes one of three layouts (`layout`): sequences of
equal length are already a [b, n] batch (one call, no mask); on the CPU, sequences of mixed lengths attend one by
one over their slice of the packed rows (no padded keys: the attention costs sum(n_j^2), not b * max(n_j)^2, and
there is no scatter or gather); elsewhere (GPU: one kernel rather than b launches) they are scattered into a
padded [b, N] layout with a key-padding mask and gathered back.

    x, slots, first = pack(tokens, mask)  # [T, D]
    lay = layout(slots)
    x = through(blocks[:-1], x, lay)
    cls = block(blocks[-1], x, lay, first)  # [b, D]: the last block on each sequence's first row
    feats = unpack(block(blocks[-1], x, lay), mask)  # or every row, [b, L, D] with zeros at padding
"""

from __future__ import annotations

from typing import NamedTuple

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


class Layout(NamedTuple):
    """How a block's attention sees packed sequences (see the module docstring): `slots` [b, N] (from `pack`);
    `lengths` (host ints) to attend sequence by sequence; else `where` (packed row -> slot in the flattened
    [b, N] layout) to scatter into it, or neither when every sequence has N tokens."""

    slots: torch.Tensor
    where: torch.Tensor | None = None
    lengths: list[int] | None = None


def layout(slots: torch.Tensor) -> Layout:
    """The attention layout for packed sequences with these `slots` (see `Layout`)."""
    if bool(slots.all()):
        return Layout(slots)
    if slots.device.type == "cpu":
        return Layout(slots, lengths=slots.sum(1).tolist())
    return Layout(slots, where=slots.flatten().nonzero().squeeze(1))


def through(blocks: nn.ModuleList | list[Block], x: torch.Tensor, lay: Layout) -> torch.Tensor:
    """Run pre-norm `blocks` (eval) over packed rows x [T, D] -> [T, D]. lay: `layout(slots)`."""
    if any(blk.training for blk in blocks):
        raise RuntimeError("packed blocks are for inference; call .eval() first")
    for blk in blocks:
        x = block(blk, x, lay)
    return x


def block(blk: Block, x: torch.Tensor, lay: Layout, rows: torch.Tensor | None = None) -> torch.Tensor:
    """One pre-norm block (eval) over packed rows x [T, D] -> [T, D]. With `rows` [b] (one packed index per
    sequence, e.g. each one's first token: what a [CLS]-pooled head reads) only those rows' outputs [b, D], their
    queries against every key of their sequence. lay: `layout(slots)`. Stochastic depth and dropout would draw
    per token: inference only."""
    attn = blk.attn
    h = blk.norm1(x)
    qkv = attn.project(h, "qkv" if rows is None else "kv")  # every row's q, k, v; or only k, v
    q_rows = None if rows is None else attn.heads(attn.project(h[rows][:, None], "q"))[0]  # [b, H, 1, hd]
    if lay.lengths is not None:  # sequence by sequence: [1, H, n_j, hd] slices of the packed rows
        outs = []
        for j, part in enumerate(qkv.split(lay.lengths)):
            heads = attn.heads(part[None])
            q, k, v = heads if q_rows is None else (q_rows[j:j + 1], *heads)
            outs.append(F.scaled_dot_product_attention(q, k, v).transpose(1, 2))  # [1, Q, H, hd], a view
        out = torch.cat(outs, dim=1).flatten(2).flatten(0, 1)  # [T or b, C]: one copy
    else:
        b, n = lay.slots.shape
        padded = qkv if lay.where is None else qkv.new_zeros(b * n, qkv.shape[-1]).index_copy_(0, lay.where, qkv)
        heads = attn.heads(padded.view(b, n, -1))  # each [b, H, n, hd]
        q, k, v = heads if q_rows is None else (q_rows, *heads)
        mask = None if lay.where is None else lay.slots[:, None, None, :]
        out = _merge(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))  # [b * Q, C]
        if rows is None and lay.where is not None:
            out = out.index_select(0, lay.where)  # back to the packed rows
    res = x if rows is None else x[rows]
    res = res + blk.ls1(attn.proj(out))
    return res.add_(blk.ls2(blk.mlp(blk.norm2(res))))


def _merge(out: torch.Tensor) -> torch.Tensor:
    """Attention output [b, H, Q, hd] -> [b * Q, H * hd]."""
    return out.transpose(1, 2).flatten(2).flatten(0, 1)
