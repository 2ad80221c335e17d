"""Horizontal flips for VQA: the image is mirrored together with its questions and answers ("leftmost" asks
for the rightmost object of the flipped picture), per question and per image group alike."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vitkit.data.scenes import generate_vqa_scenes
from vitkit.data.vqa import load_vqa_split
from vitkit.data.vqa_dataset import ImageGroups, TextMirror, VQADataset, load_vqa_data
from vitkit.errors import ConfigError
from vitkit.processing.bert import BertTokenizer
from vitkit.processing.vilt import ViLTProcessorConfig
from vitkit.train.config import TrainConfig, resolve_vl_recipe
from vitkit.utils.random import Rng

SIDE_QUESTIONS = {"colour_of_leftmost": 1.0, "colour_of_rightmost": 1.0, "count_all": 1.0}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scenes")
    generate_vqa_scenes(out, num_train=12, num_val=2, questions_per_image=3, seed=5, mix=SIDE_QUESTIONS)
    return out


@pytest.fixture(scope="module")
def tok() -> BertTokenizer:
    return BertTokenizer(max_length=40)


def _answers(scenes: Path) -> list[str]:
    return sorted({a for q in load_vqa_split(scenes, "train2014") for a in q.answers})


def test_text_mirror_swaps_side_words_and_answers(tok):
    answers = ["left", "right", "yes", "left side", "top", "leftmost", "rightmost", "leftovers"]
    m = TextMirror(tok, answers)
    # words starting with a side swap as the word pieces do; "rightovers" and "right side" are not answers,
    # so questions with those answers cannot be mirrored
    assert m.answer_map.tolist() == [1, 0, 2, -1, 4, 6, 5, -1]
    ids = tok("is the cube left of the leftmost ball, right?")["input_ids"][0]
    assert tok.decode(m.ids(ids)) == "is the cube right of the rightmost ball, left?"
    assert tok.decode(m.ids(m.ids(ids))) == tok.decode(ids)
    untouched = tok("what color is the circle?")["input_ids"][0]
    assert torch.equal(m.ids(untouched), untouched)
    assert m.can_mirror(torch.tensor([0, 1, 2])) and not m.can_mirror(torch.tensor([2, 3]))


def _train(scenes: Path, tok, *, hflip: float, seed: int = 0) -> VQADataset:
    return load_vqa_data(scenes, ViLTProcessorConfig(shorter_edge=64, size_divisor=8, max_text_len=40), tok,
                         split="train2014", answers=_answers(scenes), hflip=hflip,
                         rng=Rng(torch.Generator().manual_seed(seed)))


def test_flipped_items_mirror_image_question_and_answers(scenes, tok):
    plain, flipped = _train(scenes, tok, hflip=0.0), _train(scenes, tok, hflip=1.0)
    answers = _answers(scenes)
    for i in range(len(plain)):
        a, b = plain[i], flipped[i]
        assert torch.equal(b["image"], a["image"].flip(-1))
        qa, qb = tok.decode(a["ids"]), tok.decode(b["ids"])
        expected = qa.replace("leftmost", "@").replace("rightmost", "leftmost").replace("@", "rightmost")
        assert qb == expected
        # scene answers (colours, counts) name no side: the same answers, only the question changed
        assert [answers[k] for k in b["targets"][0]] == [answers[k] for k in a["targets"][0]]
        assert torch.equal(b["targets"][1], a["targets"][1]) and b["type"] == a["type"]
    assert any("leftmost" in tok.decode(plain[i]["ids"]) for i in range(len(plain)))


def test_half_the_images_flip_and_unmirrorable_questions_never_do(scenes, tok):
    ds = _train(scenes, tok, hflip=0.5, seed=1)
    flips = [not torch.equal(ds[i % len(ds)]["image"], ds.store[ds.image_rows[i % len(ds)]]) for i in range(400)]
    assert 0.35 < sum(flips) / len(flips) < 0.65
    # an answer vocabulary where the first question's answer has no mirror image: that question never flips
    answers = _answers(scenes)
    mirror = TextMirror(tok, answers)
    first = int(ds.targets[0][0][0])
    mirror.answer_map[first] = -1
    qs = load_vqa_split(scenes, "train2014")
    strict = VQADataset(qs, ds.store, ds.image_rows, ds.texts, answers, hflip=1.0, mirror=mirror,
                        rng=Rng(torch.Generator().manual_seed(0)))
    blocked = [i for i in range(len(strict)) if first in strict.targets[i][0].tolist()]
    assert blocked and all(torch.equal(strict[i]["image"], ds.store[ds.image_rows[i]]) for i in blocked)
    groups = ImageGroups(strict)
    for g in range(len(groups)):
        item = groups[g]
        stored = ds.store[groups.rows[g]]
        if any(i in blocked for i in groups.members[g]):  # one unmirrorable question keeps the whole image
            assert torch.equal(item["image"], stored)
        else:
            assert torch.equal(item["image"], stored.flip(-1))
            assert [q["ids"].tolist() for q in item["questions"]] == [
                strict.mirror.ids(strict.question(i)["ids"]).tolist() for i in groups.members[g]]


def test_hflip_needs_a_mirror_and_draws_nothing_when_off(scenes, tok):
    ds = _train(scenes, tok, hflip=0.0)
    with pytest.raises(ValueError, match="TextMirror"):
        VQADataset(load_vqa_split(scenes, "train2014"), ds.store, ds.image_rows, ds.texts, _answers(scenes),
                   hflip=0.5)
    before = ds.rng.random()
    ds2 = _train(scenes, tok, hflip=0.0)
    _ = [ds2[i] for i in range(len(ds2))]
    assert ds2.rng.random() == before  # no flip draws: runs without flips keep their random stream


def test_vqa_from_scratch_flips_by_default_fine_tuning_does_not():
    scratch = resolve_vl_recipe(TrainConfig(), task="vqa", pretrained=False, img_size=64)
    tuned = resolve_vl_recipe(TrainConfig(), task="vqa", pretrained=True, img_size=384)
    assert scratch.hflip == 0.5 and tuned.hflip == 0.0
    assert scratch.epochs == 30 and tuned.epochs == 10  # from scratch: 30 epochs (0.885 in 17.5 min on scenes)
    assert resolve_vl_recipe(TrainConfig(hflip=0.0), task="vqa", pretrained=False, img_size=64).hflip == 0.0
    assert resolve_vl_recipe(TrainConfig(), task="pretrain", pretrained=False, img_size=64).hflip == 0.0
    for task in ("pretrain", "retrieval", "nlvr2"):  # they do not mirror their texts: asking for flips is an error
        with pytest.raises(ConfigError, match="does not flip"):
            resolve_vl_recipe(TrainConfig(hflip=0.5), task=task, pretrained=False, img_size=64)
