"""Word-patch alignment pictures (vitkit.align): the IPOT plan restricted to real word pieces x valid patches, its
marginals, heat maps on a non-square patch grid, word pieces merged into words, padding patches left out, the
PNG, and `vitkit align` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import vitkit
from vitkit.cli import main
from vitkit.errors import ConfigError, VitkitError
from vitkit.inference.align import align, alignment_from_output, plot_alignment, word_patch_alignment
from vitkit.inference.vilt import processor_for
from vitkit.models.vilt import ot

# Tiny random ViLTs: 16-pixel patches, shorter side 64 -> a 50 x 80 image becomes 48 x 96 pixels = 3 x 6 patches.
SMALL = dict(depth=2, embed_dim=32, num_heads=2, img_size=64, patch_size=16, shorter_edge=64, longer_edge=96,
             size_divisor=16, max_text_len=24)
LABELS = ("yes", "no", "two", "red", "cat")
QUESTION = "is the giraffe eating?"  # giraffe -> gi ##raf ##fe


def small(name: str = "vilt_b32_vqa", **overrides) -> vitkit.models.ViLT:
    extra = {"num_answers": len(LABELS), "labels": LABELS} if name == "vilt_b32_vqa" else {}
    model = vitkit.create_model(name, **{**SMALL, **extra, **overrides}).eval()
    with torch.no_grad():  # unit-gain linears: features (and so plans) differ clearly between tokens
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(std=m.in_features**-0.5)
    return model


def image(h: int, w: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def vqa_model():
    torch.manual_seed(0)
    return small()


def test_plan_is_the_wpa_plan_on_real_tokens_and_valid_patches(vqa_model):
    a = word_patch_alignment(vqa_model, image(50, 80), QUESTION)
    T, P = len(a.tokens), 3 * 6
    assert a.tokens == ["is", "the", "gi", "##raf", "##fe", "eating", "?"]
    assert a.grid == (3, 6) and a.plan.shape == (T, P)
    assert a.heatmaps.shape == a.token_attention.shape == (T, 3, 6) and a.question_attention.shape == (3, 6)
    assert a.image.shape == (48, 96, 3) and a.image.dtype == np.uint8 and a.image.std() > 10
    assert (a.plan >= 0).all()
    # IPOT's uniform marginals: each piece sends 1 / T, each patch receives 1 / P, everything sums to 1
    torch.testing.assert_close(a.plan.sum(1), torch.full((T,), 1 / T), atol=1e-4, rtol=0)
    torch.testing.assert_close(a.plan.sum(0), torch.full((P,), 1 / P), atol=1e-3, rtol=0)
    assert a.plan.sum().item() == pytest.approx(1.0, abs=1e-4)
    assert a.plan.std() > 0  # not a constant plan: the patches are told apart
    torch.testing.assert_close(a.heatmaps.flatten(1), a.plan)  # row-major patch grid
    # the same as vitkit.ot on a direct forward: rows 1..T (no [CLS] / [SEP]), columns 1.. (no image [CLS])
    enc = processor_for(vqa_model)(images=[image(50, 80)], text=[QUESTION])
    with torch.no_grad():
        out = vqa_model(enc["input_ids"], enc["attention_mask"], enc["pixel_values"], enc["pixel_mask"],
                        output_attentions=True)
    distance, plan = ot.word_patch_alignment(out.text_feats, out.image_feats, out.text_masks, out.image_masks)
    torch.testing.assert_close(a.plan, plan[0, 1 : T + 1, 1:], atol=1e-6, rtol=1e-5)
    assert a.distance == pytest.approx(distance.item(), rel=1e-5)
    attn = out.attentions[-1][0].mean(0)[1 : T + 1, T + 3 :]  # pieces -> patches; keys [CLS] pieces [SEP] | [CLS] ...
    torch.testing.assert_close(a.token_attention.flatten(1), attn, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(a.question_attention.flatten(), attn.mean(0), atol=1e-6, rtol=1e-5)
    # the VQA head's top 3, as vitkit.vqa scores them
    want = vitkit.vqa(vqa_model, image(50, 80), QUESTION, top_k=3)
    assert [x["label"] for x in a.answer] == [x["label"] for x in want]
    assert [x["score"] for x in a.answer] == pytest.approx([x["score"] for x in want], abs=1e-6)
    assert a.itm_score is None


def test_word_pieces_merge_into_words(vqa_model):
    a = word_patch_alignment(vqa_model, image(40, 40), "Tokenization of a giraffe")
    assert a.tokens == ["token", "##ization", "of", "a", "gi", "##raf", "##fe"]
    assert a.words == ["tokenization", "of", "a", "giraffe"]
    assert a.token_words == [0, 0, 1, 2, 3, 3, 3]
    maps = a.word_heatmaps()
    assert maps.shape == (4, *a.grid)
    torch.testing.assert_close(maps[3], a.heatmaps[4:7].sum(0))
    torch.testing.assert_close(maps[0], a.heatmaps[0] + a.heatmaps[1])
    torch.testing.assert_close(a.word_plan().sum(1), torch.tensor([2, 1, 1, 3]) / 7, atol=1e-4, rtol=0)


def test_padding_patches_get_no_weight(vqa_model):
    """In a padded batch the plan and attention put nothing on padding patches, and each example's alignment
    equals the one computed on its own."""
    proc = processor_for(vqa_model)
    ims, texts = [image(50, 80), image(64, 64, seed=1)], [QUESTION, "two red cats"]
    enc = proc(images=ims, text=texts, return_word_ids=True)  # 48 x 96 and 64 x 64 in a 64 x 96 canvas
    assert enc["pixel_values"].shape[-2:] == (64, 96)
    with torch.no_grad():
        out = vqa_model(enc["input_ids"], enc["attention_mask"], enc["pixel_values"], enc["pixel_mask"],
                        output_attentions=True)
    _, plan = ot.word_patch_alignment(out.text_feats, out.image_feats, out.text_masks, out.image_masks)
    padding = ~out.image_masks[:, 1:].reshape(2, 4, 6)  # [B, 4, 6] patch grid of the canvas
    assert padding[0, 3].all() and padding[1, :, 4:].all() and padding.sum() == 6 + 8
    assert plan[:, :, 1:].reshape(2, -1, 4, 6).permute(0, 2, 3, 1)[padding].abs().max() == 0
    for row, grid in ((0, (3, 6)), (1, (4, 4))):
        a = alignment_from_output(vqa_model, out, enc, proc, row=row)
        alone = word_patch_alignment(vqa_model, ims[row], texts[row])
        assert a.grid == alone.grid == grid and a.tokens == alone.tokens
        assert a.image.shape == (grid[0] * 16, grid[1] * 16, 3)
        assert a.plan.sum().item() == pytest.approx(1.0, abs=1e-4)  # all the mass on valid patches
        torch.testing.assert_close(a.plan, alone.plan, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(a.token_attention, alone.token_attention, atol=1e-5, rtol=1e-4)
        assert np.array_equal(a.image, alone.image)


def test_itm_score_and_heads():
    a = word_patch_alignment(small("vilt_b32"), image(40, 60), "a cat")  # pretraining model: ITM + MLM
    assert a.answer is None and 0 < a.itm_score < 1
    b = word_patch_alignment(small("vilt_b32_vqa", task="backbone"), image(40, 60), "a cat")
    assert b.answer is None and b.itm_score is None


def test_plot_alignment_writes_a_png(vqa_model, tmp_path):
    a = word_patch_alignment(vqa_model, image(50, 80), QUESTION)
    out = plot_alignment(a, tmp_path / "align.png", words=["Giraffe", "eating"])
    assert out == tmp_path / "align.png"
    with Image.open(out) as im:
        assert im.width > 400 and im.height > 150
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.std() > 20 and out.stat().st_size > 10_000  # a drawn figure, not a blank canvas
    plot_alignment(a, tmp_path / "few.png", max_words=1)
    with pytest.raises(VitkitError, match="'zebra' is not a word of the text; its words are: is, the, giraffe"):
        plot_alignment(a, tmp_path / "bad.png", words=["zebra"])


def test_align_summary_and_non_vilt_models(vqa_model, tmp_path):
    summary = align(vqa_model, image(50, 80), QUESTION, tmp_path / "a.png", device="cpu")
    assert summary["shown"] == ["is", "the", "giraffe", "eating"]  # "?" holds no letter: not drawn by default
    assert summary["out"] == str(tmp_path / "a.png") and (tmp_path / "a.png").is_file()
    json.dumps(summary)
    with pytest.raises(ConfigError, match="is a VisionTransformer, not a ViLT"):
        align(vitkit.create_model("vit_nano_patch4_32"), image(50, 80), QUESTION, tmp_path / "b.png")


# ---- vitkit align ---------------------------------------------------------------------------------------------------


@pytest.fixture
def files(vqa_model, tmp_path):
    vqa_model.save_pretrained(tmp_path / "vqa")
    image(50, 80).save(tmp_path / "photo.png")
    return tmp_path / "vqa", tmp_path / "photo.png"


def test_cli_align_json(files, tmp_path, capsys):
    model_dir, photo = files
    out = tmp_path / "align.png"
    args = ["align", "--model", str(model_dir), "--image", str(photo), "--text", QUESTION, "--out", str(out)]
    assert main([*args, "--json", "--words", "giraffe", "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tokens"] == ["is", "the", "gi", "##raf", "##fe", "eating", "?"]
    assert summary["words"] == ["is", "the", "giraffe", "eating", "?"] and summary["shown"] == ["giraffe"]
    assert [x["label"] for x in summary["answer"]] == [x["label"] for x in vitkit.vqa(
        vitkit.from_pretrained(model_dir), photo, QUESTION, top_k=3)]
    assert summary["out"] == str(out) and out.stat().st_size > 5_000
    assert main(args) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{out}: word-patch alignment of is, the, giraffe, eating") and "answer: " in line


def test_cli_align_errors(files, tmp_path, capsys):
    model_dir, photo = files
    vitkit.create_model("vit_nano_patch4_32").save_pretrained(tmp_path / "vit")
    args = ["--image", str(photo), "--text", "a cat", "--out", str(tmp_path / "x.png")]
    assert main(["align", "--model", str(tmp_path / "vit"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vitkit align: error: ") and "not a ViLT" in err[0]
    assert main(["align", "--model", str(model_dir), *args, "--words", "dog"]) == 2
    assert "'dog' is not a word of the text" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["align", "--help"])
    assert exc.value.code == 0 and "usage: vitkit align" in capsys.readouterr().out
