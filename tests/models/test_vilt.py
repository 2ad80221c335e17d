"""ViLT (vitkit.models.vilt): every head forward and backward, deterministic sync-free eval, per-image position
grids (batched grid_sample == the original's per-image interpolate), training-time patch sampling, NLVR2
batching, save/load round trips, head adaptation on load, init_from a ViT, and config validation."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

import vitkit
from vitkit.errors import CheckpointError, ConfigError
from vitkit.layers import resample_pos_embed, sincos_2d_pos_embed
from vitkit.models import ViLT, ViLTConfig, VisionTransformer, ViTConfig

SMALL = dict(embed_dim=32, depth=2, num_heads=4, vocab_size=50, max_text_len=12, img_size=128, patch_size=32)


def small(name: str = "vilt_b32_vqa", **overrides) -> ViLT:
    return vitkit.create_model(name, **{**SMALL, **overrides})


def batch(B: int = 2, n_images: int = 1, H: int = 160, W: int = 192):
    """Two texts of different lengths and images of different valid sizes, padded (as a collate would)."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 50, (B, 9), generator=g)
    am = torch.ones(B, 9, dtype=torch.long)
    am[1, 6:] = 0
    shape = (B, n_images) if n_images > 1 else (B,)
    px = torch.randn(*shape, 3, H, W, generator=g)
    pm = torch.ones(*shape, H, W, dtype=torch.long)
    pm[1, ..., 96:, :] = 0  # second example: a 96 x 128 image in the 160 x 192 canvas -> 3 x 4 patches
    pm[1, ..., :, 128:] = 0
    px = px * pm[..., None, :, :]
    return ids, am, px, pm


HEAD_SETS = [
    ("vilt_b32_vqa", {}),
    ("vilt_b32", {}),  # pretraining: ITM + MLM
    ("vilt_b32", {"task": "mlm", "extra_heads": ()}),
    ("vilt_b32_retrieval", {"extra_heads": ("itm",)}),
    ("vilt_b32_nlvr2", {}),
    ("vilt_b32_vqa", {"task": "backbone"}),
]


def test_registered_vilt_models():
    assert {"vilt_b32", "vilt_b32_vqa", "vilt_b32_nlvr2", "vilt_b32_retrieval"} <= set(vitkit.list_models("vilt*"))
    timm = pytest.importorskip("timm")
    with torch.device("meta"):  # full size, without allocating or initialising
        m = vitkit.create_model("vilt_b32_vqa")
        vit_b32 = timm.create_model("vit_base_patch32_384", num_classes=0, weight_init="skip")
    # the encoder is exactly a headless ViT-B/32 at 384 (87.5M parameters)
    assert sum(p.numel() for p in m.transformer.parameters()) == sum(p.numel() for p in vit_b32.parameters())
    assert m.vqa_classifier[3].out_features == 3129 and m.config.grid_size == 12
    assert m.config.norm_eps == 1e-6 and m.config.text_norm_eps == 1e-12


@pytest.mark.parametrize("name,overrides", HEAD_SETS, ids=lambda v: v if isinstance(v, str) else str(v))
def test_every_head_forward_and_backward(name, overrides):
    model = small(name, **overrides).train()
    n = model.config.num_images
    ids, am, px, pm = batch(n_images=n)
    out = model(input_ids=ids, attention_mask=am, pixel_values=px, pixel_mask=pm)
    c, B = model.config, ids.shape[0]
    expect = {"vqa": (B, c.num_answers), "itm": (B, 2), "mlm": (B, 9, c.vocab_size), "retrieval": (B, 1),
              "nlvr2": (B, 2), "backbone": None}[c.task]
    assert (out.logits is None) if expect is None else (tuple(out.logits.shape) == expect)
    assert set(out.extra_logits) == set(c.extra_heads)
    lead = (B, n) if n > 1 else (B,)
    assert out.pooled.shape == (*lead, 32) and out.text_feats.shape == (*lead, 9, 32)
    assert out.image_feats.shape == (*lead, 1 + 30, 32) and out.image_masks.shape == (*lead, 31)
    assert out.patch_index.shape == (*lead, 30, 2) and out.text_masks.dtype == torch.bool
    loss = out.pooled.sum() + out.image_feats.sum() + sum(v.float().sum() for v in out.extra_logits.values())
    if out.logits is not None:
        loss = loss + out.logits.sum()
    loss.backward()
    no_grad = [k for k, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not no_grad, f"parameters without gradient: {no_grad}"


def test_eval_forward_is_deterministic_and_sync_free():
    model = small("vilt_b32", max_image_len=8).eval()  # sampling is a training-only behaviour
    ids, am, px, pm = batch()
    with torch.no_grad():
        a, b = model(ids, am, px, pm), model(ids, am, px, pm)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.extra_logits["mlm"], b.extra_logits["mlm"])
    assert a.image_masks.shape == (2, 31)  # every patch kept, padding masked
    assert a.image_masks[0].all() and a.image_masks[1].sum() == 1 + 3 * 4
    # On the meta device nothing can be read back to the host: a forward that runs there has no .item(),
    # nonzero, unique or multinomial, i.e. no host sync and no data-dependent shape.
    meta = model.to("meta")
    out = meta(*(t.to("meta") for t in (ids, am, px, pm)))
    assert out.logits.shape == (2, 2) and out.image_feats.shape == (2, 31, 32)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_eval_forward_has_no_host_sync_on_cuda():
    model = small("vilt_b32").cuda().eval()
    inputs = [t.cuda() for t in batch()]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call (.item(), nonzero, D2H copy) raises
    try:
        with torch.no_grad():
            out = model(*inputs)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.logits.shape == (2, 2)


def test_padding_does_not_change_an_example():
    """An example's outputs do not depend on the padding its batch-mates force on it."""
    model = small().eval()
    ids, am, px, pm = batch()
    with torch.no_grad():
        full = model(ids, am, px, pm)
        alone = model(ids[1:, :6], am[1:, :6], px[1:, :, :96, :128], pm[1:, :96, :128])
    torch.testing.assert_close(full.logits[1:], alone.logits, rtol=1e-4, atol=1e-5)


def reference_pos_grid(model: ViLT, pixel_mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """The original ViLT's per-image loop: nearest-sampled mask -> (h, w) -> bilinear(align_corners) -> pad."""
    P, D = model.config.grid_size, model.config.embed_dim
    spatial = model.transformer.pos_embed[:, 1:].transpose(1, 2).reshape(1, D, P, P)
    mask = F.interpolate(pixel_mask[:, None].float(), size=grid).long()
    hs, ws = mask[:, 0].sum(dim=1)[:, 0], mask[:, 0].sum(dim=2)[:, 0]
    out = [
        F.pad(F.interpolate(spatial, size=(int(h), int(w)), mode="bilinear", align_corners=True),
              (0, grid[1] - int(w), 0, grid[0] - int(h)))
        for h, w in zip(hs, ws)
    ]
    return torch.cat(out).flatten(2).transpose(1, 2)  # [B, N, D]


@pytest.mark.parametrize("size", [(160, 192), (384, 384), (96, 416)])
def test_batched_position_grid_equals_per_image_interpolation(size):
    model = small(img_size=384).eval()  # a 12 x 12 learned grid, as ViLT-B/32
    H, W = size
    pm = torch.ones(4, H, W, dtype=torch.long)
    pm[1, H // 2 :, :] = 0
    pm[2, :, W // 3 :] = 0
    pm[3, 40:, :] = 0  # 2 x 2 patches: nearest sampling reads pixel rows / columns 0, 32, 64, ...
    pm[3, :, 33:] = 0
    with torch.no_grad():
        model.transformer.patch_embed.proj.weight.zero_()  # tokens = position embeddings only
        model.transformer.patch_embed.proj.bias.zero_()
        tokens, masks, _ = model.embed_image(torch.randn(4, 3, H, W), pm)
        ref = reference_pos_grid(model, pm, (H // 32, W // 32))
    torch.testing.assert_close(tokens[:, 1:], ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(tokens[:, 0], model.transformer.cls_token[0, 0] + model.transformer.pos_embed[0, 0]
                               .expand(4, -1), rtol=0, atol=0)
    assert masks[3].sum() == 1 + 4


def test_sincos_positions_are_each_patch_own_row_and_column():
    model = small(pos_embed="sincos").eval()
    assert "transformer.pos_embed" not in model.state_dict()  # fixed: recomputed, never stored or trained
    _, _, px, pm = batch()  # image 1: 3 x 4 valid patches of the 5 x 6 grid
    with torch.no_grad():
        model.transformer.patch_embed.proj.weight.zero_()  # tokens = position embeddings only
        model.transformer.patch_embed.proj.bias.zero_()
        tokens, masks, _ = model.embed_image(px, pm)
    grid = sincos_2d_pos_embed((5, 6), 32)  # [30, D], row-major
    torch.testing.assert_close(tokens[0, 1:], grid)
    inside = torch.zeros(5, 6, dtype=torch.bool)
    inside[:3, :4] = True
    torch.testing.assert_close(tokens[1, 1:][inside.flatten()], grid[inside.flatten()])  # same place, same position
    assert tokens[1, 1:][~inside.flatten()].abs().max() == 0 and masks[1].sum() == 1 + 12


@pytest.mark.parametrize("overrides", [{"patch_stem": "conv"}, {"patch_stem": "overlap_conv"},
                                       {"pos_embed": "sincos", "image_embed_norm": True}])
def test_image_embedding_options_train_and_round_trip(overrides, tmp_path):
    model = small(**overrides).train()
    if overrides.get("patch_stem") == "overlap_conv":  # its conv branch's projection starts at zero: as after a step
        torch.nn.init.normal_(model.transformer.patch_embed.conv.proj.weight, std=0.02)
    ids, am, px, pm = batch()
    out = model(input_ids=ids, attention_mask=am, pixel_values=px, pixel_mask=pm)
    assert out.image_feats.shape == (2, 1 + 30, 32)
    out.logits.sum().backward()
    no_grad = [k for k, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not no_grad, f"parameters without gradient: {no_grad}"
    model.eval().save_pretrained(tmp_path)
    loaded = vitkit.from_pretrained(tmp_path)
    assert loaded.config == model.config
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, am, px, pm).logits, model(ids, am, px, pm).logits, rtol=0, atol=0)


def test_max_image_len_sampling_keeps_only_valid_patches():
    L = 8
    model = small(max_image_len=L).train()
    _, _, px, pm = batch()  # image 0: 5 x 6 = 30 valid patches (> L)
    pm[1] = 0
    pm[1, :64, :96] = 1  # image 1: 2 x 3 = 6 valid patches (< L)
    with torch.no_grad():
        tokens, masks, index = model.embed_image(px, pm)
        model.eval()
        all_tokens, all_masks, all_index = model.embed_image(px, pm)
    assert tokens.shape == (2, 1 + L, 32) and masks.shape == (2, 1 + L) and index.shape == (2, L, 2)
    valid = all_masks[:, 1:]  # [B, 30]
    flat = index[..., 0] * 6 + index[..., 1]  # [B, L] position in the 5 x 6 grid
    for b in range(2):
        assert len(set(flat[b].tolist())) == L  # no patch twice
        assert torch.equal(masks[b, 1:], valid[b, flat[b]])  # a kept token is marked valid iff it is
        torch.testing.assert_close(tokens[b, 1:], all_tokens[b, 1:][flat[b]])  # with its own position
    assert masks[0].all()  # enough valid patches: only valid ones are kept
    assert masks[1, 1:].sum() == 6 and set(flat[1][masks[1, 1:]].tolist()) == {0, 1, 2, 6, 7, 8}  # all 6 kept
    model.train()
    draws = {tuple(model.embed_image(px, pm)[2][0].flatten().tolist()) for _ in range(4)}
    assert len(draws) > 1  # random in training
    assert torch.equal(all_index[0], torch.stack(torch.meshgrid(torch.arange(5), torch.arange(6), indexing="ij"),
                                                  -1).reshape(30, 2))


def test_nlvr2_equals_two_single_image_passes():
    model = small("vilt_b32_nlvr2").eval()
    ids, am, px, pm = batch(n_images=2)
    with torch.no_grad():
        out = model(ids, am, px, pm)
        pooled = [model.forward_features(ids, am, px[:, i], pm[:, i], image_token_type_idx=i + 1).pooled
                  for i in range(2)]
        want = model.nlvr2_classifier(torch.cat(pooled, dim=-1))
    torch.testing.assert_close(out.logits, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.pooled[:, 1], pooled[1], rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match=r"\[B, 2, C, H, W\]"):
        model(ids, am, px[:, 0], pm[:, 0])


def test_attentions_on_request():
    model = small().eval()
    ids, am, px, pm = batch()
    with torch.no_grad():
        out = model(ids, am, px, pm, output_attentions=True)
        plain = model(ids, am, px, pm)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (2, 4, 9 + 31, 9 + 31)
    assert out.attentions[0][1, :, :, 6:9].abs().max() == 0  # padded text keys get no attention
    torch.testing.assert_close(out.logits, plain.logits, rtol=1e-4, atol=1e-5)
    assert plain.attentions is None


@pytest.mark.parametrize("name", ["vilt_b32_vqa", "vilt_b32_nlvr2", "vilt_b32"])
def test_save_pretrained_round_trip(name, tmp_path):
    extra = {"labels": tuple("abcde"), "num_answers": 5} if name == "vilt_b32_vqa" else {}
    model = small(name, **extra).eval()
    model.save_pretrained(tmp_path)
    loaded = vitkit.from_pretrained(tmp_path)
    assert isinstance(loaded, ViLT) and loaded.config == model.config and not loaded.training
    ids, am, px, pm = batch(n_images=model.config.num_images)
    with torch.no_grad():
        a, b = model(ids, am, px, pm), loaded(ids, am, px, pm)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.pooled, b.pooled)


def test_changed_heads_on_load_are_adapted(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="vitkit")
    pre = small("vilt_b32").eval()  # ITM + MLM
    pre.save_pretrained(tmp_path)
    vqa = vitkit.from_pretrained(tmp_path, task="vqa", extra_heads=(), num_answers=7)
    assert not hasattr(vqa, "itm_score") and not hasattr(vqa, "mlm_score") and vqa.vqa_classifier[3].out_features == 7
    assert torch.equal(vqa.transformer.blocks[1].attn.qkv.weight, pre.transformer.blocks[1].attn.qkv.weight)
    assert "dropping the checkpoint's mlm head" in caplog.text
    ret = vitkit.from_pretrained(tmp_path, task="retrieval", extra_heads=())
    assert torch.equal(ret.rank_output.weight, pre.itm_score.fc.weight[1:])  # retrieval starts from ITM's "match"
    nlvr2 = vitkit.from_pretrained(tmp_path, task="nlvr2", extra_heads=(), num_images=2, modality_type_vocab_size=3,
                                   num_answers=2)
    types = nlvr2.token_type_embeddings.weight
    assert torch.equal(types[:2], pre.token_type_embeddings.weight) and torch.equal(types[2], types[1])


def test_init_from_a_pretrained_vit(tmp_path):
    vit = VisionTransformer(ViTConfig(img_size=224, patch_size=32, embed_dim=32, depth=2, num_heads=4,
                                      num_classes=10)).eval()
    vit.save_pretrained(tmp_path / "vit")
    for source in (tmp_path / "vit", vit):
        model = vitkit.create_model("vilt_b32", init_from=source, **{**SMALL, "img_size": 384})
        sd, own = vit.state_dict(), model.transformer.state_dict()
        for k in ("patch_embed.proj.weight", "cls_token", "blocks.1.mlp.fc2.weight", "norm.bias"):
            assert torch.equal(own[k], sd[k]), k
        want = resample_pos_embed(sd["pos_embed"], (12, 12), (7, 7), num_prefix=1)  # 224/32 -> 384/32
        assert torch.equal(own["pos_embed"], want)
    with pytest.raises(CheckpointError, match="does not fit"):
        vitkit.create_model("vilt_b32", init_from=vit, **{**SMALL, "depth": 3})
    with pytest.raises(CheckpointError, match="no registered ViT"):  # a bare file needs a known ViT size
        torch.save(vit.state_dict(), tmp_path / "vit.pth")
        vitkit.create_model("vilt_b32", init_from=tmp_path / "vit.pth", **SMALL)
    with pytest.raises(ConfigError, match="init_from"):
        vitkit.create_model("vit_pico_patch2_16", init_from=vit)


@pytest.mark.slow
def test_init_from_a_timm_vit_b32_file(tmp_path):
    timm = pytest.importorskip("timm")
    ref = timm.create_model("vit_base_patch32_384", pretrained=False, weight_init="skip")
    torch.save(ref.state_dict(), tmp_path / "vit_b32.pth")
    model = vitkit.create_model("vilt_b32", init_from=tmp_path / "vit_b32.pth")
    assert torch.equal(model.transformer.blocks[11].attn.qkv.weight, ref.blocks[11].attn.qkv.weight)
    assert torch.equal(model.transformer.pos_embed, ref.pos_embed)


def test_config_validation():
    with pytest.raises(ConfigError, match="valid fields"):
        vitkit.create_model("vilt_b32_vqa", num_classes=10)
    with pytest.raises(ConfigError, match="task must be"):
        ViLTConfig(task="caption")
    with pytest.raises(ConfigError, match="nlvr2"):
        ViLTConfig(task="nlvr2")  # needs num_images=2
    with pytest.raises(ConfigError, match="modality_type_vocab_size"):
        ViLTConfig(task="nlvr2", num_images=2, num_answers=2)
    with pytest.raises(ConfigError, match="labels"):
        ViLTConfig(task="vqa", num_answers=3, labels=("a", "b"))
    with pytest.raises(ConfigError, match="extra_heads"):
        ViLTConfig(task="itm", extra_heads=("itm",))
    with pytest.raises(ConfigError, match="max_image_len"):
        ViLTConfig(max_image_len=0)
    with pytest.raises(ConfigError, match="pos_embed"):
        ViLTConfig(pos_embed="none")
    with pytest.raises(ConfigError, match="patch_stem"):
        ViLTConfig(patch_stem="hybrid")
    model = small()
    _, _, px, pm = batch()
    with pytest.raises(ConfigError, match="max_text_len"):
        model(torch.ones(2, 13, dtype=torch.long), None, px, pm)
