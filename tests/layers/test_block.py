"""Pre-norm block, DropPath and LayerScale."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vitkit.layers import Block, Dense, DropPath, LayerScale, Modulation, run_block

DIM, HEADS = 32, 4


def make_block(**kwargs) -> Block:
    return Block(DIM, num_heads=HEADS, mlp_hidden=4 * DIM, **kwargs)


def test_block_is_pre_norm_residual():
    """x + attn(norm1(x)), then + mlp(norm2(.)): recomputed from the submodules."""
    blk = make_block().eval()
    for p in blk.parameters():  # non-trivial norms and biases, so a swapped norm would show
        nn.init.normal_(p, std=0.1)
    x = torch.randn(2, 5, DIM)
    with torch.no_grad():
        out = blk(x)
        h = x + blk.attn(blk.norm1(x))
        ref = h + blk.mlp(blk.norm2(h))
    torch.testing.assert_close(out, ref)


def test_block_attention_and_mask_pass_through():
    blk = make_block().eval()
    x = torch.randn(2, 6, DIM)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 4:] = False
    recorded = Dense(mask, probs=[])
    with torch.no_grad():
        fast = blk(x, Dense(mask))
        explicit = blk(x, recorded)
    torch.testing.assert_close(fast, explicit, atol=1e-5, rtol=1e-5)
    (attn,) = recorded.probs
    assert attn.shape == (2, HEADS, 6, 6)
    assert torch.all(attn[1, :, :, 4:] == 0)


def test_eval_is_deterministic_with_all_dropouts_on():
    blk = make_block(proj_drop=0.3, attn_drop=0.3, drop_path=0.3, init_values=0.1).eval()
    x = torch.randn(3, 5, DIM)
    with torch.no_grad():
        a = blk(x)
        b = blk(x)
    assert torch.equal(a, b)
    blk.train()
    c = blk(x)
    d = blk(x)
    assert not torch.equal(c, d)


def test_drop_path_identity_in_eval_and_when_zero():
    x = torch.randn(4, 3, 5)
    dp = DropPath(0.5).eval()
    assert dp(x) is x
    assert DropPath(0.0).train()(x) is x


def test_drop_path_drops_whole_samples_and_rescales():
    dp = DropPath(0.5).train()
    x = torch.ones(2000, 3, 4)
    out = dp(x)
    per_sample = out.reshape(2000, -1)
    # each sample is either dropped entirely or kept and scaled by 1/keep
    assert torch.all((per_sample == 0).all(1) | (per_sample == 2.0).all(1))
    kept = (per_sample[:, 0] > 0).float().mean().item()
    assert 0.4 < kept < 0.6
    assert abs(out.mean().item() - 1.0) < 0.1  # unbiased in expectation


def test_block_without_drop_path_uses_identity():
    blk = make_block(drop_path=0.0)
    assert isinstance(blk.drop_path1, nn.Identity) and isinstance(blk.drop_path2, nn.Identity)
    assert isinstance(make_block(drop_path=0.1).drop_path1, DropPath)


def test_layerscale_gamma_init_and_scaling():
    ls = LayerScale(DIM, 1e-5)
    assert ls.gamma.shape == (DIM,)
    assert torch.all(ls.gamma == torch.tensor(1e-5))
    x = torch.randn(2, 3, DIM)
    torch.testing.assert_close(ls(x), x * 1e-5)


@pytest.mark.parametrize("init_values", [None, 0.0])
def test_layerscale_off_without_init_values(init_values):
    blk = make_block(init_values=init_values)
    assert isinstance(blk.ls1, nn.Identity) and isinstance(blk.ls2, nn.Identity)
    assert not any("gamma" in k for k in blk.state_dict())


def test_layerscale_in_block_scales_residual_branches():
    blk = make_block(init_values=1e-4).eval()
    assert isinstance(blk.ls1, LayerScale) and isinstance(blk.ls2, LayerScale)
    assert torch.all(blk.ls1.gamma == 1e-4) and torch.all(blk.ls2.gamma == 1e-4)
    x = torch.randn(2, 5, DIM)
    with torch.no_grad():
        out = blk(x)
        h = x + 1e-4 * blk.attn(blk.norm1(x))
        ref = h + 1e-4 * blk.mlp(blk.norm2(h))
    torch.testing.assert_close(out, ref)
    # with tiny gamma, the block starts close to the identity
    assert (out - x).abs().max() < 1e-2


def test_drop_path_groups_drop_whole_samples_of_packed_rows():
    """Rows of several samples in one [T, D] tensor (one-way fusion): one draw per sample, shared by its rows."""
    dp = DropPath(0.5).train()
    sample = torch.arange(400).repeat_interleave(3)  # 400 samples of 3 rows each
    out = dp(torch.ones(1200, 4), (sample, 400)).reshape(400, -1)
    assert torch.all((out == 0).all(1) | (out == 2.0).all(1))
    assert 0.35 < (out[:, 0] > 0).float().mean().item() < 0.65


def test_block_keeps_only_the_first_rows_it_is_asked_for():
    blk = make_block().eval()
    x = torch.randn(2, 6, DIM)
    with torch.no_grad():
        torch.testing.assert_close(blk(x, Dense(num_queries=1)), blk(x)[:, :1], atol=1e-6, rtol=1e-5)


def test_modulation_is_dit_adaln():
    """x + gate1 * attn(modulate(norm1(x))), then the same with the MLP: DiT's adaLN-Zero block."""
    blk = Block(DIM, num_heads=HEADS, mlp_hidden=2 * DIM, norm_affine=False, act="gelu_tanh").eval()
    x, c = torch.randn(2, 5, DIM), torch.randn(2, 6 * DIM)
    mod = Modulation.of(c)
    with torch.no_grad():
        out = blk(x, modulation=mod)
        h = x + mod.gate1[:, None] * blk.attn(blk.norm1(x) * (1 + mod.scale1[:, None]) + mod.shift1[:, None])
        ref = h + mod.gate2[:, None] * blk.mlp(blk.norm2(h) * (1 + mod.scale2[:, None]) + mod.shift2[:, None])
    torch.testing.assert_close(out, ref)
    assert not any(True for _ in blk.norm1.parameters())  # adaLN supplies the affine part


def test_grad_checkpointing_gives_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    blk = make_block(drop_path=0.0).train()
    x = torch.randn(2, 5, DIM, requires_grad=True)
    plain = run_block(blk, x)
    plain.square().sum().backward()
    want = [p.grad.clone() for p in blk.parameters()], x.grad.clone()
    blk.zero_grad()
    x.grad = None
    ckpt = run_block(blk, x, checkpointing=True)
    ckpt.square().sum().backward()
    torch.testing.assert_close(ckpt, plain)
    for a, b in zip([p.grad for p in blk.parameters()], want[0]):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(x.grad, want[1])
