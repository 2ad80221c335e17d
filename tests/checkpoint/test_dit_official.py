"""Official DiT checkpoints (facebookresearch/DiT .pt files) through `vitkit.from_pretrained`: a state dict with
the published key names and random values loads to outputs identical to an independent functional forward
written here from the paper's equations; sizes are inferred from the weights; loading is strict."""

from __future__ import annotations

import argparse
import logging
import math

import pytest
import torch
import torch.nn.functional as F

import vitkit
from vitkit.errors import CheckpointError
from vitkit.layers import sincos_2d_pos_embed
from vitkit.models import DiT

ATOL = 1e-5  # fp32, outputs of order 1


def official_shapes(D: int, depth: int, p: int, C: int, num_classes: int, grid: int, learn_sigma: bool = True,
                    mlp_ratio: float = 4.0, null_label: bool = True) -> dict[str, tuple[int, ...]]:
    """Every key of an official DiT state dict (models.py + timm's Attention/Mlp/PatchEmbed) and its shape."""
    out_c = 2 * C if learn_sigma else C
    H = int(D * mlp_ratio)
    shapes = {
        "x_embedder.proj.weight": (D, C, p, p), "x_embedder.proj.bias": (D,),
        "pos_embed": (1, grid * grid, D),
        "t_embedder.mlp.0.weight": (D, 256), "t_embedder.mlp.0.bias": (D,),
        "t_embedder.mlp.2.weight": (D, D), "t_embedder.mlp.2.bias": (D,),
        "y_embedder.embedding_table.weight": (num_classes + int(null_label), D),
    }
    for i in range(depth):
        b = f"blocks.{i}."
        shapes.update({
            b + "attn.qkv.weight": (3 * D, D), b + "attn.qkv.bias": (3 * D,),
            b + "attn.proj.weight": (D, D), b + "attn.proj.bias": (D,),
            b + "mlp.fc1.weight": (H, D), b + "mlp.fc1.bias": (H,),
            b + "mlp.fc2.weight": (D, H), b + "mlp.fc2.bias": (D,),
            b + "adaLN_modulation.1.weight": (6 * D, D), b + "adaLN_modulation.1.bias": (6 * D,),
        })
    shapes.update({
        "final_layer.linear.weight": (p * p * out_c, D), "final_layer.linear.bias": (p * p * out_c,),
        "final_layer.adaLN_modulation.1.weight": (2 * D, D), "final_layer.adaLN_modulation.1.bias": (2 * D,),
    })
    return shapes


def official_state_dict(**kw) -> dict[str, torch.Tensor]:
    """Random values of a sensible scale everywhere, adaLN included (so modulation is really exercised)."""
    sd = {}
    for k, shape in official_shapes(**kw).items():
        fan_in = shape[1] if len(shape) == 2 and "embedding" not in k else (
            math.prod(shape[1:]) if len(shape) == 4 else 1)
        sd[k] = torch.randn(shape) / math.sqrt(fan_in) * (0.5 if "adaLN" in k else 1.0)
    return sd


def reference_forward(sd: dict[str, torch.Tensor], x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, *,
                      heads: int) -> torch.Tensor:
    """DiT's forward from the equations, plain torch ops only."""
    B = x.shape[0]
    D, _, p, _ = sd["x_embedder.proj.weight"].shape
    h = F.conv2d(x, sd["x_embedder.proj.weight"], sd["x_embedder.proj.bias"], stride=p)
    gh, gw = h.shape[-2:]
    h = h.flatten(2).transpose(1, 2) + sd["pos_embed"]  # [B, N, D]
    half = 128
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    temb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    temb = F.linear(F.silu(F.linear(temb, sd["t_embedder.mlp.0.weight"], sd["t_embedder.mlp.0.bias"])),
                    sd["t_embedder.mlp.2.weight"], sd["t_embedder.mlp.2.bias"])
    c = temb + sd["y_embedder.embedding_table.weight"][y]
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    hd = D // heads
    N = h.shape[1]
    for i in range(depth):
        w = {k[len(f"blocks.{i}."):]: v for k, v in sd.items() if k.startswith(f"blocks.{i}.")}
        mod = F.linear(F.silu(c), w["adaLN_modulation.1.weight"], w["adaLN_modulation.1.bias"])
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=1)
        a = F.layer_norm(h, (D,), eps=1e-6) * (1 + scale1[:, None]) + shift1[:, None]
        q, k, v = F.linear(a, w["attn.qkv.weight"], w["attn.qkv.bias"]).reshape(B, N, 3, heads, hd).permute(
            2, 0, 3, 1, 4)
        attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(hd), dim=-1)
        a = (attn @ v).transpose(1, 2).reshape(B, N, D)
        h = h + gate1[:, None] * F.linear(a, w["attn.proj.weight"], w["attn.proj.bias"])
        m = F.layer_norm(h, (D,), eps=1e-6) * (1 + scale2[:, None]) + shift2[:, None]
        m = F.gelu(F.linear(m, w["mlp.fc1.weight"], w["mlp.fc1.bias"]), approximate="tanh")
        h = h + gate2[:, None] * F.linear(m, w["mlp.fc2.weight"], w["mlp.fc2.bias"])
    shift, scale = F.linear(F.silu(c), sd["final_layer.adaLN_modulation.1.weight"],
                            sd["final_layer.adaLN_modulation.1.bias"]).chunk(2, dim=1)
    h = F.layer_norm(h, (D,), eps=1e-6) * (1 + scale[:, None]) + shift[:, None]
    h = F.linear(h, sd["final_layer.linear.weight"], sd["final_layer.linear.bias"])
    out_c = h.shape[-1] // (p * p)
    h = torch.einsum("nhwpqc->nchpwq", h.reshape(B, gh, gw, p, p, out_c))
    return h.reshape(B, out_c, gh * p, gw * p)


# the registered CPU preset's sizes, so model= can name it (DiT-XL/2 itself would be 675M parameters)
NANO = {"D": 128, "depth": 6, "p": 4, "C": 1, "num_classes": 10, "grid": 8}
NANO_HEADS = 4


def _inputs(C: int, side: int, num_classes: int, B: int = 3):
    x = torch.randn(B, C, side, side)
    t = torch.tensor([0, 417, 999])[:B]
    y = torch.tensor([3, num_classes, 7 % num_classes])[:B]  # one null label
    return x, t, y


@pytest.fixture(scope="module")
def nano_sd() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return official_state_dict(**NANO)


@pytest.mark.parametrize("model_name", [None, "dit_nano_patch4_32"])
def test_official_state_dict_matches_the_functional_reference(tmp_path, nano_sd, model_name):
    path = tmp_path / "DiT-nano.pt"
    torch.save(nano_sd, path)
    model = vitkit.from_pretrained(path, model=model_name)
    assert isinstance(model, DiT) and not model.training
    c = model.config
    assert (c.hidden_size, c.depth, c.patch_size, c.in_channels, c.num_classes, c.input_size, c.num_heads,
            c.learn_sigma) == (128, 6, 4, 1, 10, 32, NANO_HEADS, True)
    assert c.latent_scale is None  # 1 channel: pixel space
    x, t, y = _inputs(1, 32, 10)
    with torch.no_grad():
        ours = model(x, t, y)
        ref = reference_forward(nano_sd, x, t, y, heads=NANO_HEADS)
    assert ours.shape == (3, 2, 32, 32)
    assert ref.abs().mean() > 0.1  # non-trivial outputs
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=0)


def test_other_sizes_and_fixed_variance(tmp_path):
    """Sizes come from the weights: another width, depth, mlp ratio, grid and learn_sigma=False."""
    torch.manual_seed(2)
    sd = official_state_dict(D=48, depth=2, p=2, C=4, num_classes=6, grid=3, learn_sigma=False, mlp_ratio=2.0)
    path = tmp_path / "odd.pt"
    torch.save(sd, path)
    model = vitkit.from_pretrained(path, num_heads=3)  # heads are not in the weights: an override gives them
    c = model.config
    assert (c.hidden_size, c.depth, c.input_size, c.learn_sigma, c.mlp_ratio, c.num_classes, c.num_heads) == (
        48, 2, 6, False, 2.0, 6, 3)
    assert (c.latent_scale, c.vae) == (0.18215, "stabilityai/sd-vae-ft-mse")  # 4 channels: SD-VAE latents
    x, t, y = _inputs(4, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, y), reference_forward(sd, x, t, y, heads=3), atol=ATOL, rtol=0)


def test_train_py_checkpoint_prefers_ema(tmp_path, nano_sd):
    other = {k: torch.zeros_like(v) for k, v in nano_sd.items()}
    ckpt = {"model": {f"module.{k}": v for k, v in other.items()}, "ema": nano_sd, "opt": {"state": {}},
            "args": argparse.Namespace(model="DiT-S/2", global_batch_size=256)}
    path = tmp_path / "0400000.pt"
    torch.save(ckpt, path)
    model = vitkit.from_pretrained(path)
    x, t, y = _inputs(1, 32, 10)
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, y), reference_forward(nano_sd, x, t, y, heads=NANO_HEADS),
                                   atol=ATOL, rtol=0)
    # DDP prefixes are stripped
    torch.save({f"module.{k}": v for k, v in nano_sd.items()}, path)
    assert vitkit.from_pretrained(path).config.depth == 6


def test_input_size_and_classes_from_the_weights(tmp_path, caplog):
    torch.manual_seed(3)
    sd = official_state_dict(**{**NANO, "grid": 4, "num_classes": 7})  # 16x16 inputs, 7 classes
    path = tmp_path / "small.pt"
    torch.save(sd, path)
    with caplog.at_level(logging.INFO, logger="vitkit"):
        model = vitkit.from_pretrained(path, model="dit_nano_patch4_32")
    assert (model.config.input_size, model.config.num_classes) == (16, 7)
    assert "input_size 16 from the weights" in caplog.text
    # overrides: a new label set gets a fresh table, another input size its own fixed position table
    model = vitkit.from_pretrained(path, num_classes=3, input_size=32)
    assert model.y_embedder.embedding_table.weight.shape == (4, 128)
    assert torch.equal(model.pos_embed, sincos_2d_pos_embed((8, 8), 128)[None])
    assert torch.equal(model.blocks[0].attn.qkv.weight, sd["blocks.0.attn.qkv.weight"])


def test_dit_xl2_key_names_and_shapes_on_meta():
    with torch.device("meta"):
        model = vitkit.create_model("DiT-XL/2")
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == official_shapes(D=1152, depth=28, p=2, C=4, num_classes=1000, grid=16)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda sd: sd.pop("blocks.1.attn.proj.bias"), r"missing keys: blocks\.1\.attn\.proj\.bias"),
        (lambda sd: sd.__setitem__("blocks.0.extra.weight", torch.zeros(2)), r"unexpected keys: blocks\.0\.extra"),
        (lambda sd: sd.__setitem__("blocks.0.mlp.fc2.bias", torch.zeros(3)), r"mis-shaped: blocks\.0\.mlp\.fc2"),
        (lambda sd: sd.pop("pos_embed"), "missing pos_embed"),
    ],
)
def test_strict_loading(tmp_path, nano_sd, edit, match):
    sd = dict(nano_sd)
    edit(sd)
    path = tmp_path / "bad.pt"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=match):
        vitkit.from_pretrained(path)


def test_clear_errors_for_the_wrong_model_or_file(tmp_path, nano_sd):
    path = tmp_path / "nano.pt"
    torch.save(nano_sd, path)
    with pytest.raises(CheckpointError, match=r"not the model= architecture: hidden_size 192 \(weights: 128\)"):
        vitkit.from_pretrained(path, model="dit_micro_patch4_32")
    other = tmp_path / "vit.pth"
    torch.save({"patch_embed.proj.weight": torch.zeros(8, 3, 4, 4)}, other)
    with pytest.raises(CheckpointError, match="not an official DiT checkpoint"):
        vitkit.from_pretrained(other, model="DiT-S/2")
    with pytest.raises(CheckpointError, match="does not say which architecture"):  # not DiT, no model=
        vitkit.from_pretrained(other)
    with pytest.raises(CheckpointError, match="unknown model"):
        vitkit.from_pretrained(path, model="DiT-Q/2")
