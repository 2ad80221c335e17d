"""VQA with one-way fusion: questions grouped by image (each image encoded once per step) lose no question,
score exactly as one question at a time, and the batch size converts from questions to images."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from vitkit.data.scenes import generate_vqa_scenes
from vitkit.data.vqa import load_vqa_split
from vitkit.data.vqa_dataset import ImageGroups, load_vqa_data
from vitkit.inference.vilt import processor_config_for
from vitkit.processing.bert import BertTokenizer
from vitkit.processing.vilt import ViLTProcessor
from vitkit.registry import create_model
from vitkit.train.config import TrainConfig
from vitkit.train.engine import StepContext
from vitkit.train.launch import run_train
from vitkit.train.tasks.vl import images_per_batch
from vitkit.train.tasks.vqa import VQATask
from vitkit.utils.distributed import DistInfo


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scenes")
    generate_vqa_scenes(out, num_train=40, num_val=10, questions_per_image=3, seed=3)
    return out


def _val(scenes: Path, model):
    answers = list(model.config.labels)
    pcfg = processor_config_for(model)
    tok = BertTokenizer(max_length=pcfg.max_text_len)
    ds = load_vqa_data(scenes, pcfg, tok, split="val2014", answers=answers,
                       questions=load_vqa_split(scenes, "val2014"))
    return ds, VQATask(answers=answers, processor=ViLTProcessor(pcfg, tok))


def _model(**kw):
    torch.manual_seed(0)
    answers = ("yes", "no", "0", "1", "2", "3", "red", "blue", "circle", "square")
    return create_model("vilt_nano_patch8_64", num_answers=len(answers), labels=answers, depth=2, task="vqa",
                        image_attends_text=False, **kw).eval()


def test_groups_hold_every_question_once_with_its_own_image(scenes):
    ds, task = _val(scenes, _model())
    groups = ImageGroups(ds)
    assert len(groups) == 10 and groups.num_questions == len(ds) == 30
    seen = []
    for g in range(len(groups)):
        item = groups[g]
        members = groups.members[g]
        assert all(ds.image_rows[i] == groups.rows[g] for i in members)
        assert torch.equal(item["image"], ds[members[0]]["image"])
        assert [q["ids"].tolist() for q in item["questions"]] == [ds[i]["ids"].tolist() for i in members]
        seen += members
    assert sorted(seen) == list(range(len(ds)))
    batch = task.collate([groups[0], groups[1]])
    assert batch["pixel_values"].shape[0] == 2
    assert batch["image_index"].tolist() == [0] * len(groups.members[0]) + [1] * len(groups.members[1])
    assert batch["input_ids"].shape[0] == batch["targets"].shape[0] == len(groups.members[0] + groups.members[1])


def test_grouped_evaluation_equals_one_question_at_a_time(scenes):
    model = _model()
    ds, task = _val(scenes, model)
    ctx = StepContext(device=torch.device("cpu"), dist=DistInfo())
    flat = task.evaluate(model, torch.utils.data.DataLoader(ds, batch_size=7, collate_fn=task.collate), ctx)
    grouped = task.evaluate(model, torch.utils.data.DataLoader(ImageGroups(ds), batch_size=3,
                                                               collate_fn=task.collate), ctx)
    assert grouped["num_questions"] == flat["num_questions"] == 30
    assert grouped["val_vqa_accuracy"] == pytest.approx(flat["val_vqa_accuracy"], abs=1e-12)
    assert grouped["val_loss"] == pytest.approx(flat["val_loss"], rel=1e-5)


def test_batch_size_in_questions_becomes_whole_images(scenes, monkeypatch):
    ds, _ = _val(scenes, _model())
    groups = ImageGroups(ds)  # 3 questions per image
    cfg = TrainConfig(batch_size=64)
    assert images_per_batch(cfg, groups).batch_size == 21
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert images_per_batch(cfg, groups).batch_size == 22
    assert images_per_batch(replace(cfg, batch_size=2, accum_steps=2), groups).batch_size == 4


def test_one_way_model_trains_on_grouped_questions_end_to_end(scenes, tmp_path):
    src = tmp_path / "init"
    _model().save_pretrained(src)  # a one-way ViLT as the starting point (--model DIR)
    run = tmp_path / "run"
    cfg = TrainConfig(epochs=1, batch_size=12, progress=False, log_every=1, ema=False, seed=0)
    best = run_train(task="vqa", data=scenes, out=run, model=str(src), cfg=cfg)
    assert best["num_questions"] == 30 and 0.0 <= best["val_vqa_accuracy"] <= 1.0
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert len(steps) == 10  # 40 images / 4 images (12 questions) per step
    from vitkit.train.engine import _batch_len

    assert _batch_len({"pixel_values": torch.zeros(4, 3, 8, 8), "image_index": torch.arange(12) // 3}) == 12
