"""Pictures: attention rollout math, and that the PNG writers produce real images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import vitkit
from vitkit.classify import attention_maps
from vitkit.viz import attention_rollout, last_layer_cls_attention, plot_confusion_matrix, plot_training_curves


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
