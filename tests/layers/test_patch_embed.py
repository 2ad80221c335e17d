"""PatchEmbed: a conv with kernel = stride = patch is a linear map of each flattened patch, row-major."""

from __future__ import annotations

import pytest
import torch

from vitkit.errors import VitkitError
from vitkit.layers import ConvStem, OverlapPatchEmbed, PatchEmbed


def reference_patchify(x: torch.Tensor, pe: PatchEmbed) -> torch.Tensor:
    """Cut whole patches with unfold, flatten each (channel, row, col) and apply the conv weight as a matrix."""
    ph, pw = pe.patch_size
    B, C, H, W = x.shape
    gh, gw = H // ph, W // pw
    patches = x[:, :, : gh * ph, : gw * pw].unfold(2, ph, ph).unfold(3, pw, pw)  # [B, C, gh, gw, ph, pw]
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(B, gh * gw, C * ph * pw)  # row-major over the grid
    weight = pe.proj.weight.reshape(pe.proj.out_channels, -1)  # [D, C*ph*pw]
    return patches @ weight.T + pe.proj.bias


@pytest.mark.parametrize(
    ("patch", "img", "grid"),
    [
        (16, (224, 224), (14, 14)),
        (4, (32, 32), (8, 8)),
        (7, (28, 28), (4, 4)),
        (16, (160, 256), (10, 16)),  # non-square input
        ((4, 8), (16, 32), (4, 4)),  # non-square patches
        (16, (230, 250), (14, 15)),  # pixels past the last whole patch are dropped
        (1, (5, 3), (5, 3)),
    ],
)
def test_patch_embed_is_a_linear_map_of_each_patch(patch, img, grid):
    pe = PatchEmbed(img_size=img, patch_size=patch, in_chans=3, embed_dim=8)
    x = torch.randn(2, 3, *img)
    with torch.no_grad():
        tokens, out_grid = pe(x)
        ref = reference_patchify(x, pe)
    assert out_grid == grid
    assert tokens.shape == (2, grid[0] * grid[1], 8)
    torch.testing.assert_close(tokens, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("img", "patch", "grid", "n"), [(224, 16, (14, 14), 196), ((384, 192), 32, (12, 6), 72)])
def test_grid_size_from_config(img, patch, grid, n):
    pe = PatchEmbed(img_size=img, patch_size=patch, in_chans=3, embed_dim=4)
    assert pe.grid_size == grid
    assert pe.num_patches == n


def test_any_input_size_gives_its_own_grid():
    pe = PatchEmbed(img_size=224, patch_size=16, in_chans=1, embed_dim=4)
    _, grid = pe(torch.randn(1, 1, 64, 48))
    assert grid == (4, 3)


@pytest.mark.parametrize("hw", [(15, 32), (32, 15), (8, 8)])
def test_input_smaller_than_a_patch_is_an_error(hw):
    pe = PatchEmbed(img_size=32, patch_size=16, in_chans=3, embed_dim=4)
    with pytest.raises(VitkitError, match="smaller than one 16x16 patch"):
        pe(torch.randn(1, 3, *hw))


@pytest.mark.parametrize(("patch", "img", "grid", "chans"), [(8, 64, (8, 8), [32, 64, 128]), (4, (32, 48), (8, 12),
                                                              [64, 128]), (16, 70, (4, 4), [16, 32, 64, 128])])
def test_conv_stem_reaches_the_patch_grid(patch, img, grid, chans):
    stem = ConvStem(img_size=img, patch_size=patch, in_chans=3, embed_dim=128)
    assert stem.grid_size == grid and stem.num_patches == grid[0] * grid[1]
    assert [m.out_channels for m in stem.stem if isinstance(m, torch.nn.Conv2d)] == chans
    hw = (img, img) if isinstance(img, int) else img
    tokens, out_grid = stem(torch.randn(2, 3, *hw))
    assert out_grid == grid and tokens.shape == (2, grid[0] * grid[1], 128)


def test_conv_stem_needs_a_power_of_two_patch():
    with pytest.raises(VitkitError, match="power-of-two"):
        ConvStem(img_size=63, patch_size=7, in_chans=3, embed_dim=8)
    stem = ConvStem(img_size=64, patch_size=8, in_chans=3, embed_dim=8)
    with pytest.raises(VitkitError, match="smaller than one 8x8 patch"):
        stem(torch.randn(1, 3, 7, 32))


def test_overlap_patch_embed_is_a_linear_map_of_the_window_centred_on_each_patch():
    from vitkit.layers import OverlapPatchEmbed

    torch.manual_seed(0)
    emb = OverlapPatchEmbed(img_size=32, patch_size=8, in_chans=3, embed_dim=16)
    x = torch.randn(2, 3, 35, 32)  # 3 rows past the last whole patch are dropped
    tokens, grid = emb(x)
    assert grid == (4, 4) and tokens.shape == (2, 16, 16) and emb.num_patches == 16
    padded = torch.nn.functional.pad(x[:, :, :32], (4, 4, 4, 4))  # zeros, half a patch on every side
    W = emb.proj.weight.reshape(16, -1)
    for r, c in [(0, 0), (1, 2), (3, 3)]:
        window = padded[:, :, 8 * r : 8 * r + 16, 8 * c : 8 * c + 16].reshape(2, -1)  # centred on patch (r, c)
        torch.testing.assert_close(tokens[:, 4 * r + c], window @ W.T + emb.proj.bias, rtol=1e-5, atol=1e-5)
    with pytest.raises(VitkitError, match="even"):
        OverlapPatchEmbed(img_size=30, patch_size=5, in_chans=3, embed_dim=8)


def test_overlap_conv_embed_starts_as_the_overlap_stem_and_adds_the_conv_branch():
    from vitkit.layers import ConvStem, OverlapConvEmbed, OverlapPatchEmbed

    torch.manual_seed(0)
    emb = OverlapConvEmbed(img_size=32, patch_size=8, in_chans=3, embed_dim=16)
    plain = OverlapPatchEmbed(img_size=32, patch_size=8, in_chans=3, embed_dim=16)
    plain.load_state_dict({k: v for k, v in emb.state_dict().items() if not k.startswith("conv.")})
    x = torch.randn(2, 3, 35, 37)  # pixels past the last whole patch are dropped by both branches
    tokens, grid = emb(x)
    ref, ref_grid = plain(x)
    assert grid == ref_grid == (4, 4) and emb.num_patches == 16 and isinstance(emb.conv, ConvStem)
    torch.testing.assert_close(tokens, ref)  # the conv branch's projection starts at zero
    # ... yet it learns: the zero projection gets a gradient, and once non-zero the branch adds its tokens
    tokens.square().sum().backward()
    assert emb.conv.proj.weight.grad.abs().sum() > 0
    torch.nn.init.normal_(emb.conv.proj.weight)
    emb.eval()
    with torch.no_grad():
        shape, shape_grid = emb.conv(x)
        assert shape_grid == grid and shape.abs().sum() > 0
        torch.testing.assert_close(emb(x)[0], plain(x)[0] + shape)
    with pytest.raises(VitkitError, match="power-of-two"):
        OverlapConvEmbed(img_size=36, patch_size=6, in_chans=3, embed_dim=8)


@pytest.mark.parametrize("cls", [PatchEmbed, OverlapPatchEmbed])
def test_forward_selected_computes_the_kept_patches_only(cls):
    torch.manual_seed(0)
    pe = cls(img_size=32, patch_size=8, in_chans=3, embed_dim=16)
    x = torch.randn(2, 3, 36, 44)  # 4 x 5 patches, a few pixels past the last ones
    keep = torch.rand(2, 4, 5) < 0.6
    keep[0, 0, 0] = True
    with torch.no_grad():
        full, grid = pe(x)
        got = pe.forward_selected(x, keep)
    assert grid == (4, 5) and got.shape == full.shape
    k = keep.flatten(1)
    torch.testing.assert_close(got[k], full[k], atol=1e-5, rtol=1e-5)
    assert not got[~k].any()
