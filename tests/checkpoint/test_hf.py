"""Hugging Face transformers ViT directories load into vitkit with the same outputs.

Reference models are built randomly initialised (every parameter perturbed, so a swapped LayerNorm or a
transposed projection shows) and written with transformers' own `save_pretrained`; nothing is downloaded.
"""

from __future__ import annotations

import json

import pytest
import torch

import vitkit
from vitkit import CheckpointError
from vitkit.checkpoint.converters.hf import convert_hf_vit

transformers = pytest.importorskip("transformers")
from safetensors.torch import load_file, save_file  # noqa: E402

SMALL = {"hidden_size": 192, "num_hidden_layers": 2, "num_attention_heads": 3, "intermediate_size": 768,
         "image_size": 64, "patch_size": 16}
TINY = {"hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 128,
        "image_size": 32, "patch_size": 16}
LABELS = ("cat", "dog", "fox", "owl", "yak")


def _hf_model(cls=None, *, add_pooling_layer: bool | None = None, seed: int = 0, **config):
    """A transformers ViT with every parameter moved off its init, in eval mode."""
    cls = cls or transformers.ViTForImageClassification
    torch.manual_seed(seed)
    cfg = transformers.ViTConfig(**{**SMALL, **config})
    model = cls(cfg) if add_pooling_layer is None else cls(cfg, add_pooling_layer=add_pooling_layer)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def _classifier(**config):
    id2label = {i: name for i, name in enumerate(LABELS)}
    return _hf_model(num_labels=len(LABELS), id2label=id2label, label2id={v: k for k, v in id2label.items()},
                     **config)


def _pixels(model, n: int = 2) -> torch.Tensor:
    size = model.config.image_size
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(7))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def _logits_diff(hf_model, directory) -> float:
    net = vitkit.from_pretrained(directory)
    x = _pixels(hf_model)
    with torch.no_grad():
        return _max_diff(hf_model(x).logits, net(x))


def _edit_config(directory, **changes) -> None:
    path = directory / "config.json"
    meta = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    path.write_text(json.dumps(meta))


# ------------------------------------------------------------------------------------------ classifiers
@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin", "sharded"])
def test_image_classifier_matches_hf(tmp_path, weights):
    size = 224 if weights == "model.safetensors" else 64  # one run at the standard size is enough
    hf = _classifier(image_size=size)
    hf.save_pretrained(tmp_path, **({"max_shard_size": "1MB"} if weights == "sharded" else {}))
    if weights == "pytorch_model.bin":  # the legacy layout: same keys, a pickle of plain tensors
        torch.save(load_file(tmp_path / "model.safetensors"), tmp_path / "pytorch_model.bin")
        (tmp_path / "model.safetensors").unlink()
    if weights == "sharded":
        assert (tmp_path / "model.safetensors.index.json").is_file()
    net = vitkit.from_pretrained(tmp_path)
    x = _pixels(hf)
    with torch.no_grad():
        assert _max_diff(hf(x).logits, net(x)) <= 1e-4
        assert _max_diff(hf.vit(x).last_hidden_state, net.forward_features(x)) <= 1e-4
    c = net.config
    assert (c.num_classes, c.embed_dim, c.depth, c.num_heads, c.img_size) == (5, 192, 2, 3, size)
    assert c.labels == LABELS
    assert c.norm_eps == 1e-12 and c.representation_size is None and not net.training


def test_labels_are_ordered_by_id(tmp_path):
    id2label = {3: "d", 0: "a", 4: "e", 1: "b", 2: "c"}
    _hf_model(num_labels=5, id2label=id2label, **TINY).save_pretrained(tmp_path)
    assert vitkit.from_pretrained(tmp_path).config.labels == ("a", "b", "c", "d", "e")


def test_vit_base_shape_matches_hf(tmp_path):
    hf = _classifier(hidden_size=768, num_attention_heads=12, intermediate_size=3072, num_hidden_layers=1,
                     image_size=224)
    hf.save_pretrained(tmp_path)
    assert _logits_diff(hf, tmp_path) <= 1e-4


def test_transformers5_in_memory_names(tmp_path):
    """A state dict saved straight from a transformers 5 model (`layers.i.attention.q_proj`, ...)."""
    hf = _classifier()
    hf.save_pretrained(tmp_path)
    assert any(".layers.0.attention.q_proj." in k for k in hf.state_dict())
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, tmp_path / "model.safetensors")
    assert _logits_diff(hf, tmp_path) <= 1e-4


# ------------------------------------------------------------------------------------------- ViTModel
def test_vit_model_pooler_becomes_pre_logits(tmp_path):
    hf = _hf_model(transformers.ViTModel)
    assert hf.pooler is not None
    hf.save_pretrained(tmp_path)
    net = vitkit.from_pretrained(tmp_path)
    assert net.config.num_classes == 0 and net.config.representation_size == 192 and net.config.labels is None
    x = _pixels(hf)
    with torch.no_grad():
        out = hf(x)
        assert _max_diff(out.pooler_output, net(x)) <= 1e-4
        assert _max_diff(out.last_hidden_state, net.forward_features(x)) <= 1e-4


def test_vit_model_without_pooler(tmp_path):
    hf = _hf_model(transformers.ViTModel, add_pooling_layer=False)
    hf.save_pretrained(tmp_path)
    net = vitkit.from_pretrained(tmp_path)
    assert net.config.num_classes == 0 and net.config.representation_size is None
    x = _pixels(hf)
    with torch.no_grad():
        assert _max_diff(hf(x).last_hidden_state[:, 0], net(x)) <= 1e-4


# -------------------------------------------------------------------------------------- config fields
@pytest.mark.parametrize(
    ("hidden_act", "vitkit_act"),
    [("gelu_new", "gelu_tanh"), ("gelu_pytorch_tanh", "gelu_tanh"), ("gelu_fast", "gelu_tanh"),
     ("gelu_python", "gelu"), ("quick_gelu", "quick_gelu"), ("relu", "relu"), ("silu", "silu")],
)
def test_hidden_act_variants(tmp_path, hidden_act, vitkit_act):
    hf = _classifier(hidden_act=hidden_act, **TINY)
    hf.save_pretrained(tmp_path)
    assert vitkit.from_pretrained(tmp_path).config.act == vitkit_act
    assert _logits_diff(hf, tmp_path) <= 1e-4


def test_unknown_hidden_act_is_refused(tmp_path):
    _classifier(**TINY).save_pretrained(tmp_path)
    _edit_config(tmp_path, hidden_act="mish")
    with pytest.raises(CheckpointError, match="hidden_act 'mish'"):
        vitkit.from_pretrained(tmp_path)


def test_layer_norm_eps_is_honoured(tmp_path):
    hf = _classifier(**TINY)  # transformers' default: 1e-12, not vitkit's 1e-6
    hf.save_pretrained(tmp_path)
    net = vitkit.from_pretrained(tmp_path)
    assert net.norm.eps == 1e-12 and net.blocks[0].norm1.eps == 1e-12 and net.blocks[0].norm2.eps == 1e-12
    _edit_config(tmp_path, layer_norm_eps=None)  # a config.json that leaves it out means HF's default
    assert vitkit.from_pretrained(tmp_path).config.norm_eps == 1e-12


def test_large_layer_norm_eps_matches_hf(tmp_path):
    hf = _classifier(layer_norm_eps=0.5, **TINY)  # large enough that a wrong eps shows in the logits
    hf.save_pretrained(tmp_path)
    assert vitkit.from_pretrained(tmp_path).config.norm_eps == 0.5
    assert _logits_diff(hf, tmp_path) <= 1e-4


def test_qkv_bias_false(tmp_path):
    hf = _classifier(qkv_bias=False)
    hf.save_pretrained(tmp_path)
    net = vitkit.from_pretrained(tmp_path)
    assert net.config.qkv_bias is False and net.blocks[0].attn.qkv.bias is None
    assert _logits_diff(hf, tmp_path) <= 1e-4


def test_dropout_probabilities_map(tmp_path):
    hf = _classifier(hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.2, **TINY)
    hf.save_pretrained(tmp_path)
    c = vitkit.from_pretrained(tmp_path).config
    assert (c.pos_drop_rate, c.proj_drop_rate, c.attn_drop_rate, c.drop_rate) == (0.1, 0.1, 0.2, 0.0)
    assert _logits_diff(hf, tmp_path) <= 1e-4  # eval mode: no dropout on either side


def test_non_square_image_size(tmp_path):
    hf = _classifier(image_size=[32, 48], **{k: v for k, v in TINY.items() if k != "image_size"})
    hf.save_pretrained(tmp_path)
    net = vitkit.from_pretrained(tmp_path)
    assert net.config.img_size == (32, 48)
    x = torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert _max_diff(hf(x).logits, net(x)) <= 1e-4


# -------------------------------------------------------------------------------------- preprocessing
def test_preprocessor_config_is_read(tmp_path):
    _classifier(**TINY).save_pretrained(tmp_path)
    transformers.ViTImageProcessor(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
                                   resample=3).save_pretrained(tmp_path)
    c = vitkit.from_pretrained(tmp_path).config
    assert c.mean == (0.485, 0.456, 0.406) and c.std == (0.229, 0.224, 0.225)
    assert c.interpolation == "bicubic" and c.crop_pct == 1.0


def test_preprocessing_defaults_without_a_preprocessor_config(tmp_path):
    _classifier(**TINY).save_pretrained(tmp_path)
    c = vitkit.from_pretrained(tmp_path).config
    assert c.mean == (0.5, 0.5, 0.5) and c.std == (0.5, 0.5, 0.5)  # ViTImageProcessor's defaults
    assert c.interpolation == "bilinear" and c.crop_pct == 1.0


def test_loaded_model_round_trips_through_save_pretrained(tmp_path):
    hf = _classifier(**TINY)
    hf.save_pretrained(tmp_path / "hf")
    net = vitkit.from_pretrained(tmp_path / "hf")
    net.save_pretrained(tmp_path / "vitkit")
    again = vitkit.from_pretrained(tmp_path / "vitkit")
    x = _pixels(hf)
    with torch.no_grad():
        assert torch.equal(net(x), again(x))
    assert again.config == net.config


# ---------------------------------------------------------------------------------------------- errors
def test_other_model_types_name_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "deit"}))
    with pytest.raises(CheckpointError, match=r"'deit' is not supported; supported model types: 'vit', 'vilt'"):
        vitkit.from_pretrained(tmp_path)


def test_masked_image_modeling_is_refused(tmp_path):
    _hf_model(transformers.ViTForMaskedImageModeling, **TINY).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="ViTForMaskedImageModeling"):
        vitkit.from_pretrained(tmp_path)


def test_directory_without_weights(tmp_path):
    _classifier(**TINY).save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="holds no PyTorch weights"):
        vitkit.from_pretrained(tmp_path)


def test_config_depth_must_match_the_weights(tmp_path):
    _classifier(**TINY).save_pretrained(tmp_path)
    _edit_config(tmp_path, num_hidden_layers=3)
    with pytest.raises(CheckpointError, match="num_hidden_layers=3; weights hold 1"):
        vitkit.from_pretrained(tmp_path)


def test_missing_and_unexpected_keys_are_named():
    # transformers 5's in-memory names back to the Hub's, as save_pretrained writes them
    hub_names = [("vit.layers", "vit.encoder.layer"), (".attention.q_proj", ".attention.attention.query"),
                 (".attention.k_proj", ".attention.attention.key"),
                 (".attention.v_proj", ".attention.attention.value"),
                 (".attention.o_proj", ".attention.output.dense"),
                 (".mlp.fc1", ".intermediate.dense"), (".mlp.fc2", ".output.dense")]
    sd = {}
    for key, value in _classifier(**TINY).state_dict().items():
        for old, new in hub_names:
            key = key.replace(old, new)
        sd[key] = value
    assert len(convert_hf_vit(sd)) == len(sd) - 4  # q, k, v weights and biases fused into two
    broken = {k: v for k, v in sd.items() if "layernorm_after.bias" not in k}
    broken["vit.encoder.layer.0.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"missing keys: vit\.encoder\.layer\.0\.layernorm_after\.bias.*"
                                              r"unexpected keys: vit\.encoder\.layer\.0\.extra\.weight"):
        convert_hf_vit(broken)
