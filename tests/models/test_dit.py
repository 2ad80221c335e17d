"""DiT (Peebles & Xie 2022): adaLN-Zero initialisation, the patch layout, classifier-free guidance, label
dropout, the fixed position table against DiT's own formula, config validation, the registry and the
save_pretrained -> from_pretrained round trip."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

import vitkit
from vitkit.errors import ConfigError, VitkitError
from vitkit.models import DiT, DiTConfig
from vitkit.models.dit import LabelEmbedder, TimestepEmbedder

TINY = {"input_size": 8, "patch_size": 2, "in_channels": 4, "hidden_size": 32, "depth": 2, "num_heads": 4,
        "num_classes": 5}


def tiny(**kw) -> DiT:
    return DiT(DiTConfig(**{**TINY, **kw})).eval()


def randomize_(model: torch.nn.Module) -> torch.nn.Module:
    """Non-zero values everywhere (adaLN and output layers included), so every parameter carries signal."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
    return model


def inputs(model: DiT, B: int = 3, side: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    c = model.config
    side = side or c.input_size
    x = torch.randn(B, c.in_channels, side, side)
    t = torch.randint(0, 1000, (B,))
    y = torch.randint(0, c.num_classes, (B,))
    return x, t, y


# ------------------------------------------------------------------------------------------ adaLN-Zero
def test_fresh_model_outputs_exactly_zero_and_each_block_is_the_identity():
    model = tiny()
    x, t, y = inputs(model)
    out = model(x, t, y)
    assert out.shape == (3, 8, 8, 8)  # learn_sigma: 2 * in_channels
    assert torch.equal(out, torch.zeros_like(out))
    tokens = torch.randn(3, 16, 32)
    c = model.t_embedder(t) + model.y_embedder(y, False)
    assert c.abs().sum() > 0  # the conditioning itself is not zero: the zeros come from adaLN-Zero
    for block in model.blocks:
        assert torch.equal(block(tokens, c=c), tokens)
    # the test can fail: any non-zero modulation breaks both properties
    with torch.no_grad():
        model.blocks[0].adaLN_modulation[1].bias[2 * 32:3 * 32].fill_(0.5)  # gate_msa
    assert not torch.equal(model.blocks[0](tokens, c=c), tokens)
    with torch.no_grad():
        model.final_layer.linear.bias.fill_(0.1)
    assert model(x, t, y).abs().min() > 0


def test_official_initialisation():
    model = tiny(hidden_size=64, num_heads=4)
    D, C, p = 64, 4, 2
    w = model.x_embedder.proj.weight
    bound = math.sqrt(6 / (C * p * p + D))  # xavier-uniform of the [D, C*p*p] view
    assert w.abs().max() <= bound and w.abs().max() > 0.8 * bound
    assert torch.equal(model.x_embedder.proj.bias, torch.zeros(D))
    qkv = model.blocks[0].attn.qkv.weight
    assert qkv.abs().max() <= math.sqrt(6 / (D + 3 * D)) and torch.equal(model.blocks[0].attn.qkv.bias,
                                                                          torch.zeros(3 * D))
    for table in (model.y_embedder.embedding_table.weight, model.t_embedder.mlp[0].weight):
        assert 0.015 < table.std().item() < 0.025
    assert model.pos_embed.requires_grad is False and "pos_embed" not in dict(model.named_parameters())
    assert "pos_embed" in model.state_dict()  # saved, as in official checkpoints


def test_wide_conditioning_init_keeps_adaln_zero():
    model = tiny(hidden_size=64, num_heads=4, cond_init="wide")
    assert 0.9 < model.y_embedder.embedding_table.weight.std().item() < 1.1
    t_w = model.t_embedder.mlp[0].weight
    assert t_w.std().item() > 0.05 and t_w.abs().max() <= math.sqrt(6 / sum(t_w.shape))  # xavier, not N(0, 0.02)
    x, t, y = inputs(model)
    assert torch.equal(model(x, t, y), torch.zeros(3, 8, 8, 8))  # still exactly zero at init
    with pytest.raises(Exception, match="cond_init"):
        tiny(cond_init="big")


# ----------------------------------------------------------------------------------------- patch layout
def test_patchify_unpatchify_round_trip_and_layout():
    model = tiny(in_channels=3)
    x = torch.randn(2, 3, 8, 12)  # non-square: 4x6 patches
    tokens = model.patchify(x)
    assert tokens.shape == (2, 24, 2 * 2 * 3)
    assert torch.equal(model.unpatchify(tokens, (4, 6)), x)
    assert torch.equal(model.patchify(model.unpatchify(tokens, (4, 6))), tokens)
    # element by element: token (i, j), feature (pi * p + pj) * C + c is pixel (c, i*p + pi, j*p + pj)
    p, C = 2, 3
    for i, j, pi, pj, c in [(0, 0, 0, 0, 0), (1, 2, 1, 0, 2), (3, 5, 1, 1, 1), (2, 4, 0, 1, 0)]:
        assert tokens[1, i * 6 + j, (pi * p + pj) * C + c] == x[1, c, i * p + pi, j * p + pj]
    # the patch conv reads the same pixels as patchify, in (channel, row, column) order
    conv = model.x_embedder.proj
    W = conv.weight.permute(0, 2, 3, 1).reshape(conv.weight.shape[0], -1)  # -> (row, column, channel)
    via_tokens = tokens @ W.T + conv.bias
    via_conv = conv(x).flatten(2).transpose(1, 2)
    torch.testing.assert_close(via_tokens, via_conv, atol=1e-5, rtol=1e-5)


def test_unpatchify_square_default_and_bad_shapes():
    model = tiny()
    tokens = torch.randn(2, 16, 2 * 2 * 8)
    assert model.unpatchify(tokens).shape == (2, 8, 8, 8)
    with pytest.raises(VitkitError, match="cannot unpatchify"):
        model.unpatchify(torch.randn(2, 15, 32))


# ------------------------------------------------------------------------------------------ guidance
def _cfg_batch(model: DiT, n: int = 2):
    c = model.config
    x_half = torch.randn(n, c.in_channels, c.input_size, c.input_size)
    x = torch.cat([x_half, torch.randn_like(x_half)])  # the second half is ignored
    t = torch.tensor([10, 500] * n)[: 2 * n]
    y_cond = torch.arange(n) % c.num_classes
    y = torch.cat([y_cond, torch.full_like(y_cond, c.num_classes)])
    cond = model(x_half, t[:n], y_cond)
    uncond = model(x_half, t[n:], torch.full_like(y_cond, c.num_classes))
    return x, t, y, cond, uncond


def test_guidance_scale_one_is_the_conditional_prediction():
    model = randomize_(tiny())
    with torch.no_grad():
        x, t, y, cond, uncond = _cfg_batch(model)
        out = model.forward_with_cfg(x, t, y, 1.0)
    assert out.shape == (4, 8, 8, 8)
    torch.testing.assert_close(out[:2], cond, atol=1e-5, rtol=1e-5)  # every channel
    assert (cond - uncond).abs().max() > 1e-2  # guidance has something to change


def test_guidance_formula_on_every_noise_channel_by_default():
    model = randomize_(tiny())
    s = 4.0
    with torch.no_grad():
        x, t, y, cond, uncond = _cfg_batch(model)
        out = model.forward_with_cfg(x, t, y, s)
    guided = uncond[:, :4] + s * (cond[:, :4] - uncond[:, :4])
    torch.testing.assert_close(out[:2, :4], guided, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(out[2:, :4], guided, atol=1e-4, rtol=1e-5)  # both halves get the guided eps
    torch.testing.assert_close(out[:2, 4:], cond[:, 4:], atol=1e-5, rtol=1e-5)  # variance: unguided
    torch.testing.assert_close(out[2:, 4:], uncond[:, 4:], atol=1e-5, rtol=1e-5)


def test_guidance_channels_3_reproduces_the_official_three_channel_guidance():
    model = randomize_(tiny())
    s = 3.0
    with torch.no_grad():
        x, t, y, cond, uncond = _cfg_batch(model)
        out = model.forward_with_cfg(x, t, y, s, guidance_channels=3)
        default = model.forward_with_cfg(x, t, y, s)
    torch.testing.assert_close(out[:2, :3], uncond[:, :3] + s * (cond[:, :3] - uncond[:, :3]), atol=1e-4,
                               rtol=1e-5)
    torch.testing.assert_close(out[:2, 3:], cond[:, 3:], atol=1e-5, rtol=1e-5)  # channel 3 + variance unguided
    assert (out[:2, 3] - default[:2, 3]).abs().max() > 1e-2
    with pytest.raises(VitkitError, match="guidance_channels"):
        model.forward_with_cfg(x, t, y, s, guidance_channels=5)
    with pytest.raises(VitkitError, match="even batch"):
        model.forward_with_cfg(x[:3], t[:3], y[:3], s)


# ------------------------------------------------------------------------------------ labels, timesteps
def test_label_dropout_rate_and_forced_drops():
    emb = LabelEmbedder(num_classes=10, hidden_size=8, dropout_prob=0.25)
    labels = torch.randint(0, 10, (20000,))
    dropped = emb.token_drop(labels)
    is_null = dropped == 10
    assert abs(is_null.float().mean().item() - 0.25) < 0.015
    assert torch.equal(dropped[~is_null], labels[~is_null])
    force = torch.tensor([1, 0, 1, 0])
    assert emb.token_drop(labels[:4], force).tolist() == [10, labels[1].item(), 10, labels[3].item()]
    # in the model: train mode drops at random, eval never; force_drop_ids acts in both
    model = randomize_(tiny(class_dropout_prob=0.5))
    x, t, y = inputs(model, B=4)
    with torch.no_grad():
        null = torch.full_like(y, 5)
        assert torch.equal(model(x, t, y, force_drop_ids=torch.ones(4, dtype=torch.long)), model(x, t, null))
        assert torch.equal(model(x, t, y), model(x, t, y))
        model.train()
        outs = [model(x, t, y) for _ in range(8)]
    assert any(not torch.equal(o, outs[0]) for o in outs)


def test_no_null_label_without_class_dropout():
    model = tiny(class_dropout_prob=0.0)
    assert model.y_embedder.embedding_table.num_embeddings == 5
    with pytest.raises(VitkitError, match="no null label"):
        model.y_embedder.token_drop(torch.zeros(2, dtype=torch.long))


def test_timestep_embedding_formula():
    t = torch.tensor([0, 1, 250, 999])
    emb = TimestepEmbedder.timestep_embedding(t, 256)
    i = torch.arange(128, dtype=torch.float64)
    args = t[:, None].double() * torch.exp(-math.log(10000) * i / 128)[None]
    torch.testing.assert_close(emb.double(), torch.cat([args.cos(), args.sin()], 1), atol=1e-4, rtol=0)
    assert torch.equal(emb[0], torch.cat([torch.ones(128), torch.zeros(128)]))
    # float timesteps are accepted by the model
    model = tiny()
    x, _, y = inputs(model)
    assert model(x, torch.tensor([0.5, 10.0, 999.0]), y).shape == (3, 8, 8, 8)


def _dit_pos_embed_numpy(dim: int, grid: int) -> np.ndarray:
    """DiT's get_2d_sincos_pos_embed (after MAE), written out: the first half of the channels encodes
    meshgrid(w, h)[0] (the column), [sin | cos] over dim/4 frequencies; the second half the row."""
    gh, gw = np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32)
    g = np.stack(np.meshgrid(gw, gh), axis=0).reshape(2, 1, grid, grid)

    def one(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    return np.concatenate([one(dim // 2, g[0]), one(dim // 2, g[1])], axis=1)


def test_position_table_is_dits_and_other_sizes_get_their_own():
    model = tiny(input_size=12, patch_size=2, hidden_size=48, num_heads=4)
    ref = torch.from_numpy(_dit_pos_embed_numpy(48, 6)).float()[None]
    assert torch.equal(model.pos_embed, ref)
    x, t, y = inputs(model, side=16)
    randomize_(model)
    with torch.no_grad():
        assert model(x, t, y).shape == (3, 8, 16, 16)
    with pytest.raises(VitkitError, match="multiple of the 2x2 patch"):
        model(torch.randn(1, 4, 9, 9), t[:1], y[:1])
    with pytest.raises(VitkitError, match="channels"):
        model(torch.randn(1, 3, 12, 12), t[:1], y[:1])


# ------------------------------------------------------------------------------------------------ config
@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"hidden_size": 30}, "divisible by num_heads"),
        ({"input_size": 9}, "multiple of patch_size"),
        ({"num_heads": 3, "hidden_size": 30}, "divisible by 4"),
        ({"mean": (0.1, 0.2)}, "mean has 2 values"),
        ({"std": (0.5, 0.0, 0.5, 0.5)}, "std must be positive"),
        ({"labels": ("a", "b")}, "2 labels"),
        ({"vae": "stabilityai/sd-vae-ft-mse"}, "latent_scale"),
        ({"class_dropout_prob": 1.0}, "class_dropout_prob"),
        ({"depth": -1}, "depth"),
    ],
)
def test_config_validation(changes, match):
    with pytest.raises(ConfigError, match=match):
        DiTConfig(**{**TINY, **changes})


def test_config_mean_std_broadcast_and_properties():
    cfg = DiTConfig(**TINY)
    assert cfg.mean == (0.5,) * 4 and cfg.std == (0.5,) * 4
    one = dataclasses.replace(cfg, in_channels=1)  # a uniform default follows the channel count
    assert one.mean == (0.5,) and one.out_channels == 2
    assert DiTConfig(**{**TINY, "learn_sigma": False}).out_channels == 4
    assert (cfg.img_size, cfg.embed_dim, cfg.grid_size) == (8, 32, (4, 4))


# ------------------------------------------------------------------------------------------- registry
PAPER_PARAMS = {"XL": 675e6, "L": 458e6, "B": 130e6, "S": 33e6}  # Peebles & Xie 2022, Table 1


def test_registered_names_and_sizes():
    names = vitkit.list_models("DiT*")
    assert names == sorted(f"DiT-{s}/{p}" for s in ("XL", "L", "B", "S") for p in (2, 4, 8))
    assert set(vitkit.list_models("dit_*")) == {"dit_nano_patch4_32", "dit_micro_patch4_32"}
    for name in names:
        with torch.device("meta"):  # no memory, no init
            model = vitkit.create_model(name)
        c = model.config
        assert isinstance(model, DiT) and c.patch_size == int(name[-1])
        assert (c.input_size, c.in_channels, c.num_classes, c.learn_sigma, c.latent_scale) == (32, 4, 1000, True,
                                                                                               0.18215)
        assert model.num_params == pytest.approx(PAPER_PARAMS[name[4:-2]], rel=0.01)
    xl = vitkit.get_config("DiT-XL/2")
    assert (xl.hidden_size, xl.depth, xl.num_heads) == (1152, 28, 16)
    nano = vitkit.create_model("dit_nano_patch4_32")
    assert (nano.config.in_channels, nano.config.num_classes, nano.out_channels) == (1, 10, 2)
    x = torch.randn(2, 1, 32, 32)
    assert nano(x, torch.tensor([1, 2]), torch.tensor([3, 4])).shape == (2, 2, 32, 32)


def test_cli_lists_dit_models(capsys):
    from vitkit.cli import main

    assert main(["models", "DiT-S*"]) == 0
    out = capsys.readouterr().out
    assert "DiT-S/2" in out and "32.9M" in out


# -------------------------------------------------------------------------------------- save / load
def test_save_pretrained_round_trip(tmp_path):
    model = randomize_(tiny(labels=tuple("abcde"), mean=(0.2, 0.3, 0.4, 0.5), std=(0.25,)))
    x, t, y = inputs(model)
    model.save_pretrained(tmp_path / "dit")
    loaded = vitkit.from_pretrained(tmp_path / "dit")
    assert isinstance(loaded, DiT) and loaded.config == model.config and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(x, t, y), model(x, t, y))
