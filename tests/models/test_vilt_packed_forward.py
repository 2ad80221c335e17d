"""ViLT's outputs mean one thing: `model(**batch)` gives the same fields and values with gradients on or off
(padding positions included, as transformers), and the padding-free packed path runs only when the caller asks
for the pooled output alone (`pooled_only=True`, eval mode), with the logits of the full pass."""

from __future__ import annotations

import pytest
import torch

import vitkit

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
@pytest.mark.parametrize("grad_off", [torch.no_grad, torch.inference_mode])
def test_outputs_do_not_depend_on_the_autograd_state(name, grad_off):
    model = model_for(name, **({"num_answers": 2} if name.endswith("nlvr2") else {}))
    kw = inputs(3, images=model.config.num_images)
    with torch.enable_grad():
        want = model(**kw)
    with grad_off():
        got = model(**kw)
    for field in ("logits", "pooler_output", "last_hidden_state", "text_feats", "image_feats"):
        w, g = getattr(want, field), getattr(got, field)
        if w is None:
            assert g is None, field
            continue
        assert g.shape == w.shape, field
        torch.testing.assert_close(g, w.detach(), atol=ATOL, rtol=ATOL, msg=field)  # padding positions too
    for k, v in want.extra_logits.items():
        torch.testing.assert_close(got.extra_logits[k], v.detach(), atol=ATOL, rtol=ATOL)
    assert not want.text_masks.all() and not want.image_masks.all()  # there is padding on both sides


def test_transformers_field_names():
    model = model_for("vilt_b32_vqa")
    kw = inputs(2)
    with torch.no_grad():
        out = model(**kw, output_hidden_states=True, output_attentions=True)
    L = 7 + 1 + 4 * 6
    assert out.last_hidden_state.shape == (2, L, 32) and out.pooler_output.shape == (2, 32)
    assert out.pooled is out.pooler_output  # vitkit's earlier name
    torch.testing.assert_close(out.text_feats, out.last_hidden_state[:, :7])
    torch.testing.assert_close(out.image_feats, out.last_hidden_state[:, 7:])
    assert len(out.hidden_states) == 3 and all(h.shape == (2, L, 32) for h in out.hidden_states)  # embeddings + 2
    assert len(out.attentions) == 2 and out.attentions[0].shape == (2, 4, L, L)
    torch.testing.assert_close(model.transformer.norm(out.hidden_states[-1]), out.last_hidden_state)


def test_pooled_only_in_eval_runs_packed_and_gives_the_full_pass_logits():
    model = model_for("vilt_b32_vqa")
    rows = last_block_rows(model)
    kw = inputs(3)
    with torch.no_grad():
        full = model(**kw)
        part = model(**kw, pooled_only=True)
    assert rows == [3 * (7 + 1 + 24), 3]  # full: every position; pooled_only: the 3 text [CLS] rows
    torch.testing.assert_close(part.logits, full.logits, atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(part.pooler_output, full.pooler_output, atol=ATOL, rtol=ATOL)
    assert part.last_hidden_state is None and part.text_feats is None and part.image_feats is None


def test_pooled_only_packs_with_gradients_on_too():
    """The path follows the arguments (pooled_only, eval mode), not the autograd state."""
    model = model_for("vilt_b32_vqa")
    rows = last_block_rows(model)
    kw = inputs(2)
    out = model(**kw, pooled_only=True)
    assert rows == [2]
    out.logits.sum().backward()  # saliency through the packed path
    assert model.pooler.dense.weight.grad is not None
    with torch.no_grad():
        torch.testing.assert_close(out.logits.detach(), model(**kw).logits, atol=ATOL, rtol=ATOL)


def test_a_masked_text_cls_falls_back_to_the_padded_path():
    model = model_for("vilt_b32_vqa")
    rows = last_block_rows(model)
    kw = inputs(2)
    kw["attention_mask"][1, 0] = 0  # the pooler reads position 0 whatever the mask says
    with torch.no_grad():
        want = model(**kw)
        got = model(**kw, pooled_only=True)
    assert rows[-1] == 2  # the padded path's [CLS]-only last block ([2, 1, D])
    torch.testing.assert_close(got.logits, want.logits, atol=ATOL, rtol=ATOL)


def test_pooled_only_embeds_the_valid_patches_only(monkeypatch):
    from vitkit.layers import PatchEmbed

    calls = []
    original = PatchEmbed.forward_selected
    monkeypatch.setattr(PatchEmbed, "forward_selected", lambda self, x, keep: calls.append(keep) or
                        original(self, x, keep))
    model = model_for("vilt_b32_vqa")
    kw = inputs(2)
    with torch.no_grad():
        want = model(**kw)
        assert calls == []  # the full forward embeds every patch, as the original
        got = model(**kw, pooled_only=True)
    assert len(calls) == 1 and not calls[0].all()  # padding patches skipped
    torch.testing.assert_close(got.logits, want.logits, atol=ATOL, rtol=ATOL)


def test_labels_give_the_papers_losses():
    vqa = model_for("vilt_b32_vqa")
    kw = inputs(2)
    scores = torch.tensor([[0.0, 1.0, 0.3, 0.0, 0.0], [0.6, 0.0, 0.0, 0.0, 1.0]])
    out = vqa(**kw, labels=scores)
    want = torch.nn.functional.binary_cross_entropy_with_logits(out.logits, scores) * 5
    torch.testing.assert_close(out.loss, want)
    pre = model_for("vilt_b32")  # ITM task + MLM extra head
    out = pre(**kw, labels=torch.tensor([1, 0]))
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, torch.tensor([1, 0])))
    mlm = model_for("vilt_b32", task="mlm", extra_heads=())
    labels = torch.full((2, 7), -100)
    labels[0, 2], labels[1, 1] = 17, 42
    out = mlm(**kw, labels=labels)
    want = torch.nn.functional.cross_entropy(out.logits[[0, 1], [2, 1]], torch.tensor([17, 42]))
    torch.testing.assert_close(out.loss, want)
    with pytest.raises(vitkit.ConfigError, match="soft answer scores"):
        vqa(**kw, labels=torch.tensor([1, 0]))
    with pytest.raises(vitkit.ConfigError, match="retrieval"):
        model_for("vilt_b32_retrieval")(**kw, labels=torch.tensor([1.0, 0.0]))


def test_grad_checkpointing_gives_the_same_gradients():
    model = model_for("vilt_b32_vqa", image_attends_text=False).train()
    kw = inputs(2)
    grads = []
    for ckpt in (False, True):
        model.set_grad_checkpointing(ckpt)
        model.zero_grad()
        model(**kw).logits.square().sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], atol=1e-6, rtol=1e-5, msg=n)
