"""timm checkpoints: the key table is the identity (vitkit uses timm's names); wrappers are unwrapped; timm's
hub directory layout (config.json with `architecture`, `model_args`, `pretrained_cfg`) loads as timm would."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from timm.models._hub import save_for_hf

import vitkit
from vitkit.checkpoint.converters.timm import convert_timm_vit
from vitkit.errors import CheckpointError

TINY = "vit_tiny_patch16_224"


def small_timm(**kwargs) -> torch.nn.Module:
    """A two-block timm ViT-Ti with every parameter random (norms and biases included)."""
    model = timm.create_model(TINY, pretrained=False, depth=2, **kwargs).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model


def test_convert_is_the_identity_on_timm_names():
    sd = small_timm().state_dict()
    out = convert_timm_vit(sd)
    assert list(out) == list(sd)
    assert all(out[k] is sd[k] for k in sd)
    assert out is not sd


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "_orig_mod.module.", "module._orig_mod."])
def test_convert_strips_wrapper_prefixes(prefix):
    sd = small_timm().state_dict()
    out = convert_timm_vit({prefix + k: v for k, v in sd.items()})
    assert list(out) == list(sd)


def test_convert_leaves_partial_prefixes_and_inner_names_alone():
    sd = {"module.a": torch.zeros(1), "b.module.c": torch.zeros(1)}
    assert list(convert_timm_vit(sd)) == ["module.a", "b.module.c"]


def test_timm_state_dict_loads_strictly_into_the_registered_model():
    ref = small_timm()
    model = vitkit.create_model(TINY, depth=2).eval()
    model.load_state_dict(convert_timm_vit(ref.state_dict()), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert (model(x) - ref(x)).abs().max() <= 1e-4


@pytest.mark.parametrize("safe", [False, True], ids=["pytorch_model.bin", "model.safetensors"])
@pytest.mark.parametrize(
    "model_args",
    [
        pytest.param({"depth": 2}, id="depth"),
        pytest.param({"depth": 2, "img_size": (96, 128), "global_pool": "avg"}, id="non-square+avg"),
        pytest.param({"depth": 2, "img_size": 384, "num_classes": 10}, id="384+10-way"),
    ],
)
def test_timm_hub_directory_loads_as_timm_builds_it(tmp_path, model_args, safe):
    """`model_args` in timm's config.json change the architecture; vitkit must build the same one (a 384 grid
    must not be quietly resampled to the registered 224)."""
    ref = timm.create_model(TINY, pretrained=False, **model_args).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    save_for_hf(ref, str(tmp_path), model_args=model_args, safe_serialization=safe)
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["architecture"] == TINY and "model_args" in meta

    model = vitkit.from_pretrained(tmp_path)
    assert model.patch_embed.grid_size == tuple(ref.patch_embed.grid_size)
    assert model.config.num_classes == ref.num_classes
    assert model.config.crop_pct == meta["pretrained_cfg"]["crop_pct"]
    x = torch.randn(1, 3, *ref.patch_embed.img_size)
    with torch.no_grad():
        assert (model(x) - ref(x)).abs().max() <= 1e-4


def test_timm_hub_directory_with_unsupported_model_args(tmp_path):
    args = {"depth": 1, "qk_norm": True}  # timm-only feature: refused by name, not silently dropped
    save_for_hf(timm.create_model(TINY, pretrained=False, **args), str(tmp_path), model_args=args)
    with pytest.raises(CheckpointError, match="qk_norm"):
        vitkit.from_pretrained(tmp_path)


def test_timm_hub_directory_without_weights(tmp_path):
    save_for_hf(small_timm(), str(tmp_path))
    (tmp_path / "pytorch_model.bin").unlink()
    with pytest.raises(CheckpointError, match="holds no weights"):
        vitkit.from_pretrained(tmp_path)
