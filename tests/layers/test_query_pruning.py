"""Computing only the first tokens' outputs in a block (the [CLS] row of a classifier's last block): the same
values as the full block's first rows, attention maps, masks, training and gradients included."""

from __future__ import annotations

import pytest
import torch

from vitkit.layers import Attention, Block, Dense
from vitkit.models.vit import VisionTransformer, ViTConfig


def masks(B: int, N: int) -> list[torch.Tensor | None]:
    g = torch.Generator().manual_seed(1)
    keys = torch.rand(B, N, generator=g) > 0.3
    keys[:, 0] = True
    pairs = torch.rand(B, N, N, generator=g) > 0.3
    pairs[..., 0] = True  # every query sees at least one key
    return [None, keys, pairs]


@pytest.mark.parametrize("mask_kind", [0, 1, 2])
@pytest.mark.parametrize("num_queries", [1, 3])
@pytest.mark.parametrize("qkv_bias", [True, False])
def test_attention_first_queries_equal_full_rows(mask_kind, num_queries, qkv_bias):
    torch.manual_seed(0)
    attn = Attention(32, num_heads=4, qkv_bias=qkv_bias).eval()
    x = torch.randn(2, 9, 32)
    mask = masks(2, 9)[mask_kind]
    full, full_probs = attn.forward_with_probs(x, mask)
    part = attn(x, mask, num_queries=num_queries)
    assert part.shape == (2, num_queries, 32)
    torch.testing.assert_close(part, full[:, :num_queries], atol=1e-6, rtol=1e-5)
    part, probs = attn.forward_with_probs(x, mask, num_queries=num_queries)
    assert probs.shape == (2, 4, num_queries, 9)
    torch.testing.assert_close(probs, full_probs[:, :, :num_queries], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(part, full[:, :num_queries], atol=1e-6, rtol=1e-5)


def test_attention_num_queries_at_least_n_is_the_full_pass():
    torch.manual_seed(0)
    attn = Attention(16, num_heads=2).eval()
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(attn(x, num_queries=5), attn(x), atol=0, rtol=0)


def test_block_num_out_in_training_matches_the_full_block_and_its_gradients():
    """Drop-path draws one mask per sample either way, so with the same seed the training outputs and the
    gradients of a loss on the first token are those of the full block."""
    torch.manual_seed(0)
    blk = Block(32, num_heads=4, mlp_hidden=64, drop_path=0.5, init_values=0.1).train()
    x = torch.randn(6, 7, 32, requires_grad=True)
    mask = masks(6, 7)[1]

    torch.manual_seed(3)
    full = blk(x, Dense(mask))
    full[:, 0].square().sum().backward()
    want = {n: p.grad.clone() for n, p in blk.named_parameters()}
    want_x = x.grad.clone()
    blk.zero_grad()
    x.grad = None

    torch.manual_seed(3)
    part = blk(x, Dense(mask, num_queries=1))
    assert part.shape == (6, 1, 32)
    torch.testing.assert_close(part[:, 0], full[:, 0], atol=1e-6, rtol=1e-5)
    part[:, 0].square().sum().backward()
    for n, p in blk.named_parameters():
        torch.testing.assert_close(p.grad, want[n], atol=1e-5, rtol=1e-4, msg=n)
    torch.testing.assert_close(x.grad, want_x, atol=1e-5, rtol=1e-4)


def test_block_num_out_inference_leaves_the_input_alone():
    torch.manual_seed(0)
    blk = Block(16, num_heads=2, mlp_hidden=32).eval()
    x = torch.randn(2, 5, 16)
    before = x.clone()
    with torch.no_grad():
        out = blk(x, Dense(num_queries=2))
        full = blk(x)
    assert torch.equal(x, before)
    torch.testing.assert_close(out, full[:, :2], atol=1e-6, rtol=1e-5)


def tiny_vit(**kw) -> VisionTransformer:
    return VisionTransformer(ViTConfig(img_size=16, patch_size=4, embed_dim=32, depth=3, num_heads=4,
                                       num_classes=5, **kw))


def test_vit_token_pooling_runs_the_last_block_on_cls_only():
    torch.manual_seed(0)
    model = tiny_vit().eval()
    seen = []
    model.blocks[-1].mlp.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    model.blocks[0].mlp.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        logits = model(x)
        reference = model.forward_head(model.forward_features(x))
    assert seen[:2] == [(3, 17, 32), (3, 1, 32)]  # first block: all 1 + 16 tokens; last block: [CLS] only
    torch.testing.assert_close(logits, reference, atol=1e-6, rtol=1e-5)


def test_vit_training_step_equals_the_full_encoder():
    torch.manual_seed(0)
    model = tiny_vit(drop_path_rate=0.3).train()
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    grads = []
    for pruned in (True, False):
        model.zero_grad()
        torch.manual_seed(5)
        logits = model(x) if pruned else model.forward_head(model.forward_features(x))
        torch.nn.functional.cross_entropy(logits, y).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], atol=1e-6, rtol=1e-4, msg=n)


def test_vit_average_pooling_keeps_every_token():
    torch.manual_seed(0)
    model = tiny_vit(global_pool="avg", class_token=False).eval()
    seen = []
    model.blocks[-1].mlp.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), model.forward_head(model.forward_features(x)))
    assert seen[0] == (2, 16, 32)
