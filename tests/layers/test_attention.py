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
        fast = attn(x, mask)
        explicit, probs = attn.forward_with_probs(x, mask)
        ref_out, ref_probs = naive_attention(attn, x, mask)
    assert isinstance(fast, torch.Tensor)  # the fused path returns the output alone
    assert probs.shape == (B, HEADS, N, N)
    torch.testing.assert_close(fast, explicit, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(probs, ref_probs, atol=1e-6, rtol=1e-5)


def test_masked_keys_get_zero_probability(attn, key_mask):
    x = torch.randn(B, N, DIM)
    with torch.no_grad():
        _, probs = attn.forward_with_probs(x, key_mask)
    dead = ~key_mask[:, None, None, :].expand_as(probs)  # [B, H, N, N]: columns of masked keys
    assert torch.all(probs[dead] == 0)
    torch.testing.assert_close(probs.sum(-1), torch.ones(B, HEADS, N))


def test_all_true_mask_equals_no_mask(attn):
    x = torch.randn(B, N, DIM)
    with torch.no_grad():
        a = attn(x, torch.ones(B, N, dtype=torch.bool))
        b = attn(x)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def run(attn, x, mask=None, with_probs=False):
    return attn.forward_with_probs(x, mask)[0] if with_probs else attn(x, mask)


@pytest.mark.parametrize("with_probs", [False, True])
def test_masked_padding_does_not_change_real_tokens(attn, with_probs):
    """What ViLT relies on: appending padding tokens and masking them leaves the real tokens' outputs alone."""
    x = torch.randn(B, N, DIM)
    padded = torch.cat([x, 100 * torch.randn(B, 5, DIM)], dim=1)  # loud padding: any leak would show
    mask = torch.ones(B, N + 5, dtype=torch.bool)
    mask[:, N:] = False
    with torch.no_grad():
        ref = run(attn, x, None, with_probs)
        out = run(attn, padded, mask, with_probs)
    torch.testing.assert_close(out[:, :N], ref, atol=1e-5, rtol=1e-5)


def test_ragged_batch_matches_per_sample_runs(attn):
    """Samples of different lengths padded into one batch give each sample's unpadded result."""
    lengths = [3, 6]
    x = torch.randn(len(lengths), max(lengths), DIM)
    mask = torch.arange(max(lengths))[None] < torch.tensor(lengths)[:, None]  # [B, N] True = real token
    with torch.no_grad():
        batched = attn(x, mask)
        for i, n in enumerate(lengths):
            alone = attn(x[i : i + 1, :n])
            torch.testing.assert_close(batched[i : i + 1, :n], alone, atol=1e-5, rtol=1e-5)


def test_gradients_flow_through_both_paths(attn):
    attn.train()
    x = torch.randn(B, N, DIM, requires_grad=True)
    for with_probs in (False, True):
        x.grad = None
        attn.zero_grad()
        out = run(attn, x, None, with_probs)
        out.square().sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        assert all(p.grad is not None for p in attn.parameters())


def test_attention_dropout_only_in_training():
    attn = Attention(DIM, num_heads=HEADS, attn_drop=0.5)
    x = torch.randn(B, N, DIM)
    attn.train()
    a = attn(x)
    b = attn(x)
    assert not torch.allclose(a, b)  # different dropout masks
    attn.eval()
    with torch.no_grad():
        c = attn(x)
        d = attn(x)
    assert torch.equal(c, d)


def test_dim_not_divisible_by_heads():
    with pytest.raises(ValueError, match="divisible"):
        Attention(30, num_heads=4)


def causal_naive(attn: Attention, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Each prefix alone: token i's output from tokens 0..i only (what a causal mask means)."""
    rows = []
    for i in range(x.shape[1]):
        prefix_mask = None if key_mask is None else key_mask[:, : i + 1]
        rows.append(naive_attention(attn, x[:, : i + 1], prefix_mask)[0][:, i])
    return torch.stack(rows, dim=1)


@pytest.mark.parametrize("masked", [False, True])
def test_causal_attention_equals_each_prefix_alone(attn, masked):
    x = torch.randn(B, N, DIM)
    mask = torch.ones(B, N, dtype=torch.bool)
    if masked:
        mask[0, 5:] = False  # right padding (CLIP's texts): every real token still sees only real keys
    with torch.no_grad():
        fast = attn(x, mask if masked else None, is_causal=True)
        explicit, probs = attn.forward_with_probs(x, mask if masked else None, is_causal=True)
        ref = causal_naive(attn, x, mask if masked else None)
    real = mask[..., None].expand_as(fast)
    torch.testing.assert_close(fast[real], ref[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(explicit[real], ref[real], atol=1e-5, rtol=1e-5)
    assert torch.all(probs.triu(1) == 0)  # no query attends to a later key


def test_causal_first_queries_equal_full_rows(attn):
    x = torch.randn(B, N, DIM)
    with torch.no_grad():
        full = attn(x, is_causal=True)
        part = attn(x, num_queries=3, is_causal=True)
    torch.testing.assert_close(part, full[:, :3], atol=1e-6, rtol=1e-5)
