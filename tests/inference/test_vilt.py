"""ViLT inference (vitkit.vilt_inference): VQA, ITM, fill-mask and retrieval ranking against direct forwards;
retrieval's cached image embeddings against one full forward per pair; `vitkit predict --question`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import vitkit
from vitkit.cli import main
from vitkit.errors import VitkitError
from vitkit.inference.vilt import processor_for, retrieval_scores
from vitkit.processing.vilt import ViLTProcessor, ViLTProcessorConfig

# Small random-init ViLTs with small images: 16-pixel patches, shorter side 64 -> at most 4 x 6 patches.
SMALL = dict(depth=2, embed_dim=64, num_heads=4, img_size=64, patch_size=16, shorter_edge=64, longer_edge=96,
             size_divisor=16, max_text_len=24)
LABELS = ("yes", "no", "two", "red", "cat", "dog", "blue")
TEXTS = ["a cat", "two dogs playing in the park", "red", "a blue car parked on a quiet street at night", "no",
         "what is this", "a cat on a mat"]


def small(name: str, **overrides) -> vitkit.models.ViLT:
    """A small ViLT with every linear layer re-drawn at unit gain (std 1/sqrt(fan_in)), so scores differ clearly
    between inputs: the 0.02-std init leaves every ITM probability within 1e-3 of the others."""
    model = vitkit.create_model(name, **{**SMALL, **overrides}).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(std=m.in_features**-0.5)
    return model


def image(h: int, w: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def direct(model, images, texts):
    """One full model forward over the pairs, through the model's own processor."""
    enc = processor_for(model)(images=images, text=texts)
    with torch.no_grad():
        return model(enc["input_ids"], enc["attention_mask"], enc["pixel_values"], enc["pixel_mask"],
                     enc["token_type_ids"])


# ---- preprocessing -----------------------------------------------------------------------------------------------


def test_processor_follows_the_model_config():
    model = small("vilt_b32_vqa", mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.4), interpolation="bilinear")
    proc = processor_for(model)
    assert proc.config == ViLTProcessorConfig(shorter_edge=64, longer_edge=96, size_divisor=16, mean=(0.4, 0.5, 0.6),
                                              std=(0.2, 0.3, 0.4), resample="bilinear", max_text_len=24)
    assert processor_for(model) is proc  # built once per config
    out = proc(images=image(50, 80), text="a question")
    ref = ViLTProcessor(proc.config)(images=image(50, 80), text="a question")
    assert out["pixel_values"].shape == (1, 3, 48, 96)  # 50x80 -> 60x96 (longer side capped) -> multiples of 16
    for k in ref:
        assert torch.equal(out[k], ref[k])


# ---- VQA ---------------------------------------------------------------------------------------------------------


def test_vqa_top_k_are_sigmoid_scores_best_first():
    model = small("vilt_b32_vqa", num_answers=len(LABELS), labels=LABELS)
    preds = vitkit.vqa(model, image(50, 80), "what colour is it?", top_k=3)
    assert len(preds) == 3 and all(p["label"] in LABELS for p in preds)
    scores = [p["score"] for p in preds]
    assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)
    probs = direct(model, [image(50, 80)], ["what colour is it?"]).logits.sigmoid()[0]
    top = probs.topk(3)
    assert [p["label"] for p in preds] == [LABELS[i] for i in top.indices.tolist()]
    torch.testing.assert_close(torch.tensor(scores), top.values, atol=1e-6, rtol=0)


def test_vqa_batches_and_broadcasts():
    model = small("vilt_b32_vqa", num_answers=len(LABELS), labels=LABELS)
    questions = ["is it red?", "how many dogs are there in the picture?", "what animal?"]
    one_image = vitkit.vqa(model, image(50, 80), questions, top_k=2, batch_size=2)
    assert len(one_image) == 3 and all(len(r) == 2 for r in one_image)
    for q, r in zip(questions, one_image):
        single = vitkit.vqa(model, image(50, 80), q, top_k=2)
        assert [p["label"] for p in r] == [p["label"] for p in single]
        assert [p["score"] for p in r] == pytest.approx([p["score"] for p in single], abs=1e-5)
    images = [image(50, 80, 1), image(70, 40, 2)]
    pairs = vitkit.vqa(model, images, questions[:2], top_k=1)
    for im, q, r in zip(images, questions[:2], pairs):
        assert r[0]["score"] == pytest.approx(vitkit.vqa(model, im, q, top_k=1)[0]["score"], abs=1e-5)
    with pytest.raises(VitkitError, match="2 images but 3 texts"):
        vitkit.vqa(model, images, questions)


def test_vqa_without_labels_names_answers_and_clips_top_k():
    model = small("vilt_b32_vqa", num_answers=4)
    preds = vitkit.vqa(model, image(40, 40), "what?", top_k=10)
    assert sorted(p["label"] for p in preds) == ["answer_0", "answer_1", "answer_2", "answer_3"]


def test_inference_restores_training_mode_and_builds_no_graph():
    model = small("vilt_b32_vqa", num_answers=4).train()
    preds = vitkit.vqa(model, image(40, 40), "what?")
    assert model.training and isinstance(preds[0]["score"], float)
    model.eval()
    vitkit.vqa(model, image(40, 40), "what?")
    assert not model.training


# ---- ITM and MLM -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, overrides", [("vilt_b32", {}), ("vilt_b32", {"task": "mlm", "extra_heads": ("itm",)})])
def test_itm_score_is_the_match_probability(name, overrides):
    model = small(name, **overrides)  # ITM as the task head, then ITM as an extra head
    out = direct(model, [image(50, 80)] * 3, TEXTS[:3])
    logits = out.logits if model.config.task == "itm" else out.extra_logits["itm"]
    expected = logits.softmax(-1)[:, 1].tolist()
    assert vitkit.itm_score(model, image(50, 80), TEXTS[0]) == pytest.approx(expected[0], abs=1e-6)
    scores = vitkit.itm_score(model, image(50, 80), TEXTS[:3], batch_size=2)
    assert scores == pytest.approx(expected, abs=1e-5) and all(0 <= s <= 1 for s in scores)


@pytest.mark.parametrize("name, overrides", [("vilt_b32", {}), ("vilt_b32", {"task": "mlm", "extra_heads": ("itm",)})])
def test_fill_mask_predicts_only_at_mask_positions(name, overrides):
    model = small(name, **overrides)
    text = "a [MASK] sitting on a [MASK] mat"
    preds = vitkit.fill_mask(model, image(50, 80), text, top_k=4)
    assert len(preds) == 2 and all(len(p) == 4 for p in preds)  # one candidate list per [MASK]
    tok = processor_for(model).tokenizer
    enc = processor_for(model)(images=image(50, 80), text=text)
    where = (enc["input_ids"][0] == tok.mask_token_id).nonzero().flatten()
    out = direct(model, [image(50, 80)], [text])
    logits = out.logits if model.config.task == "mlm" else out.extra_logits["mlm"]
    probs = logits[0, where].softmax(-1)  # [2, V]
    for cands, p in zip(preds, probs):
        scores = [c["score"] for c in cands]
        assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1
        assert [c["token_id"] for c in cands] == p.topk(4).indices.tolist()
        assert scores == pytest.approx(p.topk(4).values.tolist(), abs=1e-6)
        assert [c["token"] for c in cands] == tok.convert_ids_to_tokens([c["token_id"] for c in cands])
    batched = vitkit.fill_mask(model, image(50, 80), [text, "[MASK]"], top_k=1)
    assert len(batched) == 2 and len(batched[0]) == 2 and len(batched[1]) == 1
    assert batched[0][0][0]["token_id"] == preds[0][0]["token_id"]
    with pytest.raises(VitkitError, match="no \\[MASK\\]"):
        vitkit.fill_mask(model, image(50, 80), "nothing to fill")


def test_wrong_model_or_head_is_a_clear_error():
    vqa_model = small("vilt_b32_vqa", num_answers=4)
    with pytest.raises(VitkitError, match="'itm' head"):
        vitkit.itm_score(vqa_model, image(40, 40), "a cat")
    with pytest.raises(VitkitError, match="'mlm' head"):
        vitkit.fill_mask(vqa_model, image(40, 40), "a [MASK]")
    with pytest.raises(VitkitError, match="'vqa' head"):
        vitkit.vqa(small("vilt_b32"), image(40, 40), "what?")
    with pytest.raises(VitkitError, match="'itm' head"):
        vitkit.rank_texts(vqa_model, image(40, 40), ["a", "b"])
    with pytest.raises(VitkitError, match="expected a ViLT"):
        vitkit.vqa(vitkit.create_model("vit_nano_patch4_32"), image(40, 40), "what?")
    with pytest.raises(VitkitError, match="single-image"):
        vitkit.vqa(vitkit.create_model("vilt_b32_nlvr2", **SMALL), image(40, 40), "what?")


# ---- retrieval: cached image embeddings == one full forward per pair -------------------------------------------


def per_pair_scores(model, images, texts):
    """The naive reference: one full forward (image embedded again) for every image-text pair."""
    head = "retrieval" if model.config.task == "retrieval" else "itm"
    out = torch.empty(len(images), len(texts))
    for i, im in enumerate(images):
        for j, t in enumerate(texts):
            logits = direct(model, [im], [t]).logits
            out[i, j] = logits[0, 0] if head == "retrieval" else logits.softmax(-1)[0, 1]
    return out


def count_image_embeddings(model, monkeypatch) -> list[int]:
    """Patch model.embed_image to record the batch size of every call."""
    calls: list[int] = []
    original = model.embed_image

    def counted(pixel_values, pixel_mask=None):
        calls.append(pixel_values.shape[0])
        return original(pixel_values, pixel_mask)

    monkeypatch.setattr(model, "embed_image", counted)
    return calls


@pytest.mark.parametrize("name", ["vilt_b32", "vilt_b32_retrieval"])
def test_rank_texts_embeds_the_image_once_and_equals_per_pair_forwards(name, monkeypatch):
    model = small(name)
    img = image(50, 80)
    reference = per_pair_scores(model, [img], TEXTS)[0]
    calls = count_image_embeddings(model, monkeypatch)
    ranked = vitkit.rank_texts(model, img, TEXTS, batch_size=3)  # 7 texts of varied length in 3 batches
    assert calls == [1]  # one image embedding for all seven texts
    assert [r["index"] for r in ranked] == reference.argsort(descending=True).tolist()
    torch.testing.assert_close(torch.tensor([r["score"] for r in ranked]), reference.sort(descending=True).values,
                               atol=1e-5, rtol=0)
    assert reference.sort().values.diff().min() > 1e-5  # scores a tolerance apart: the order is a real test
    if name == "vilt_b32":
        assert all(0 <= r["score"] <= 1 for r in ranked)  # ITM match probabilities
    assert [r["index"] for r in vitkit.rank_texts(model, img, TEXTS, top_k=2)] == [r["index"] for r in ranked[:2]]


def test_rank_images_embeds_each_image_once_and_equals_per_pair_forwards(monkeypatch):
    model = small("vilt_b32")
    images = [image(50, 80, 0), image(90, 40, 1), image(64, 64, 2), image(30, 100, 3), image(70, 70, 4)]
    reference = per_pair_scores(model, images, ["two dogs playing"])[:, 0]
    assert reference.sort().values.diff().min() > 1e-5
    calls = count_image_embeddings(model, monkeypatch)
    ranked = vitkit.rank_images(model, images, "two dogs playing", batch_size=2)
    assert calls == [2, 2, 1]  # every image embedded exactly once (mixed sizes, padded per image batch)
    assert [r["index"] for r in ranked] == reference.argsort(descending=True).tolist()
    torch.testing.assert_close(torch.tensor([r["score"] for r in ranked]), reference.sort(descending=True).values,
                               atol=1e-5, rtol=0)


def test_retrieval_score_matrix_equals_per_pair_forwards(monkeypatch):
    model = small("vilt_b32_retrieval")
    images = [image(50, 80, 0), image(90, 40, 1), image(64, 64, 2)]
    reference = per_pair_scores(model, images, TEXTS[:4])
    calls = count_image_embeddings(model, monkeypatch)
    scores = retrieval_scores(model, images, TEXTS[:4], batch_size=5)
    assert scores.shape == (3, 4) and sum(calls) == 3
    torch.testing.assert_close(scores, reference, atol=1e-5, rtol=0)


# ---- vitkit predict --question -------------------------------------------------------------------------------------


@pytest.fixture
def vqa_dir(tmp_path):
    model = small("vilt_b32_vqa", num_answers=len(LABELS), labels=LABELS)
    model.save_pretrained(tmp_path / "vqa")
    image(50, 80).save(tmp_path / "photo.png")
    return tmp_path / "vqa", tmp_path / "photo.png"


def test_predict_question_json(vqa_dir, capsys):
    model_dir, photo = vqa_dir
    args = ["predict", "--model", str(model_dir), "--image", str(photo), "--question", "what colour?"]
    assert main([*args, "--json", "--top-k", "3"]) == 0
    preds = json.loads(capsys.readouterr().out)["predictions"]
    assert len(preds) == 3 and set(preds[0]) == {"label", "score"}
    expected = vitkit.vqa(vitkit.from_pretrained(model_dir), str(photo), "what colour?", top_k=3)
    assert [p["label"] for p in preds] == [p["label"] for p in expected]
    assert [p["score"] for p in preds] == pytest.approx([p["score"] for p in expected], abs=1e-6)
    assert main([*args, "--top-k", "2"]) == 0
    text = capsys.readouterr().out.strip()
    assert text == ", ".join(f"{p['label']} {p['score']:.2f}" for p in expected[:2])


def test_predict_question_errors(vqa_dir, tmp_path, capsys):
    model_dir, photo = vqa_dir
    assert main(["predict", "--model", str(model_dir), "--image", str(photo)]) == 2
    assert "is a VQA model: pass --question" in capsys.readouterr().err
    vitkit.create_model("vit_nano_patch4_32").save_pretrained(tmp_path / "vit")
    assert main(["predict", "--model", str(tmp_path / "vit"), "--image", str(photo), "--question", "what?"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vitkit predict: error:") and "--question needs a ViLT VQA model" in err
    small("vilt_b32").save_pretrained(tmp_path / "itm")
    assert main(["predict", "--model", str(tmp_path / "itm"), "--image", str(photo), "--question", "what?"]) == 2
    assert "needs a VQA model" in capsys.readouterr().err


def test_mixed_sizes_and_lengths_are_grouped_but_answers_match_one_by_one():
    """vqa / itm_score group pairs by image size and text length to save padding; results come back in input order
    and equal each pair run on its own."""
    model = small("vilt_b32_vqa", num_answers=5)
    itm = small("vilt_b32")
    images = [image(40, 40, 1), image(64, 32, 2), image(40, 40, 3), image(32, 96, 4), image(64, 32, 5)]
    texts = ["what?", "how many red circles are in the picture on the left?", "is it red?",
             "what color is the small square next to the big triangle?", "where?"]
    together = vitkit.vqa(model, images, texts, top_k=5, batch_size=2)
    for im, q, got in zip(images, texts, together):
        alone = vitkit.vqa(model, im, q, top_k=5)
        assert [a["label"] for a in got] == [a["label"] for a in alone]
        assert [a["score"] for a in got] == pytest.approx([a["score"] for a in alone], abs=1e-5)
    scores = vitkit.itm_score(itm, images, texts, batch_size=2)
    assert scores == pytest.approx([vitkit.itm_score(itm, im, t) for im, t in zip(images, texts)], abs=1e-5)
