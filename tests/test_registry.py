"""Registry: names, patterns, overrides, variant decoding, and that every registered ViT is timm's
architecture of the same name (same parameter names and shapes)."""

from __future__ import annotations

import dataclasses
import importlib.util
import re

import pytest
import timm
import torch

import vitkit
from vitkit.errors import ConfigError
from vitkit.models import VisionTransformer, ViTConfig
from vitkit.registry import VIT_SIZES, decode_variant, get_config, register


def test_list_models_all_and_sorted():
    names = vitkit.list_models()
    assert names == sorted(names)
    assert len(names) == len(set(names))
    for name in ("vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224", "vit_base_patch32_384",
                 "vit_large_patch16_224", "vit_huge_patch14_224", "vit_base_patch16_gap_224"):
        assert name in names
    assert vitkit.list_models("*") == names


@pytest.mark.parametrize(
    ("pattern", "check"),
    [
        ("vit_base*", lambda n: n.startswith("vit_base")),
        ("*_384", lambda n: n.endswith("_384")),
        ("vit_*_patch16_*", lambda n: "_patch16_" in n),
    ],
)
def test_list_models_pattern(pattern, check):
    matched = vitkit.list_models(pattern)
    assert matched
    assert all(check(n) for n in matched)
    assert set(matched) == {n for n in vitkit.list_models() if check(n)}


def test_list_models_no_match_and_case_sensitive():
    assert vitkit.list_models("resnet*") == []
    assert vitkit.list_models("VIT_BASE*") == []


def test_unknown_model_suggests_close_names():
    with pytest.raises(ConfigError, match=r"unknown model 'vit_base_patch16_244'.*did you mean: vit_base_patch16_224"):
        vitkit.create_model("vit_base_patch16_244")
    with pytest.raises(ConfigError, match="list_models"):
        vitkit.get_config("no-such-model")


def test_unknown_override_names_the_valid_fields():
    with pytest.raises(ConfigError) as err:
        vitkit.create_model("vit_tiny_patch16_224", num_class=10)
    msg = str(err.value)
    assert "'num_class'" in msg
    assert "did you mean: num_classes" in msg
    for field in ("num_classes", "img_size", "embed_dim", "depth", "drop_path_rate"):
        assert re.search(rf"\b{field}\b", msg.split("valid fields:")[1])


def test_overrides_apply_and_leave_the_registry_alone():
    before = get_config("vit_tiny_patch16_224")
    model = vitkit.create_model("vit_tiny_patch16_224", num_classes=10, depth=2, img_size=64)
    assert isinstance(model, VisionTransformer)
    assert (model.config.num_classes, model.config.depth, model.config.img_size) == (10, 2, 64)
    assert len(model.blocks) == 2 and model.head.out_features == 10
    assert get_config("vit_tiny_patch16_224") == before
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.depth = 3


def test_register_twice_is_an_error():
    with pytest.raises(ValueError, match="registered twice"):
        register("vit_tiny_patch16_224", ViTConfig(), "duplicate")


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("Ti/16", {"embed_dim": 192, "depth": 12, "num_heads": 3, "patch_size": 16}),
        ("S/32", {"embed_dim": 384, "depth": 12, "num_heads": 6, "patch_size": 32}),
        ("B/16", {"embed_dim": 768, "depth": 12, "num_heads": 12, "patch_size": 16}),
        ("L/14", {"embed_dim": 1024, "depth": 24, "num_heads": 16, "patch_size": 14}),
        ("H/14", {"embed_dim": 1280, "depth": 32, "num_heads": 16, "patch_size": 14}),
    ],
)
def test_decode_variant(variant, expected):
    assert decode_variant(variant) == expected
    # the decoded sizes build a config directly
    assert ViTConfig(**decode_variant(variant)).embed_dim == expected["embed_dim"]


@pytest.mark.parametrize("bad", ["B16", "X/16", "B/x", "", "B/16/2", "b/16"])
def test_decode_variant_rejects_malformed(bad):
    with pytest.raises(ConfigError, match="cannot decode ViT variant"):
        decode_variant(bad)


_PUBLISHED = re.compile(r"vit_(tiny|small|base|large|huge)_patch(\d+)_(\d+)$")
_LETTER = {"tiny": "Ti", "small": "S", "base": "B", "large": "L", "huge": "H"}


@pytest.mark.parametrize("name", [n for n in vitkit.list_models() if _PUBLISHED.match(n)])
def test_published_names_encode_their_config(name):
    size, patch, res = _PUBLISHED.match(name).groups()
    cfg = get_config(name)
    sizes = decode_variant(f"{_LETTER[size]}/{patch}")
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.patch_size) == tuple(sizes.values())
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads) == VIT_SIZES[size]
    assert cfg.img_size == int(res)
    assert cfg.crop_pct == (0.9 if res == "224" else 1.0)


@pytest.mark.parametrize("name", [n for n in vitkit.list_models() if n in timm.list_models()])
def test_same_architecture_as_timm(name):
    """Same parameter names and shapes as timm's model of that name (built on the meta device: no init cost).
    Hybrids compare only where their module exists."""
    cfg = get_config(name)
    if cfg.backbone_layers and importlib.util.find_spec("vitkit.models.hybrid") is None:
        pytest.skip("vitkit.models.hybrid is not written yet")
    with torch.device("meta"):
        theirs = timm.create_model(name, num_classes=cfg.num_classes).state_dict()
        ours = vitkit.create_model(name).state_dict()
    assert sorted(ours) == sorted(theirs)
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}
