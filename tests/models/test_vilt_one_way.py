"""One-way fusion (`image_attends_text=False`): the two-stream pass equals the joint pass with image rows masked
from text columns, images shared through `image_index` equal each text run with its own copy, and image tokens
do not depend on the text."""

import pytest
import torch

from vitkit.errors import ConfigError
from vitkit.models.vilt.model import ViLT, ViLTConfig


def tiny(**kw) -> ViLT:
    torch.manual_seed(0)
    cfg = ViLTConfig(task="vqa", num_answers=5, img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4,
                     vocab_size=50, max_text_len=12, image_attends_text=False, **kw)
    return ViLT(cfg).eval()


def inputs(n_img=3, per=(2, 1, 3)):
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(n_img, 3, 32, 32, generator=g)
    index = torch.cat([torch.full((k,), i) for i, k in enumerate(per)])
    ids = torch.randint(1, 50, (len(index), 7), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0  # padding
    mask[3, 4:] = 0
    return pixels, index, ids, mask


def test_shared_images_equal_one_copy_per_text_and_the_masked_joint_pass():
    model = tiny()
    pixels, index, ids, mask = inputs()
    shared = model(ids, mask, pixels, image_index=index)
    copies = model(ids, mask, pixels[index])
    joint = model(ids, mask, pixels[index], output_attentions=True)  # the [B, L, L]-masked joint path
    assert shared.logits.shape == (len(index), 5)
    torch.testing.assert_close(shared.logits, copies.logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(shared.logits, joint.logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(shared.text_feats, joint.text_feats, rtol=0, atol=1e-5)
    assert shared.image_feats.shape[0] == 3 and copies.image_feats.shape[0] == len(index)
    torch.testing.assert_close(shared.image_feats[index], joint.image_feats, rtol=0, atol=1e-5)
    # image rows of the attention maps put no weight on text columns; text rows do
    Lt = ids.shape[1]
    for a in joint.attentions:
        assert a[:, :, Lt:, :Lt].abs().max() == 0
        assert a[:, :, :Lt, :Lt].sum() > 0


def test_image_tokens_ignore_the_text_and_gradients_match():
    model = tiny().train()
    pixels, index, ids, mask = inputs()
    a = model(ids, mask, pixels, image_index=index)
    b = model(torch.randint(1, 50, ids.shape), mask, pixels, image_index=index)
    torch.testing.assert_close(a.image_feats, b.image_feats)
    assert not torch.allclose(a.logits, b.logits)
    a.logits.square().sum().backward()
    g1 = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model(ids, mask, pixels[index]).logits.square().sum().backward()
    for n, p in model.named_parameters():
        if n in g1:
            torch.testing.assert_close(p.grad, g1[n], rtol=1e-4, atol=1e-6, msg=n)


def test_early_fusion_differs_and_refuses_image_index():
    torch.manual_seed(0)
    one_way = tiny()
    early = ViLT(ViLTConfig(**{**one_way.config.__dict__, "image_attends_text": True})).eval()
    early.load_state_dict(one_way.state_dict())  # same weights: only the attention pattern differs
    pixels, index, ids, mask = inputs()
    assert not torch.allclose(early(ids, mask, pixels[index]).logits, one_way(ids, mask, pixels[index]).logits)
    with pytest.raises(ConfigError, match="one-way fusion"):
        early(ids, mask, pixels, image_index=index)
    with pytest.raises(ConfigError, match="image_index"):
        one_way(ids, mask, pixels, image_index=index[:-1])
    with pytest.raises(ConfigError, match=r"\[0, 3\)"):
        one_way(ids, mask, pixels, image_index=index + 1)


def test_weight_init_xavier_for_the_encoder_blocks_only():
    torch.manual_seed(0)
    normal = ViLT(ViLTConfig(embed_dim=64, depth=2, num_heads=4, img_size=32, patch_size=8, vocab_size=50))
    xavier = ViLT(ViLTConfig(embed_dim=64, depth=2, num_heads=4, img_size=32, patch_size=8, vocab_size=50,
                             weight_init="xavier"))
    fc1_n, fc1_x = normal.transformer.blocks[0].mlp.fc1.weight, xavier.transformer.blocks[0].mlp.fc1.weight
    assert abs(fc1_n.std().item() - 0.02) < 0.002
    bound = (6 / (64 + 256)) ** 0.5  # xavier-uniform for a 64 -> 256 layer
    assert fc1_x.abs().max().item() <= bound and abs(fc1_x.std().item() - bound / 3**0.5) < 0.005
    # outside the blocks both keep the original's normal(0.02)
    assert abs(xavier.pooler.dense.weight.std().item() - 0.02) < 0.003
    with pytest.raises(ConfigError, match="weight_init"):
        ViLTConfig(weight_init="kaiming")
