"""Pictures: attention rollout math, and that the PNG writers produce real images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import vitkit
from vitkit.cli import main
from vitkit.data.transforms import DataConfig, EvalTransform
from vitkit.inference.classify import attention_maps
from vitkit.processing.images import load_image
from vitkit.utils.viz import attention_rollout, last_layer_cls_attention, plot_confusion_matrix, plot_training_curves


def _naive_rollout(attns, residual=0.5):
    out = None
    for a in attns:
        m = a.mean(1)[0].numpy()
        m = residual * np.eye(len(m)) + (1 - residual) * m
        m = m / m.sum(-1, keepdims=True)
        out = m if out is None else m @ out
    return out


def test_rollout_matches_a_naive_product():
    torch.manual_seed(0)
    attns = [torch.rand(1, 3, 5, 5).softmax(-1) for _ in range(4)]
    ours = attention_rollout(attns, num_prefix=1)[0].numpy()
    np.testing.assert_allclose(ours, _naive_rollout(attns)[0, 1:], rtol=1e-5)
    # rows of the rollout are distributions: [CLS] row over all tokens sums to 1
    full = _naive_rollout(attns)
    np.testing.assert_allclose(full.sum(-1), 1.0, rtol=1e-6)


def test_rollout_of_identity_attention_stays_on_cls():
    attns = [torch.eye(5)[None, None].repeat(1, 2, 1, 1) for _ in range(3)]
    assert torch.count_nonzero(attention_rollout(attns, num_prefix=1)) == 0
    assert torch.count_nonzero(last_layer_cls_attention(attns, num_prefix=1)) == 0


def test_attention_maps_png_for_a_model(tmp_path):
    model = vitkit.create_model("vit_pico_patch2_16", labels=tuple("abcdefghij"))
    img = tmp_path / "x.png"
    Image.fromarray((np.random.default_rng(0).random((20, 24, 3)) * 255).astype(np.uint8)).save(img)
    out = attention_maps(model, img, tmp_path / "heat.png")
    assert out["rollout"].shape == (8, 8) and out["last_layer"].shape == (8, 8)
    assert out["label"] in "abcdefghij"
    with Image.open(tmp_path / "heat.png") as png:
        assert png.size[0] > 400 and png.size[1] > 200


def test_attention_maps_of_a_mean_pooled_model_follow_every_token(tmp_path, capsys):
    """No [CLS] (the default classification preset): both maps read the mean over all tokens' rows."""
    torch.manual_seed(0)
    model = vitkit.create_model("vit_nano_patch4_32")
    assert model.num_prefix_tokens == 0 and model.config.global_pool == "avg"
    img = tmp_path / "x.png"
    Image.fromarray((np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)).save(img)
    out = attention_maps(model, img, tmp_path / "heat.png")
    cfg = DataConfig.from_model(model)
    t = EvalTransform(cfg)
    pixels = t.to_tensor(t.crop(load_image(img, cfg.mode)))[None]
    with torch.no_grad():
        attns = model.eval().forward_intermediates(pixels, return_attention=True)["attentions"]
    want = attns[-1].mean(1)[0].mean(0).reshape(8, 8).numpy()  # last layer, heads' mean, mean over query rows
    np.testing.assert_allclose(out["last_layer"], want, rtol=1e-5, atol=1e-7)
    assert out["rollout"].shape == (8, 8) and np.isfinite(out["rollout"]).all()
    model.save_pretrained(tmp_path / "m")
    assert main(["attention", "--model", str(tmp_path / "m"), "--image", str(img), "--out",
                 str(tmp_path / "h2.png")]) == 0
    assert "last-layer attention (mean over tokens)" in capsys.readouterr().out


def test_curves_and_confusion_pngs(tmp_path):
    rows = [{"epoch": 1, "step": s, "loss": 2.0 / s, "lr": 1e-3} for s in range(1, 6)]
    rows += [{"epoch": 1, "step": 5, "val_top1": 0.5, "val_loss": 1.0, "ema_val_top1": 0.4}]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    plot_training_curves(tmp_path / "m.jsonl", tmp_path / "curves.png")
    plot_confusion_matrix(np.array([[3, 1], [0, 4]]), ["cat", "dog"], tmp_path / "cm.png")
    for name in ("curves.png", "cm.png"):
        with Image.open(tmp_path / name) as png:
            assert png.size[0] > 200 and np.asarray(png.convert("L")).std() > 0


@pytest.mark.parametrize("bad", ["missing.png"])
def test_attention_cli_bad_image(tmp_path, bad, capsys):
    from vitkit.cli import main

    model_dir = vitkit.create_model("vit_pico_patch2_16").save_pretrained(tmp_path / "m")
    assert main(["attention", "--model", str(model_dir), "--image", str(tmp_path / bad), "--out",
                 str(tmp_path / "o.png")]) == 2
    assert "error:" in capsys.readouterr().err
