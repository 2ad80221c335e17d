"""Attention: the SDPA fast path, the explicit-softmax path and an independent naive implementation agree,
with and without a key padding mask; padding that is masked out changes nothing for the real tokens."""

from __future__ import annotations

import math

import pytest
import torch

from vitkit.layers import Attention

B, N, DIM, HEADS = 2, 7, 32, 4


def naive_attention(attn: Attention, x: torch.Tensor, key_mask: torch.Tensor | None = None):
    """Textbook multi-head attention, per batch element and head, written from the weights alone."""
    b, n, c = x.shape
    h = attn.num_heads
    d = c // h
    w_q, w_k, w_v = attn.qkv.weight.split(c, dim=0)  # fused rows are [q; k; v], heads contiguous within each
    b_q, b_k, b_v = attn.qkv.bias.split(c, dim=0)
    out = torch.zeros(b, n, c, dtype=torch.float64)
    probs = torch.zeros(b, h, n, n, dtype=torch.float64)
    for i in range(b):
        xi = x[i].double()
        q = xi @ w_q.double().T + b_q.double()  # [n, c]
        k = xi @ w_k.double().T + b_k.double()
        v = xi @ w_v.double().T + b_v.double()
        for j in range(h):
            sl = slice(j * d, (j + 1) * d)
            scores = q[:, sl] @ k[:, sl].T / math.sqrt(d)  # [n, n]
            if key_mask is not None:
                scores[:, ~key_mask[i]] = float("-inf")
            p = scores.softmax(dim=-1)
            probs[i, j] = p
            out[i, :, sl] = p @ v[:, sl]
    out = out @ attn.proj.weight.double().T + attn.proj.bias.double()
    return out.float(), probs.float()


@pytest.fixture
def attn() -> Attention:
    return Attention(DIM, num_heads=HEADS).eval()


@pytest.fixture
def key_mask() -> torch.Tensor:
    mask = torch.ones(B, N, dtype=torch.bool)
    mask[0, 5:] = False  # sample 0: two padding tokens at the end
    mask[1, 2] = False  # sample 1: one masked token in the middle
    return mask


@pytest.mark.parametrize("masked", [False, True])
def test_sdpa_explicit_and_naive_paths_agree(attn, key_mask, masked):
    x = torch.randn(B, N, DIM)
    mask = key_mask if masked else None
    with torch.no_grad():
        fast, no_attn = attn(x, mask)
        explicit, probs = attn(x, mask, return_attention=True)
        ref_out, ref_probs = naive_attention(attn, x, mask)
    assert no_attn is None
    assert probs.shape == (B, HEADS, N, N)
    torch.testing.assert_close(fast, explicit, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(probs, ref_probs, atol=1e-6, rtol=1e-5)


def test_masked_keys_get_zero_probability(attn, key_mask):
    x = torch.randn(B, N, DIM)
    with torch.no_grad():
        _, probs = attn(x, key_mask, return_attention=True)
    dead = ~key_mask[:, None, None, :].expand_as(probs)  # [B, H, N, N]: columns of masked keys
    assert torch.all(probs[dead] == 0)
    torch.testing.assert_close(probs.sum(-1), torch.ones(B, HEADS, N))


def test_all_true_mask_equals_no_mask(attn):
    x = torch.randn(B, N, DIM)
    with torch.no_grad():
        a, _ = attn(x, torch.ones(B, N, dtype=torch.bool))
        b, _ = attn(x)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("return_attention", [False, True])
def test_masked_padding_does_not_change_real_tokens(attn, return_attention):
    """What ViLT relies on: appending padding tokens and masking them leaves the real tokens' outputs alone."""
    x = torch.randn(B, N, DIM)
    padded = torch.cat([x, 100 * torch.randn(B, 5, DIM)], dim=1)  # loud padding: any leak would show
    mask = torch.ones(B, N + 5, dtype=torch.bool)
    mask[:, N:] = False
    with torch.no_grad():
        ref, _ = attn(x, return_attention=return_attention)
        out, _ = attn(padded, mask, return_attention=return_attention)
    torch.testing.assert_close(out[:, :N], ref, atol=1e-5, rtol=1e-5)


def test_ragged_batch_matches_per_sample_runs(attn):
    """Samples of different lengths padded into one batch give each sample's unpadded result."""
    lengths = [3, 6]
    x = torch.randn(len(lengths), max(lengths), DIM)
    mask = torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]  # [B, N] True = real token
    with torch.no_grad():
        batched, _ = attn(x, mask)
        for i, n in enumerate(lengths):
            alone, _ = attn(x[i : i + 1, :n])
            torch.testing.assert_close(batched[i : i + 1, :n], alone, atol=1e-5, rtol=1e-5)


def test_gradients_flow_through_both_paths(attn):
    attn.train()
    x = torch.randn(B, N, DIM, requires_grad=True)
    for return_attention in (False, True):
        x.grad = None
        attn.zero_grad()
        out, _ = attn(x, return_attention=return_attention)
        out.square().sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        assert all(p.grad is not None for p in attn.parameters())


def test_attention_dropout_only_in_training():
    attn = Attention(DIM, num_heads=HEADS, attn_drop=0.5)
    x = torch.randn(B, N, DIM)
    attn.train()
    a, _ = attn(x)
    b, _ = attn(x)
    assert not torch.allclose(a, b)  # different dropout masks
    attn.eval()
    with torch.no_grad():
        c, _ = attn(x)
        d, _ = attn(x)
    assert torch.equal(c, d)


def test_dim_not_divisible_by_heads():
    with pytest.raises(ValueError, match="divisible"):
        Attention(30, num_heads=4)
