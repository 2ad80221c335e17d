"""Position embeddings: resampling equals F.interpolate (and timm's resampler); sin-cos equals MAE/DiT's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed

from vitkit.layers import resample_pos_embed, sincos_2d_pos_embed

D = 16


def interpolate_reference(pe, new_grid, old_grid, num_prefix, **kwargs):
    """Resample the grid part directly with F.interpolate, channels first, prefix tokens copied through."""
    prefix, grid = pe[:, :num_prefix], pe[:, num_prefix:]
    grid = grid.reshape(1, *old_grid, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_grid, **kwargs)
    return torch.cat([prefix, grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], -1)], dim=1)


GRIDS = [((14, 14), (24, 24)), ((24, 24), (14, 14)), ((14, 14), (10, 16)), ((6, 9), (12, 5)), ((7, 7), (7, 3))]


@pytest.mark.parametrize(("old_grid", "new_grid"), GRIDS)
@pytest.mark.parametrize("num_prefix", [0, 1, 2])
def test_resample_timm_mode_equals_interpolate(old_grid, new_grid, num_prefix):
    pe = torch.randn(1, num_prefix + old_grid[0] * old_grid[1], D)
    out = resample_pos_embed(pe, new_grid, old_grid, num_prefix=num_prefix)
    ref = interpolate_reference(pe, new_grid, old_grid, num_prefix, mode="bicubic", antialias=True)
    assert out.shape == (1, num_prefix + new_grid[0] * new_grid[1], D)
    torch.testing.assert_close(out, ref)
    assert torch.equal(out[:, :num_prefix], pe[:, :num_prefix])  # prefix tokens untouched


@pytest.mark.parametrize(("old_grid", "new_grid"), GRIDS)
def test_resample_vilt_mode_equals_interpolate(old_grid, new_grid):
    pe = torch.randn(1, 1 + old_grid[0] * old_grid[1], D)
    out = resample_pos_embed(pe, new_grid, old_grid, num_prefix=1, mode="bilinear", align_corners=True,
                             antialias=False)
    ref = interpolate_reference(pe, new_grid, old_grid, 1, mode="bilinear", align_corners=True, antialias=False)
    torch.testing.assert_close(out, ref)
    # align_corners=True keeps the four corner embeddings exactly
    old = pe[0, 1:].reshape(*old_grid, D)
    new = out[0, 1:].reshape(*new_grid, D)
    for r, c in [(0, 0), (0, -1), (-1, 0), (-1, -1)]:
        torch.testing.assert_close(new[r, c], old[r, c])


@pytest.mark.parametrize(("old_grid", "new_grid"), GRIDS)
@pytest.mark.parametrize("num_prefix", [0, 1])
def test_resample_equals_timm(old_grid, new_grid, num_prefix):
    pe = torch.randn(1, num_prefix + old_grid[0] * old_grid[1], D)
    ref = resample_abs_pos_embed(pe, list(new_grid), list(old_grid), num_prefix_tokens=num_prefix)
    assert torch.equal(resample_pos_embed(pe, new_grid, old_grid, num_prefix=num_prefix), ref)


def test_resample_same_grid_is_identity_and_keeps_dtype():
    pe = torch.randn(1, 1 + 16, D, dtype=torch.float64)
    assert resample_pos_embed(pe, (4, 4), (4, 4), num_prefix=1) is pe
    out = resample_pos_embed(pe.half(), (8, 2), (4, 4), num_prefix=1)
    assert out.dtype == torch.float16


def test_resample_upsample_of_constant_grid_is_constant():
    pe = torch.full((1, 1 + 9, D), 0.25)
    pe[:, 0] = 7.0
    out = resample_pos_embed(pe, (5, 8), (3, 3), num_prefix=1)
    torch.testing.assert_close(out[:, 1:], torch.full((1, 40, D), 0.25))
    assert torch.all(out[:, 0] == 7.0)


def test_resample_rejects_wrong_old_grid():
    with pytest.raises(ValueError, match="not 4x4"):
        resample_pos_embed(torch.randn(1, 1 + 15, D), (8, 8), (4, 4), num_prefix=1)


# --------------------------------------------------------------------------------------------------- sin-cos
def mae_1d(embed_dim: int, pos: np.ndarray) -> np.ndarray:
    """MAE/DiT get_1d_sincos_pos_embed_from_grid: [sin(pos*omega), cos(pos*omega)], omega = 1/10000^(i/(D/2))."""
    omega = np.arange(embed_dim // 2, dtype=np.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000**omega
    out = np.einsum("m,d->md", pos.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def mae_2d(embed_dim: int, grid_hw: tuple[int, int]) -> np.ndarray:
    """MAE/DiT get_2d_sincos_pos_embed (generalised to h != w): meshgrid(w, h), so grid[0] is the column
    (w) coordinate and grid[1] the row; emb = concat(emb(grid[0]), emb(grid[1])), each over embed_dim/2."""
    h, w = grid_hw
    grid = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))  # w goes first
    grid = np.stack(grid, axis=0).reshape(2, 1, h, w)
    emb_a = mae_1d(embed_dim // 2, grid[0])
    emb_b = mae_1d(embed_dim // 2, grid[1])
    return np.concatenate([emb_a, emb_b], axis=1)  # [h*w, D]


@pytest.mark.parametrize(("grid", "dim"), [((14, 14), 768), ((16, 16), 1152), ((8, 8), 64), ((4, 7), 32), ((7, 4), 8)])
def test_sincos_matches_mae_dit(grid, dim):
    out = sincos_2d_pos_embed(grid, dim)
    assert out.shape == (grid[0] * grid[1], dim)
    assert out.dtype == torch.float32
    ref = torch.from_numpy(mae_2d(dim, grid)).float()
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)


def test_sincos_layout_first_half_follows_the_column():
    out = sincos_2d_pos_embed((3, 5), 8).reshape(3, 5, 8)
    # token (row r, col c): channel 0 is sin(c * 1), channel 4 is sin(r * 1) (omega_0 = 1)
    rows, cols = torch.meshgrid(torch.arange(3.0), torch.arange(5.0), indexing="ij")
    torch.testing.assert_close(out[..., 0], cols.sin())
    torch.testing.assert_close(out[..., 4], rows.sin())
    torch.testing.assert_close(out[..., 2], cols.cos())
    torch.testing.assert_close(out[..., 6], rows.cos())


def test_sincos_needs_dim_divisible_by_4():
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d_pos_embed((2, 2), 30)
