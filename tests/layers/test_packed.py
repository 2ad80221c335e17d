"""Packed inference (the `Packed` layout; ViLT.pooled_output / pooled_joint): real tokens back to back, no
padding in the per-token layers, the last block on [CLS] only — equal to the padded forward and to each
sequence run alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import vitkit
from vitkit.inference.vilt import processor_for
from vitkit.layers import Block, Packed
from vitkit.layers.packed import pack, unpack


def blocks(depth: int = 3, dim: int = 32) -> torch.nn.ModuleList:
    torch.manual_seed(0)
    made = [Block(dim, num_heads=4, mlp_hidden=2 * dim, init_values=0.5) for _ in range(depth)]
    return torch.nn.ModuleList(made).eval()


def padded_layout(slots):
    """The layout `Packed.of` picks off the CPU: scattered into [b, N] with a key mask (tested here on the CPU)."""
    return Packed(slots, where=slots.flatten().nonzero().squeeze(1))


def through(blks, x, lay):
    for blk in blks:
        x = blk(x, lay)
    return x


def packed_first_tokens(blks, x, slots, first, lay=None):
    """Each sequence's first row after the blocks, the last block on those rows only."""
    lay = Packed.of(slots) if lay is None else lay
    with torch.no_grad():
        return blks[-1](through(blks[:-1], x, lay), lay.rows(first))


def test_pack_keeps_each_rows_real_tokens_in_order():
    x = torch.arange(2 * 4 * 1, dtype=torch.float32).view(2, 4, 1)
    mask = torch.tensor([[True, False, True, True], [True, True, False, False]])
    packed, slots, first = pack(x, mask)
    assert packed[:, 0].tolist() == [0, 2, 3, 4, 5]
    assert slots.tolist() == [[True, True, True], [True, True, False]]
    assert first.tolist() == [0, 3]
    back = unpack(packed, mask)
    assert back[..., 0].tolist() == [[0, 0, 2, 3], [4, 5, 0, 0]]  # the real tokens in place, zeros elsewhere
    assert Packed.of(slots).lengths == [3, 2] and Packed.of(slots).where is None  # CPU: sequence by sequence
    assert padded_layout(slots).where.tolist() == [0, 1, 2, 3, 4]
    full = Packed.of(torch.ones(2, 3, dtype=torch.bool))  # equal lengths: one batched call, no mask
    assert full.where is None and full.lengths is None


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("lengths", [(5, 1, 9, 3), (6, 6, 6)])  # mixed; all equal (no scatter, no mask)
def test_packed_first_tokens_equal_each_sequence_alone(lengths, padded):
    blks = blocks()
    torch.manual_seed(1)
    seqs = [torch.randn(n, 32) for n in lengths]
    x = torch.cat(seqs)
    lengths = torch.tensor(lengths)
    slots = torch.arange(int(lengths.max()))[None] < lengths[:, None]
    first = lengths.cumsum(0) - lengths
    out = packed_first_tokens(blks, x, slots, first, padded_layout(slots) if padded else None)
    for j, s in enumerate(seqs):
        y = s[None]
        with torch.no_grad():
            for blk in blks:
                y = blk(y)
        torch.testing.assert_close(out[j], y[0, 0], atol=1e-5, rtol=1e-5)


def test_packed_runs_per_token_layers_on_real_tokens_only_and_the_last_block_on_first_rows():
    blks = blocks()
    seen = []
    for blk in blks:
        blk.mlp.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    x = torch.randn(4 + 7, 32)
    slots = torch.arange(7)[None] < torch.tensor([[4], [7]])
    packed_first_tokens(blks, x, slots, torch.tensor([0, 4]))
    assert seen == [11, 11, 2]


@pytest.mark.parametrize("padded", [False, True])
def test_packed_every_row_equals_each_sequence_alone_with_zeros_at_padding(padded):
    blks = blocks()
    torch.manual_seed(1)
    mask = torch.tensor([[True, True, False, True, False], [True, True, True, True, True], [True, False] + [False] * 3])
    tokens = torch.randn(3, 5, 32)
    x, slots, _ = pack(tokens, mask)
    with torch.no_grad():
        out = unpack(through(blks, x, padded_layout(slots) if padded else Packed.of(slots)), mask)
    for j in range(3):
        y = tokens[j][mask[j]][None]
        with torch.no_grad():
            for blk in blks:
                y = blk(y)
        torch.testing.assert_close(out[j][mask[j]], y[0], atol=1e-5, rtol=1e-5)
        assert not out[j][~mask[j]].any()


SMALL = dict(depth=2, embed_dim=64, num_heads=4, img_size=64, patch_size=16, shorter_edge=64, longer_edge=96,
             size_divisor=16, max_text_len=24)


def mixed_inputs(model):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
              for h, w in ((50, 80), (64, 64), (90, 40), (64, 96))]
    texts = ["a cat", "two dogs playing in the park at noon", "red", "what is on the table"]
    return processor_for(model)(images=images, text=texts)


@pytest.mark.parametrize("name", ["vilt_b32_vqa", "vilt_b32"])
def test_vilt_pooled_output_equals_the_padded_forward(name):
    torch.manual_seed(0)
    model = vitkit.create_model(name, **SMALL).eval()
    with torch.no_grad():
        for m in model.modules():  # unit-gain weights, so differences would show
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(std=m.in_features**-0.5)
    enc = mixed_inputs(model)
    args = [enc[k] for k in ("input_ids", "attention_mask", "pixel_values", "pixel_mask", "token_type_ids")]
    assert not enc["attention_mask"].all() and not enc["pixel_mask"].all()  # padding on both sides
    with torch.no_grad():
        want = model(*args).pooler_output
    got = model.pooled_output(*args)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    model.train()  # training (stochastic depth, patch sampling) takes the padded path ([CLS]-only last block)
    torch.manual_seed(3)
    with torch.no_grad():
        want = model(*args).pooler_output
    torch.manual_seed(3)
    torch.testing.assert_close(model.pooled_output(*args), want, atol=1e-5, rtol=1e-5)


def test_vilt_one_way_pooled_output_takes_the_two_stream_path():
    torch.manual_seed(0)
    model = vitkit.create_model("vilt_nano_patch8_64").eval()
    enc = processor_for(model)(images=[Image.new("RGB", (64, 64))] * 2, text=["a red cube", "is there a ball"])
    args = [enc[k] for k in ("input_ids", "attention_mask", "pixel_values", "pixel_mask", "token_type_ids")]
    with torch.no_grad():
        torch.testing.assert_close(model.pooled_output(*args), model(*args).pooler_output, atol=1e-6, rtol=1e-5)
