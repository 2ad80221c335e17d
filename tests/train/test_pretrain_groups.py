"""Pretraining and retrieval with one-way fusion: captions grouped by image give exactly the losses of one image
copy per caption, the MLM head run at the masked positions only equals the full head there, and retrieval
scores with each image encoded once equal the pairwise forward."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vitkit.data.captions import find_caption_files
from vitkit.data.scenes import generate_vqa_scenes
from vitkit.data.vl import CaptionGroups, collate_pairs, load_caption_pairs, pad_ids
from vitkit.inference.vilt import processor_config_for, score_embedded_pairs
from vitkit.processing.bert import BertTokenizer
from vitkit.processing.vilt import ViLTProcessor, normalize_pad
from vitkit.registry import create_model
from vitkit.train.config import TrainConfig
from vitkit.train.launch import run_train
from vitkit.train.tasks.pretrain import PretrainTask
from vitkit.train.tasks.retrieval import RetrievalTask
from vitkit.train.tasks.vl import images_per_batch


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scenes")
    generate_vqa_scenes(out, num_train=24, num_val=6, questions_per_image=2, seed=4)
    return out


def _model(task: str = "itm", **kw):
    torch.manual_seed(0)
    extra = ("mlm",) if task == "itm" else ()
    return create_model("vilt_nano_patch8_64", depth=2, task=task, extra_heads=extra, drop_path_rate=0.0,
                        **kw).eval()


def _pairs(scenes: Path, model):
    pcfg = processor_config_for(model)
    tok = BertTokenizer(max_length=pcfg.max_text_len)
    train_images, _ = find_caption_files(scenes)
    return load_caption_pairs(train_images, pcfg, tok), ViLTProcessor(pcfg, tok)


def test_mlm_head_at_masked_positions_equals_the_full_head(scenes):
    model = _model(image_attends_text=True)
    pairs, proc = _pairs(scenes, model)
    batch = collate_pairs([pairs[k] for k in range(6)], proc.config)
    mask = torch.rand(batch["input_ids"].shape, generator=torch.Generator().manual_seed(0)) < 0.3
    mask &= batch["attention_mask"].bool()
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values", "pixel_mask")}
    with torch.no_grad():
        full = model(**inputs).extra_logits["mlm"]
        picked = model(**inputs, mlm_mask=mask).extra_logits["mlm"]
    assert picked.shape == (int(mask.sum()), full.shape[-1])
    torch.testing.assert_close(picked, full[mask], rtol=1e-5, atol=1e-5)


def test_grouped_captions_give_the_losses_of_one_image_copy_per_caption(scenes):
    model = _model(image_attends_text=False)
    pairs, proc = _pairs(scenes, model)
    groups = CaptionGroups(pairs)
    assert len(groups) == 24 and groups.num_texts == len(pairs) == 24 * 5
    assert sorted(k for m in groups.members for k in m) == list(range(len(pairs)))
    task = PretrainTask(processor=proc)
    grouped = collate_pairs([groups[g] for g in range(4)], proc.config)
    flat = collate_pairs([pairs[k] for g in range(4) for k in groups.members[g]], proc.config)
    assert grouped["pixel_values"].shape[0] == 4 and flat["pixel_values"].shape[0] == 20
    assert grouped["image_index"].tolist() == [g for g in range(4) for _ in range(5)]
    assert torch.equal(grouped["input_ids"], flat["input_ids"])
    with torch.no_grad():
        a = task._losses(model, grouped, torch.device("cpu"), torch.Generator().manual_seed(7))
        b = task._losses(model, flat, torch.device("cpu"), torch.Generator().manual_seed(7))
    assert torch.equal(a["_itm_labels"], b["_itm_labels"]) and 0 < int(a["_itm_labels"].sum()) < 20
    assert torch.equal(a["_labels"], b["_labels"])
    for k in ("mlm_loss", "itm_loss", "wpa_loss", "_mlm_logits", "_itm_logits"):
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    # and gradients flow to every trained part through the one shared pass
    model.train()
    parts = task._losses(model, grouped, torch.device("cpu"), torch.Generator().manual_seed(7))
    (parts["mlm_loss"] + parts["itm_loss"] + 0.1 * parts["wpa_loss"]).backward()
    for name in ("itm_score", "mlm_score", "transformer.patch_embed", "text_embeddings"):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(name) and p.requires_grad]
        assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), name


def test_captions_batch_becomes_whole_images(scenes):
    model = _model(image_attends_text=False)
    pairs, _ = _pairs(scenes, model)
    assert images_per_batch(TrainConfig(batch_size=64), CaptionGroups(pairs), what="captions").batch_size == 13


def test_one_way_retrieval_scores_equal_the_pairwise_forward(scenes):
    model = _model("retrieval", image_attends_text=False)
    pairs, proc = _pairs(scenes, model)
    texts = [pairs.texts.ids[t, : int(pairs.texts.lengths[t])] for t in range(7)]
    ids, tmask = pad_ids(texts)
    with torch.no_grad():
        pixels, pmask = normalize_pad([pairs.store[i] for i in range(3)], proc.config)
        image, image_masks, patch_index = model.embed_image(pixels, pmask)
        embedded = (image + model.token_type_embeddings.weight[1], image_masks, patch_index)
        scores = score_embedded_pairs(model, embedded, ids, tmask, tmask.sum(1), head="retrieval", batch_size=5)
        for i in range(3):
            out = model(input_ids=ids, attention_mask=tmask, pixel_values=pixels[i:i + 1].expand(7, -1, -1, -1),
                        pixel_mask=pmask[i:i + 1].expand(7, -1, -1))
            torch.testing.assert_close(scores[i], out.logits[:, 0], rtol=1e-4, atol=1e-5)


def test_one_way_retrieval_step_equals_an_image_copy_per_text(scenes, monkeypatch):
    from types import SimpleNamespace

    import vitkit.train.tasks.retrieval as retrieval

    model = _model("retrieval", image_attends_text=False)
    pairs, proc = _pairs(scenes, model)
    task = RetrievalTask(processor=proc, train_set=pairs, val_set=pairs, negatives=3)
    batch = collate_pairs([pairs[k] for k in (0, 5, 10)], proc.config)
    from vitkit.train.engine import StepContext
    from vitkit.utils.distributed import DistInfo

    ctx = StepContext(device=torch.device("cpu"), dist=DistInfo())
    torch.manual_seed(1)
    with torch.no_grad():
        shared, _ = task.train_step(model, batch, ctx)
        # the same one-way model fed an image copy per text (the step's early-fusion path)
        monkeypatch.setattr(retrieval, "unwrap_model", lambda m: SimpleNamespace(config=SimpleNamespace(
            image_attends_text=True)))
        torch.manual_seed(1)
        copies, _ = task.train_step(model, batch, ctx)
    torch.testing.assert_close(shared, copies, rtol=1e-5, atol=1e-6)


def test_one_way_pretraining_runs_on_grouped_captions(scenes, tmp_path):
    src = tmp_path / "init"
    _model(image_attends_text=False).save_pretrained(src)
    cfg = TrainConfig(epochs=1, batch_size=20, progress=False, log_every=1, ema=False, seed=0)
    best = run_train(task="pretrain", data=scenes, out=tmp_path / "run", model=str(src), cfg=cfg)
    assert 0.0 <= best["val_itm_accuracy"] <= 1.0 and 0.0 <= best["val_zs_tr_r1"] <= 1.0
    import json

    steps = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"loss"' in x]
    assert len(steps) == 6  # 24 images / 4 images (20 captions) a step
