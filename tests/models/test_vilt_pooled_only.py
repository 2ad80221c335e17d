"""ViLT.forward(..., pooled_only=True): the last block computes the text [CLS] row only (early fusion: its
query against every key; one-way fusion: no image row at all). Logits and gradients equal the full pass, in
training (stochastic depth, patch sampling) and inference, with image_index groups and with two images."""

from __future__ import annotations

import pytest
import torch

import vitkit

SMALL = dict(depth=2, embed_dim=32, num_heads=4, img_size=32, patch_size=8, shorter_edge=32, longer_edge=48,
             size_divisor=8, max_text_len=12, vocab_size=100, num_answers=5, max_image_len=-1)


def model_for(name: str, **kw) -> vitkit.models.ViLT:
    torch.manual_seed(0)
    model = vitkit.create_model(name, **{**SMALL, **kw})
    with torch.no_grad():  # unit-gain weights, so a wrong row would show
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(std=m.in_features**-0.5)
    return model


def inputs(B: int, images: int | None = None):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 100, (B, 7), generator=g)
    am = torch.ones(B, 7, dtype=torch.long)
    am[0, 4:] = 0  # text padding
    n = images or B
    px = torch.randn(n, 3, 32, 48, generator=g)
    pm = torch.ones(n, 32, 48, dtype=torch.long)
    pm[-1, :, 40:] = 0  # image padding
    return dict(input_ids=ids, attention_mask=am, pixel_values=px, pixel_mask=pm)


def grads_and_logits(model, kw, pooled_only: bool):
    model.zero_grad()
    torch.manual_seed(7)
    out = model(**kw, pooled_only=pooled_only)
    out.logits.float().square().sum().backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


CASES = [
    ("vilt_b32_vqa", {}, False),  # early fusion
    ("vilt_b32_vqa", {"image_attends_text": False}, False),  # one-way fusion, text b reads image b
    ("vilt_b32_vqa", {"image_attends_text": False}, True),  # one-way fusion, 5 texts over 2 images
    ("vilt_b32_retrieval", {}, False),
]


@pytest.mark.parametrize(("name", "kw", "grouped"), CASES)
@pytest.mark.parametrize("training", [True, False])
def test_pooled_only_equals_the_full_pass(name, kw, grouped, training):
    model = model_for(name, drop_path_rate=0.3, **kw).train(training)
    batch = inputs(5, images=2 if grouped else None)
    if grouped:
        batch["image_index"] = torch.tensor([0, 0, 1, 1, 1])
    full, want = grads_and_logits(model, batch, False)
    part, got = grads_and_logits(model, batch, True)
    torch.testing.assert_close(part.logits, full.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(part.pooler_output, full.pooler_output, atol=1e-5, rtol=1e-5)
    assert want.keys() == got.keys()
    for n in want:
        torch.testing.assert_close(got[n], want[n], atol=1e-5, rtol=1e-4, msg=n)
    assert part.text_feats is None and part.image_feats is None and part.last_hidden_state is None


@pytest.mark.parametrize("one_way", [False, True])
def test_pooled_only_last_block_computes_one_row_per_text(one_way):
    model = model_for("vilt_b32_vqa", image_attends_text=not one_way).eval()
    rows = []
    model.transformer.blocks[-1].mlp.register_forward_hook(lambda m, i, o: rows.append(i[0].shape[:-1].numel()))
    with torch.no_grad():  # eval + no grad: early fusion runs packed ([3, D] rows), one-way as [3, 1, D]
        model(**inputs(3), pooled_only=True)
    assert rows == [3]  # the text [CLS] of each pair, nothing else (no image stream call)


def test_pooled_only_skips_the_mlm_head_and_keeps_the_others():
    model = model_for("vilt_b32", task="itm", extra_heads=("mlm",)).eval()
    with torch.no_grad():
        full = model(**inputs(2))
        part = model(**inputs(2), pooled_only=True)
    assert "mlm" in full.extra_logits and "mlm" not in part.extra_logits
    torch.testing.assert_close(part.logits, full.logits, atol=1e-5, rtol=1e-5)


def test_pooled_only_with_two_images_per_example():
    model = model_for("vilt_b32_nlvr2", num_answers=2).eval()
    batch = inputs(3, images=6)
    batch["pixel_values"] = batch["pixel_values"].view(3, 2, 3, 32, 48)
    batch["pixel_mask"] = batch["pixel_mask"].view(3, 2, 32, 48)
    with torch.no_grad():
        full, part = model(**batch), model(**batch, pooled_only=True)
    torch.testing.assert_close(part.logits, full.logits, atol=1e-5, rtol=1e-5)
    assert part.pooler_output.shape == (3, 2, 32) and part.image_feats is None
