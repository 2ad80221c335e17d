"""ViLT's inference forward (eval mode, gradients off): packed over the real tokens, the last block on the text
[CLS] first, text_feats / image_feats computed when first read (zeros at padding). Compared with the padded
forward that runs with gradients on, which computes every position as the original does."""

from __future__ import annotations

import pytest
import torch

import vitkit
from vitkit.models.vilt.output import Deferred, ViLTOutput

SMALL = dict(depth=2, embed_dim=32, num_heads=4, img_size=32, patch_size=8, shorter_edge=32, longer_edge=48,
             size_divisor=8, max_text_len=12, vocab_size=100, num_answers=5, max_image_len=-1)
ATOL = 1e-5


def model_for(name: str, **kw) -> vitkit.models.ViLT:
    torch.manual_seed(0)
    model = vitkit.create_model(name, **{**SMALL, **kw}).eval()
    with torch.no_grad():  # unit-gain weights, so a wrong row would show
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(std=m.in_features**-0.5)
    return model


def inputs(B: int = 3, images: int = 1):
    """Mixed text lengths (7, 4, 2 tokens, ...) and image sizes (the last image padded on the right and bottom)."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 100, (B, 7), generator=g)
    am = torch.ones(B, 7, dtype=torch.long)
    for b in range(1, B):
        am[b, max(1, 7 - 3 * b):] = 0
    lead = (B, images) if images > 1 else (B,)
    px = torch.randn(*lead, 3, 32, 48, generator=g)
    pm = torch.ones(*lead, 32, 48, dtype=torch.long)
    pm[-1, ..., 24:, :] = 0
    pm[-1, ..., :, 40:] = 0
    return dict(input_ids=ids, attention_mask=am, pixel_values=px, pixel_mask=pm)


def last_block_rows(model) -> list[int]:
    rows: list[int] = []
    model.transformer.blocks[-1].mlp.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[:-1].numel()))
    return rows


@pytest.mark.parametrize("name", ["vilt_b32", "vilt_b32_vqa", "vilt_b32_retrieval", "vilt_b32_nlvr2"])
def test_inference_forward_equals_the_padded_forward_at_real_positions(name):
    model = model_for(name, **({"num_answers": 2} if name.endswith("nlvr2") else {}))
    kw = inputs(3, images=model.config.num_images)
    with torch.enable_grad():
        want = model(**kw)
    with torch.no_grad():
        got = model(**kw)
    torch.testing.assert_close(got.pooled, want.pooled, atol=ATOL, rtol=ATOL)
    if want.logits is not None:
        torch.testing.assert_close(got.logits, want.logits, atol=ATOL, rtol=ATOL)
    for k, v in want.extra_logits.items():
        if k == "mlm":
            continue
        torch.testing.assert_close(got.extra_logits[k], v, atol=ATOL, rtol=ATOL)
    for feats, masks in (("text_feats", "text_masks"), ("image_feats", "image_masks")):
        real = getattr(want, masks)
        assert not real.all()  # there is padding on both sides
        g, w = getattr(got, feats), getattr(want, feats)
        assert g.shape == w.shape
        torch.testing.assert_close(g[real], w[real], atol=ATOL, rtol=ATOL)
        assert not g[~real].any()  # padding positions: zeros


def test_mlm_logits_equal_at_real_positions():
    model = model_for("vilt_b32")  # ITM + MLM
    kw = inputs(3)
    real = kw["attention_mask"].bool()
    with torch.enable_grad():
        want = model(**kw).extra_logits["mlm"]
    with torch.no_grad():
        got = model(**kw).extra_logits["mlm"]
    torch.testing.assert_close(got[real], want[real], atol=ATOL, rtol=ATOL)


def test_features_are_computed_once_when_first_read():
    model = model_for("vilt_b32_vqa")
    rows = last_block_rows(model)
    kw = inputs(3)
    n_real = int(kw["attention_mask"].sum()) + 3 * (1 + 4 * 6) - 9  # text + image [CLS] + patches - 9 padded
    with torch.inference_mode():
        out = model(**kw)
    assert rows == [3]  # the forward: the last block on the 3 text [CLS] rows only
    assert isinstance(vars(out)["_deferred_text_feats"], Deferred)
    text = out.text_feats  # read outside inference mode: computed now, as an inference tensor like the rest
    assert rows == [3, n_real] and text.is_inference() and text.shape == (3, 7, 32)
    image = out.image_feats
    assert rows == [3, n_real] and image.shape == (3, 1 + 4 * 6, 32)  # computed with text_feats, not again
    assert out.text_feats is text


def test_reading_features_after_the_model_changed_is_refused():
    model = model_for("vilt_b32_vqa")
    with torch.no_grad():
        out = model(**inputs(2))
        model.transformer.norm.weight.mul_(2)
    with pytest.raises(RuntimeError, match="changed since its forward"):
        _ = out.text_feats
    with torch.no_grad():
        out = model(**inputs(2))
    model.train()
    with pytest.raises(RuntimeError, match="changed since its forward"):
        _ = out.image_feats
    model.eval()
    with torch.no_grad():
        out = model(**inputs(2))
    torch.testing.assert_close(out.pooled, out.pooled)
    assert out.text_feats.shape == (2, 7, 32)  # read before any change: fine


def test_gradients_on_or_training_take_the_padded_path():
    model = model_for("vilt_b32_vqa")
    rows = last_block_rows(model)
    kw = inputs(2)
    out = model(**kw)  # eval, gradients on (e.g. saliency): every position computed, padding included
    assert rows == [2 * (7 + 1 + 24)] and out.text_feats[~out.text_masks].abs().sum() > 0
    out.logits.sum().backward()
    assert model.pooler.dense.weight.grad is not None


def test_a_masked_text_cls_falls_back_to_the_padded_path():
    model = model_for("vilt_b32_vqa")
    kw = inputs(2)
    kw["attention_mask"][1, 0] = 0  # the pooler reads position 0 whatever the mask says
    with torch.enable_grad():
        want = model(**kw)
    with torch.no_grad():
        got = model(**kw)
    torch.testing.assert_close(got.logits, want.logits, atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(got.text_feats, want.text_feats, atol=ATOL, rtol=ATOL)


def test_map_field_keeps_a_deferred_value_deferred():
    calls = []
    out = ViLTOutput(logits=None, pooled=torch.zeros(2, 4), text_feats=Deferred(lambda: calls.append(1) or
                     torch.ones(2, 3, 4)), image_feats=torch.zeros(2, 5, 4), text_masks=torch.ones(2, 3),
                     image_masks=torch.ones(2, 5), patch_index=torch.zeros(2, 4, 2))
    out.map_field("text_feats", lambda t: t.reshape(1, 2, 3, 4))
    out.map_field("image_feats", lambda t: t.reshape(1, 2, 5, 4))
    assert calls == [] and out.image_feats.shape == (1, 2, 5, 4)
    assert out.text_feats.shape == (1, 2, 3, 4) and calls == [1]


def test_inference_embeds_the_valid_patches_only(monkeypatch):
    from vitkit.layers import PatchEmbed

    calls = []
    original = PatchEmbed.forward_selected
    monkeypatch.setattr(PatchEmbed, "forward_selected", lambda self, x, keep: calls.append(keep) or
                        original(self, x, keep))
    model = model_for("vilt_b32_vqa")
    kw = inputs(2)
    with torch.enable_grad():
        want = model(**kw)
    assert calls == []  # the padded path embeds every patch, as the original
    with torch.no_grad():
        got = model(**kw)
    assert len(calls) == 1 and not calls[0].all()  # padding patches skipped
    torch.testing.assert_close(got.logits, want.logits, atol=ATOL, rtol=ATOL)
    real = want.image_masks
    torch.testing.assert_close(got.image_feats[real], want.image_feats[real], atol=ATOL, rtol=ATOL)
