"""Hybrid ViT (R50+ViT): the weight-standardised SAME conv, the ResNet-V2 stem, and parity with timm's hybrids
(`vit_base_r50_s16_*`, `vit_large_r50_s32_*`) on randomly initialised weights (no network)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import vitkit
from vitkit.layers.std_conv import StdConv2dSame
from vitkit.models.hybrid import HybridEmbed
from vitkit.models.resnetv2 import ResNetV2
from vitkit.registry import get_config

timm = pytest.importorskip("timm")

HYBRIDS = ["vit_base_r50_s16_224", "vit_base_r50_s16_384", "vit_large_r50_s32_224", "vit_large_r50_s32_384"]


def shapes(model: torch.nn.Module, prefix: str = "") -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith(prefix)}


def randomize_affine(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every 1-D parameter (norm scales and shifts, biases) random values: init leaves GroupNorm at 1 / 0
    and biases at 0, which would hide a swapped or ignored affine parameter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.2 * torch.randn(p.shape, generator=g))


# ------------------------------------------------------------------------------------ standardised conv
@pytest.mark.parametrize(("kernel", "stride", "size"), [(7, 2, (31, 20)), (3, 2, (17, 17)), (3, 1, (9, 12)),
                                                      (1, 2, (15, 16)), (1, 1, (5, 7)), (4, 1, (8, 9))])
def test_std_conv_is_conv_with_standardised_weight(kernel, stride, size):
    torch.manual_seed(0)
    conv = StdConv2dSame(6, 8, kernel, stride=stride, eps=1e-8)
    with torch.no_grad():
        conv.weight.mul_(3.0).add_(0.5)  # a mean and scale far from standardised
    x = torch.randn(2, 6, *size)
    w = conv.weight.detach()
    mean = w.mean(dim=(1, 2, 3), keepdim=True)
    var = ((w - mean) ** 2).mean(dim=(1, 2, 3), keepdim=True)  # biased, as in weight standardisation
    w_std = (w - mean) / torch.sqrt(var + 1e-8)
    pads = []
    for n in reversed(size):  # F.pad wants (left, right, top, bottom); TF puts the odd pixel after
        total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    expected = F.conv2d(F.pad(x, pads), w_std, stride=stride)
    out = conv(x)
    assert out.shape[-2:] == (math.ceil(size[0] / stride), math.ceil(size[1] / stride))
    torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-5)  # outputs are ~sqrt(fan_in) = 17


@pytest.mark.parametrize("size", [(7, 7), (15, 9), (33, 64), (1, 2)])
@pytest.mark.parametrize(("kernel", "stride"), [(7, 2), (3, 2), (1, 2), (3, 1), (3, 3)])
def test_same_padding_gives_ceil_outputs_like_timm(size, kernel, stride):
    torch.manual_seed(0)
    ours = StdConv2dSame(3, 4, kernel, stride=stride, eps=1e-8)
    ref = timm.layers.StdConv2dSame(3, 4, kernel, stride=stride, eps=1e-8)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(1, 3, *size)
    out = ours(x)
    assert out.shape[-2:] == (math.ceil(size[0] / stride), math.ceil(size[1] / stride))
    torch.testing.assert_close(out, ref(x), atol=1e-5, rtol=1e-5)


def test_std_conv_in_bfloat16_follows_float32():
    torch.manual_seed(0)
    conv = StdConv2dSame(8, 8, 3, stride=2, eps=1e-8)
    x = torch.randn(1, 8, 11, 11)
    expected = conv(x)
    out = conv.to(torch.bfloat16)(x.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, atol=0.1, rtol=0.05)


# ---------------------------------------------------------------------------------- backbone and embed
def test_resnetv2_output_size_for_odd_inputs():
    net = ResNetV2(layers=(1, 1, 1)).eval()
    x = torch.randn(1, 3, 45, 70)
    with torch.no_grad():
        y = net(x)
    assert y.shape == (1, 1024, math.ceil(45 / 16), math.ceil(70 / 16))
    assert net.feature_size((45, 70)) == tuple(y.shape[-2:])


def test_hybrid_embed_interface():
    embed = HybridEmbed(img_size=(64, 96), patch_size=1, in_chans=3, embed_dim=32, layers=(1, 1, 1)).eval()
    assert embed.img_size == (64, 96) and embed.patch_size == (1, 1)
    assert embed.grid_size == (4, 6) and embed.num_patches == 24
    with torch.no_grad():
        tokens, grid = embed(torch.randn(2, 3, 64, 96))
        assert tokens.shape == (2, 24, 32) and grid == embed.grid_size
        tokens, grid = embed(torch.randn(1, 3, 50, 70))  # any size: the grid of the actual feature map
    assert grid == (4, 5) and tokens.shape == (1, 20, 32)


@pytest.mark.parametrize("name", HYBRIDS)
def test_patch_embed_keys_and_shapes_equal_timm(name):
    """Built on the meta device: no memory, no init, so all four hybrids are cheap to compare."""
    c = get_config(name)
    ref = timm.create_model(name, device="meta")
    with torch.device("meta"):
        ours = HybridEmbed(img_size=c.img_size, patch_size=c.patch_size, in_chans=c.in_chans,
                           embed_dim=c.embed_dim, layers=c.backbone_layers)
    assert shapes(ours) == shapes(ref.patch_embed)
    assert ours.grid_size == tuple(ref.patch_embed.grid_size)
    assert ours.num_patches == ref.patch_embed.num_patches


@pytest.mark.parametrize(
    "overrides", [{"depth": 1}, pytest.param({}, marks=pytest.mark.slow)], ids=["depth1", "full"]
)
def test_vit_large_r50_s32_224_state_dict_equals_timm(overrides):
    """Every key and shape of the whole model. The full 24-block build spends ~8 CPU-seconds initialising
    300M parameters, so the default run checks a one-block copy (same names, same shapes)."""
    ref = timm.create_model("vit_large_r50_s32_224", device="meta", **overrides)
    ours = vitkit.create_model("vit_large_r50_s32_224", **overrides)
    assert shapes(ours) == shapes(ref)


# -------------------------------------------------------------------------------------- timm parity
@pytest.fixture(scope="module")
def timm_r50_b16_384(tmp_path_factory):
    """A seeded random timm vit_base_r50_s16_384, saved as .safetensors and .pth, with its logits."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    ref = timm.create_model("vit_base_r50_s16_384").eval()
    randomize_affine(ref)
    sd = {k: v.contiguous() for k, v in ref.state_dict().items()}
    d = tmp_path_factory.mktemp("r50_b16_384")
    save_file(sd, str(d / "model.safetensors"))
    torch.save(sd, d / "model.pth")
    x = torch.randn(1, 3, 384, 384)
    with torch.no_grad():
        logits = ref(x)
    return d, x, logits


@pytest.mark.parametrize("filename", ["model.safetensors", "model.pth"])
def test_vit_base_r50_s16_384_matches_timm(timm_r50_b16_384, filename):
    d, x, expected = timm_r50_b16_384
    model = vitkit.from_pretrained(d / filename, model="vit_base_r50_s16_384")
    assert model.patch_embed.grid_size == (24, 24)
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == expected.shape == (1, 1000)
    assert expected.abs().max() > 0.1  # not a trivially small output
    assert (logits - expected).abs().max().item() <= 1e-4


def test_vit_base_r50_s16_224_matches_timm_at_another_size(tmp_path):
    """timm's default vit_base_r50_s16_224 has no head (in21k features); with dynamic_img_size it resamples
    the position grid to the feature map, as vitkit always does. 197x231 also exercises uneven SAME padding.
    The full CNN, but two transformer blocks (the 384 test above runs all twelve) to keep the run short."""
    from safetensors.torch import save_file

    torch.manual_seed(1)
    ref = timm.create_model("vit_base_r50_s16_224", dynamic_img_size=True, depth=2).eval()
    randomize_affine(ref, seed=1)
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "w.safetensors"))
    model = vitkit.from_pretrained(tmp_path / "w.safetensors", model="vit_base_r50_s16_224", depth=2)
    assert model.config.num_classes == 0
    x = torch.randn(1, 3, 197, 231)
    with torch.no_grad():
        expected = ref(x)  # [1, 768] pooled features
        result = model.forward_intermediates(x, layers=[-1])
    out = result["logits"]  # no head: the pooled features
    assert result["grid"] == (13, 15)  # ceil(197 / 16), ceil(231 / 16)
    assert out.shape == expected.shape == (1, 768)
    assert (out - expected).abs().max().item() <= 1e-4


# ------------------------------------------------------------------------------------------- backward
@pytest.mark.parametrize("name", ["vit_base_r50_s16_224", "vit_large_r50_s32_224"])
def test_backward_reaches_every_parameter(name):
    """The full CNN of each hybrid (3 and 4 stages); the transformer shrunk to one narrow block for speed."""
    torch.manual_seed(0)
    small = {"depth": 1, "embed_dim": 64, "num_heads": 4}
    model = vitkit.create_model(name, img_size=64, num_classes=5, **small).train()
    logits = model(torch.randn(2, 3, 64, 64))
    F.cross_entropy(logits, torch.tensor([0, 3])).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, f"no gradient reached: {no_grad}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
