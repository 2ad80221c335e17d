"""CLIP: OpenAI / open_clip state dicts and transformers CLIP directories load strictly and give the same image
embeddings, text embeddings and logits (max |diff| <= 1e-4, fp32); save_pretrained round-trips; the towers are
the core's blocks (a causal layout for the text)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

import vitkit
from vitkit.models import CLIP
from vitkit.models.clip import TextTransformer

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import open_clip
    import transformers

ATOL = 1e-4
TINY_VISION = dict(image_size=32, layers=2, width=64, patch_size=8, head_width=16)
TINY_TEXT = dict(context_length=16, vocab_size=300, width=48, heads=3, layers=2)


def randomize_(model: torch.nn.Module) -> torch.nn.Module:
    """Weights of unit gain (and non-trivial norms), so any mismatch in layout would show in the outputs."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("logit_scale"):
                p.fill_(2.3)
            elif p.ndim == 1 or "norm" in name or "ln_" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g) if name.endswith("weight") else
                        0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * p.shape[-1] ** -0.5)
    return model.eval()


def tokens(B: int, L: int, vocab: int, eot: int) -> torch.Tensor:
    """Texts of different lengths: [SOT, words..., EOT, 0 padding] (open_clip's layout)."""
    g = torch.Generator().manual_seed(1)
    ids = torch.zeros(B, L, dtype=torch.long)
    for b in range(B):
        n = 2 + (5 * b) % (L - 3)
        ids[b, 0] = eot - 1
        ids[b, 1:n] = torch.randint(1, eot - 1, (n - 1,), generator=g)
        ids[b, n] = eot
    return ids


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


@pytest.fixture(scope="module")
def tiny_open_clip():
    torch.manual_seed(0)
    model = open_clip.model.CLIP(embed_dim=40, vision_cfg=TINY_VISION, text_cfg=TINY_TEXT, quick_gelu=True)
    return randomize_(model)


def assert_same_as_open_clip(ours: CLIP, ref, images: torch.Tensor, ids: torch.Tensor) -> None:
    with torch.no_grad():
        img, txt = ours.encode_image(images), ours.encode_text(ids)
        want_img, want_txt = ref.encode_image(images), ref.encode_text(ids)
        assert max_diff(img, want_img) <= ATOL
        assert max_diff(txt, want_txt) <= ATOL
        out = ours(pixel_values=images, input_ids=ids)
        ref_img, ref_txt, scale = ref(images, ids)[:3]
        want = scale * ref_img @ ref_txt.t()
        assert max_diff(out.logits_per_image, want) <= ATOL * float(scale)
        assert torch.equal(out.logits_per_text, out.logits_per_image.t())


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".safetensors"])
def test_open_clip_state_dict_loads_with_identical_outputs(tiny_open_clip, tmp_path, suffix):
    path = tmp_path / f"tiny{suffix}"
    sd = {k: v.contiguous() for k, v in tiny_open_clip.state_dict().items()}
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        torch.save(sd, path)
    ours = vitkit.from_pretrained(path)  # sizes from the weights, heads = width / 64 -> passed explicitly below
    assert isinstance(ours, CLIP)
    assert ours.config.vision_width == 64 and ours.config.text_width == 48 and ours.config.context_length == 16
    ours = vitkit.from_pretrained(path, vision_heads=4, text_heads=3)
    images = torch.randn(3, 3, 32, 32)
    ids = tokens(4, 16, 300, 299)
    assert_same_as_open_clip(ours, tiny_open_clip, images, ids)


def test_open_clip_hub_directory_reads_heads_and_activation(tmp_path):
    torch.manual_seed(0)
    ref = randomize_(open_clip.model.CLIP(embed_dim=40, vision_cfg=TINY_VISION, text_cfg=TINY_TEXT, quick_gelu=False))
    torch.save(ref.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    (tmp_path / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": {"embed_dim": 40, "vision_cfg": TINY_VISION, "text_cfg": TINY_TEXT},
        "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "interpolation": "bicubic"}}))
    ours = vitkit.from_pretrained(tmp_path)
    c = ours.config
    assert (c.act, c.vision_heads, c.text_heads, c.mean, c.std) == ("gelu", 4, 3, (0.5,) * 3, (0.25,) * 3)
    assert_same_as_open_clip(ours, ref, torch.randn(2, 3, 32, 32), tokens(3, 16, 300, 299))


def test_open_clip_vit_b32_full_size_parity():
    """The published ViT-B/32 architecture, random weights, through the registered preset's name."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None).eval()
    ours = vitkit.create_model("clip_vit_b32").eval()
    from vitkit.checkpoint.converters.open_clip import convert_open_clip

    ours.load_state_dict(convert_open_clip(ref.state_dict()), strict=True)
    assert_same_as_open_clip(ours, ref, torch.randn(2, 3, 224, 224), tokens(3, 77, 49408, 49407))


def hf_config(**kw) -> transformers.CLIPConfig:
    return transformers.CLIPConfig(
        text_config=dict(hidden_size=48, intermediate_size=192, num_hidden_layers=2, num_attention_heads=3,
                         vocab_size=300, max_position_embeddings=16, eos_token_id=299, bos_token_id=298,
                         pad_token_id=0),
        vision_config=dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8), projection_dim=40, **kw)


@pytest.fixture(scope="module")
def hf_clip_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = randomize_(transformers.CLIPModel(hf_config()))
    d = tmp_path_factory.mktemp("hf_clip")
    model.save_pretrained(d)
    return d, model


def features(out) -> torch.Tensor:
    """get_image_features / get_text_features: a tensor in transformers 4, an output with the projected
    pooler_output in transformers 5."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def test_transformers_clip_model_loads_with_identical_outputs(hf_clip_dir):
    d, ref = hf_clip_dir
    ours = vitkit.from_pretrained(d)
    images, ids = torch.randn(3, 3, 32, 32), tokens(4, 16, 300, 299)
    mask = (torch.arange(16)[None] <= (ids == 299).int().argmax(-1)[:, None]).long()
    with torch.no_grad():
        want = ref(pixel_values=images, input_ids=ids, attention_mask=mask)
        out = ours(pixel_values=images, input_ids=ids)
        assert max_diff(ours.encode_image(images), features(ref.get_image_features(pixel_values=images))) <= ATOL
        assert max_diff(ours.encode_text(ids), features(ref.get_text_features(input_ids=ids, attention_mask=mask))
                        ) <= ATOL
    assert max_diff(out.logits_per_image, want.logits_per_image) <= ATOL * 10
    assert max_diff(out.image_embeds, want.image_embeds) <= ATOL
    assert max_diff(out.text_embeds, want.text_embeds) <= ATOL


def test_transformers_single_towers_load(tmp_path, hf_clip_dir):
    _, ref = hf_clip_dir
    ref.config.vision_config.projection_dim = ref.config.text_config.projection_dim = ref.config.projection_dim
    vision = transformers.CLIPVisionModelWithProjection(ref.config.vision_config)
    vision.vision_model.load_state_dict(ref.vision_model.state_dict())
    vision.visual_projection.load_state_dict(ref.visual_projection.state_dict())
    text = transformers.CLIPTextModelWithProjection(ref.config.text_config)
    text.text_model.load_state_dict(ref.text_model.state_dict())
    text.text_projection.load_state_dict(ref.text_projection.state_dict())
    vision.save_pretrained(tmp_path / "v")
    text.save_pretrained(tmp_path / "t")
    ours_v, ours_t = vitkit.from_pretrained(tmp_path / "v"), vitkit.from_pretrained(tmp_path / "t")
    assert isinstance(ours_v, vitkit.models.VisionTransformer) and isinstance(ours_t, TextTransformer)
    images, ids = torch.randn(2, 3, 32, 32), tokens(3, 16, 300, 299)
    with torch.no_grad():
        assert max_diff(ours_v(images), vision.eval()(pixel_values=images).image_embeds) <= ATOL
        assert max_diff(ours_t.encode_text(ids), text.eval()(input_ids=ids).text_embeds) <= ATOL
    ours_t.save_pretrained(tmp_path / "t2")  # a text tower alone round-trips as itself
    again = vitkit.from_pretrained(tmp_path / "t2")
    assert isinstance(again, TextTransformer)
    with torch.no_grad():
        assert torch.equal(again(ids), ours_t(ids))


def test_save_pretrained_round_trips(tmp_path):
    torch.manual_seed(0)
    model = vitkit.create_model("clip_nano_patch8_64").eval()
    model.save_pretrained(tmp_path / "m")
    again = vitkit.from_pretrained(tmp_path / "m")
    images, ids = torch.randn(2, 3, 64, 64), tokens(3, 32, 49408, 49407)
    with torch.no_grad():
        a, b = model(pixel_values=images, input_ids=ids), again(pixel_values=images, input_ids=ids)
    assert torch.equal(a.logits_per_image, b.logits_per_image)


def test_text_last_block_reads_only_the_end_of_text_rows():
    torch.manual_seed(0)
    model = vitkit.create_model("clip_nano_patch8_64").eval()
    ids = tokens(3, 32, 49408, 49407)
    rows = []
    model.text.blocks[-1].mlp.register_forward_hook(lambda m, i, o: rows.append(tuple(i[0].shape[:-1])))
    with torch.no_grad():
        pooled = model.encode_text(ids)
        feats = model.text.forward_features(ids)
    eot = (ids == 49407).int().argmax(-1)
    assert rows == [(3, 1), (3, 32)]
    torch.testing.assert_close(pooled, model.text.proj(feats[torch.arange(3), eot]), atol=1e-5, rtol=1e-5)


def test_contrastive_loss_and_temperature_clamp():
    torch.manual_seed(0)
    model = vitkit.create_model("clip_nano_patch8_64")
    with torch.no_grad():
        model.logit_scale.fill_(10.0)  # exp(10) > 100: clamped
    out = model(pixel_values=torch.randn(4, 3, 64, 64), input_ids=tokens(4, 32, 49408, 49407), return_loss=True)
    cos = out.image_embeds @ out.text_embeds.t()
    torch.testing.assert_close(out.logits_per_image, 100 * cos)
    labels = torch.arange(4)
    want = (torch.nn.functional.cross_entropy(out.logits_per_image, labels)
            + torch.nn.functional.cross_entropy(out.logits_per_text, labels)) / 2
    torch.testing.assert_close(out.loss, want)
    out.loss.backward()
    assert model.text.token_embedding.weight.grad is not None and model.visual.cls_token.grad is not None


def test_presets_have_the_published_sizes():
    counts = {}
    for name in ("clip_vit_b32", "clip_vit_b16", "clip_vit_l14", "clip_vit_l14_336"):
        with torch.device("meta"):
            counts[name] = round(vitkit.create_model(name).num_params / 1e6, 2)
    assert counts == {"clip_vit_b32": 151.28, "clip_vit_b16": 149.62, "clip_vit_l14": 427.62,
                      "clip_vit_l14_336": 427.94}
    assert vitkit.list_models("clip*") == ["clip_nano_patch8_64", *sorted(counts)]


def test_a_non_clip_file_with_a_clip_name_is_refused(tmp_path):
    path = tmp_path / "w.pth"
    torch.save({"a.weight": torch.zeros(2)}, path)
    with pytest.raises(vitkit.CheckpointError, match="not an OpenAI / open_clip CLIP state dict"):
        vitkit.from_pretrained(path, model="clip_vit_b32")
