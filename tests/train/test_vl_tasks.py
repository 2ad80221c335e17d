"""The vision-language tasks on the training engine, end to end on tiny generated scenes: VQA, pretraining
(ITM + MLM + WPA), retrieval and NLVR2; plus the pieces they are built from (whole-word masking, recall@k,
the VQA accuracy lookup)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from vitkit.cli import main
from vitkit.data.scenes import generate_nlvr2_scenes, generate_vqa_scenes
from vitkit.data.vl import whole_word_mask
from vitkit.data.vqa import vqa_accuracy
from vitkit.processing.bert import BertTokenizer
from vitkit.registry import from_pretrained
from vitkit.train.config import TrainConfig
from vitkit.train.launch import run_train
from vitkit.train.tasks.retrieval import recall_at

TINY = TrainConfig(epochs=1, batch_size=16, progress=False, log_every=1, ema=False, seed=0)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scenes")
    generate_vqa_scenes(out, num_train=48, num_val=12, questions_per_image=3, seed=1)
    return out


@pytest.fixture(scope="module")
def nlvr2_scenes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nlvr2")
    generate_nlvr2_scenes(out, num_train=64, num_dev=16, seed=2)
    return out


def _jsonl(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# ---- VQA ----------------------------------------------------------------------------------------------------------


def test_vqa_trains_exports_and_evaluates_identically(scenes, tmp_path, capsys):
    run = tmp_path / "run"
    best = run_train(task="vqa", data=scenes, out=run, cfg=TINY)
    assert 0.0 <= best["val_vqa_accuracy"] <= 1.0
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["val_vqa_accuracy"] == best["val_vqa_accuracy"]
    assert {"val_vqa_yes_no", "val_vqa_number", "val_vqa_other"} <= set(saved)
    assert (run / "model" / "vocab.txt").is_file() and (run / "training_curves.png").is_file()
    model = from_pretrained(run / "model")
    assert model.config.task == "vqa" and model.config.labels and "yes" in model.config.labels
    # `vitkit eval` reproduces the exported weights' metric; `vitkit predict --question` answers from the vocabulary
    assert main(["eval", "--model", str(run / "model"), "--data", str(scenes), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["val_vqa_accuracy"] == pytest.approx(saved["val_vqa_accuracy"], abs=1e-9)
    image = next((scenes / "val2014").iterdir())
    assert main(["predict", "--model", str(run / "model"), "--image", str(image), "--question",
                 "how many objects are there?", "--top-k", "3", "--json"]) == 0
    preds = json.loads(capsys.readouterr().out)["predictions"]
    assert len(preds) == 3 and all(p["label"] in model.config.labels for p in preds)


def test_vqa_eval_lookup_equals_the_official_accuracy(scenes):
    from vitkit.data.vqa import load_vqa_split
    from vitkit.data.vqa_dataset import load_vqa_data
    from vitkit.inference.vilt import processor_config_for
    from vitkit.processing.vilt import ViLTProcessor
    from vitkit.registry import create_model
    from vitkit.train.engine import StepContext
    from vitkit.train.tasks.vqa import VQATask
    from vitkit.utils.distributed import DistInfo

    qs = load_vqa_split(scenes, "val2014")
    answers = ["yes", "no", "0", "1", "2", "3", "red", "blue", "circle", "square"]
    model = create_model("vilt_nano_patch8_64", num_answers=len(answers), labels=tuple(answers), depth=1).eval()
    pcfg = processor_config_for(model)
    tok = BertTokenizer(max_length=pcfg.max_text_len)
    ds = load_vqa_data(scenes, pcfg, tok, split="val2014", answers=answers, questions=qs)
    task = VQATask(answers=answers, processor=ViLTProcessor(pcfg, tok))
    loader = torch.utils.data.DataLoader(ds, batch_size=7, collate_fn=task.collate)
    got = task.evaluate(model, loader, StepContext(device=torch.device("cpu"), dist=DistInfo()))
    # the same predictions scored one by one with the official formula
    preds = []
    with torch.no_grad():
        for batch in loader:
            logits = model(**VQATask._inputs(batch, torch.device("cpu"))).logits
            preds += logits.argmax(-1).tolist()
    expected = sum(vqa_accuracy(answers[p], q.answers) for p, q in zip(preds, qs)) / len(qs)
    assert got["val_vqa_accuracy"] == pytest.approx(expected, abs=1e-12)


def test_vqa_losses_on_soft_targets():
    import torch.nn.functional as F

    from vitkit.train.tasks.vqa import VQATask

    logits = torch.randn(3, 5)
    targets = torch.tensor([[1.0, 0, 0, 0, 0], [0.3, 0.9, 0, 0, 0], [0, 0, 0, 0, 0]])
    bce = VQATask(answers=list("abcde"), processor=None).loss_sum(logits, targets)
    torch.testing.assert_close(bce, F.binary_cross_entropy_with_logits(logits, targets) * targets.numel())
    ce = VQATask(answers=list("abcde"), processor=None, loss="ce").loss_sum(logits, targets)
    logp = logits.log_softmax(-1)
    torch.testing.assert_close(ce, -(logp[0, 0] + 0.25 * logp[1, 0] + 0.75 * logp[1, 1]))  # no answer: 0
    with pytest.raises(ValueError, match="loss"):
        VQATask(answers=["a"], processor=None, loss="mse")


def test_vqa_ctrl_c_mid_epoch_then_resume_gives_the_same_weights(scenes, tmp_path, monkeypatch):
    import os
    import signal

    from vitkit.train.tasks.vqa import VQATask

    cfg = replace(TINY, epochs=2, deterministic=True)
    whole = tmp_path / "whole"
    run_train(task="vqa", data=scenes, out=whole, cfg=cfg)
    calls = {"n": 0}
    step = VQATask.train_step

    def interrupted_step(self, model, batch, ctx):
        calls["n"] += 1
        if calls["n"] == 12:  # epoch 2 (9 steps per epoch): Ctrl-C, as a user would
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, model, batch, ctx)

    monkeypatch.setattr(VQATask, "train_step", interrupted_step)
    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        run_train(task="vqa", data=scenes, out=part, cfg=cfg)
    saved = torch.load(part / "checkpoint.pt", weights_only=True)
    assert saved["run"]["epoch"] == 1 and saved["run"]["step_in_epoch"] == 3
    monkeypatch.setattr(VQATask, "train_step", step)
    run_train(task="vqa", data=None, out=part, resume=True)
    a = torch.load(whole / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(part / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_vqa_rejects_a_folder_without_the_layout(tmp_path):
    from vitkit.errors import VitkitError

    (tmp_path / "x").mkdir()
    with pytest.raises(VitkitError, match=r"v2_OpenEnded_mscoco_train2014_questions\.json"):
        run_train(task="vqa", data=tmp_path / "x", out=tmp_path / "run", cfg=TINY)


# ---- pretraining and retrieval ------------------------------------------------------------------------------------


def test_pretrain_logs_each_objective_and_zero_shot_retrieval(scenes, tmp_path):
    run = tmp_path / "pre"
    best = run_train(task="pretrain", data=scenes, out=run, cfg=TINY)
    steps = [r for r in _jsonl(run) if "loss" in r]
    assert steps and all({"mlm_loss", "itm_loss", "wpa_loss"} <= set(r) for r in steps)
    assert all(r["mlm_loss"] > 0 and r["itm_loss"] > 0 for r in steps)
    for key in ("val_itm_accuracy", "val_mlm_accuracy", "val_zs_tr_r1", "val_zs_ir_r1", "val_zs_tr_r10"):
        assert 0.0 <= best[key] <= 1.0
    model = from_pretrained(run / "model")
    assert model.config.task == "itm" and model.config.extra_heads == ("mlm",)
    # fine-tune retrieval from it: the rank head starts from the ITM head's match row
    ft = tmp_path / "ret"
    best = run_train(task="retrieval", data=scenes, out=ft, model=str(run / "model"), cfg=replace(TINY, batch_size=8))
    assert {"val_tr_r1", "val_ir_r1", "val_tr_r5", "val_ir_r10", "val_r_mean"} <= set(best)
    ret = from_pretrained(ft / "model")
    assert ret.config.task == "retrieval"


def test_whole_word_masking_masks_every_piece_of_a_word_together():
    tok = BertTokenizer()
    enc = tok.encode(["tokenization of a giraffe is unusual", "the red circle"], return_word_ids=True)
    ids, words, mask = enc["input_ids"], enc["word_ids"], enc["attention_mask"]
    special = tok.special_token_ids
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        masked, labels = whole_word_mask(ids, words, mask, vocab_size=tok.vocab_size,
                                         mask_token_id=tok.convert_tokens_to_ids("[MASK]"), special_ids=special,
                                         prob=0.3, generator=g)
        target = labels != -100
        assert target.any(1).all()  # every text predicts something
        assert not target[torch.isin(ids, torch.tensor(special)) | (mask == 0)].any()
        for b in range(ids.shape[0]):
            for w in words[b].unique().tolist():
                if w < 0:
                    continue
                pieces = target[b][words[b] == w]
                assert pieces.all() or not pieces.any()  # a word is predicted whole or not at all
        assert torch.equal(labels[target], ids[target])
        assert torch.equal(masked[~target], ids[~target])


def test_itm_negatives_show_another_image_even_when_captions_of_one_image_are_adjacent():
    from vitkit.train.tasks.pretrain import other_image

    rows = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2])  # an unshuffled caption file: 5 captions per image
    pick = other_image(rows)
    assert (rows[pick] != rows).all()
    assert pick.tolist()[:5] == [5, 5, 5, 5, 5] and pick.tolist()[10] == 0
    assert other_image(torch.tensor([3, 3, 3])).tolist() == [0, 1, 2]  # one image only: nothing else to pick


def test_recall_at_k_on_a_hand_made_score_matrix():
    # 3 images, 4 texts; text -> image: 0, 0, 1, 2
    owner = torch.tensor([0, 0, 1, 2])
    scores = torch.tensor([[0.9, 0.1, 0.8, 0.0],
                           [0.2, 0.3, 0.1, 0.95],
                           [0.0, 0.0, 0.2, 0.5]])
    r = recall_at(scores, owner, ks=(1, 2))
    # TR@1: image 0 best text 0 (own) yes; image 1 best text 3 (image 2's) no; image 2 best text 3 yes
    assert r["tr_r1"] == pytest.approx(2 / 3)
    # IR@1: text 0 -> image 0 yes; text 1 -> image 1 no; text 2 -> image 0 no; text 3 -> image 1 no
    assert r["ir_r1"] == pytest.approx(1 / 4)
    assert r["ir_r2"] == pytest.approx(3 / 4)  # text 1: images 1, 0 -> yes; text 2: 0, 2 -> no; text 3: 1, 2 -> yes


# ---- NLVR2 --------------------------------------------------------------------------------------------------------


def test_nlvr2_trains_on_pairs_of_images(nlvr2_scenes, tmp_path):
    run = tmp_path / "nlvr2"
    best = run_train(task="nlvr2", data=nlvr2_scenes, out=run, cfg=TINY)
    assert 0.0 <= best["val_accuracy"] <= 1.0
    model = from_pretrained(run / "model")
    assert model.config.num_images == 2 and model.config.labels == ("False", "True")


def test_cli_train_lists_the_vision_language_tasks(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for task in ("vqa", "pretrain", "retrieval", "nlvr2", "--init-from"):
        assert task in out


def test_cli_scenes_writes_vqa_nlvr2_and_blank_copies(tmp_path, capsys):
    from vitkit.data.nlvr2 import load_nlvr2
    from vitkit.data.vqa import load_vqa_split

    vqa_dir, blank, nl = tmp_path / "vqa", tmp_path / "blank", tmp_path / "nl"
    assert main(["scenes", str(vqa_dir), "--num-train", "6", "--num-val", "3", "--questions-per-image", "2"]) == 0
    assert len(load_vqa_split(vqa_dir, "train2014")) == 12
    assert main(["scenes", str(blank), "--blank-from", str(vqa_dir)]) == 0
    qs, blank_qs = load_vqa_split(vqa_dir, "val2014"), load_vqa_split(blank, "val2014")
    assert [q.question for q in qs] == [q.question for q in blank_qs]
    from PIL import Image

    with Image.open(blank_qs[0].image_path) as im:
        lo, hi = im.convert("L").getextrema()
    assert hi - lo <= 2  # blank: one background colour (JPEG may wobble by a level)
    assert main(["scenes", str(nl), "--nlvr2", "--num-train", "8", "--num-val", "8"]) == 0
    assert len(load_nlvr2(nl, "dev")) == 8
    capsys.readouterr()
    assert main(["scenes", str(tmp_path / "bad"), "--image-size", "8"]) == 2
    assert "error:" in capsys.readouterr().err
