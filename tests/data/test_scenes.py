"""Procedural scene datasets: determinism, the official VQAv2 / COCO captions / Karpathy / NLVR2 file layouts,
and ground truth checked independently of the generator's own answer function: objects are recovered from the
pixels (flat colours, no antialiasing) and every question, caption and statement is re-answered from them."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from vitkit.data.scenes import (
    ANSWERS,
    COLOURS,
    SHAPES,
    Scene,
    SceneObject,
    answer_question,
    blank_image_copy,
    build_nlvr2_split,
    build_vqa_splits,
    generate_nlvr2_scenes,
    generate_vqa_scenes,
    object_extents,
    render_scene,
    sample_scene,
)
from vitkit.processing.images import DatasetError

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
VQA_FILES = [
    "v2_OpenEnded_mscoco_train2014_questions.json",
    "v2_mscoco_train2014_annotations.json",
    "v2_OpenEnded_mscoco_val2014_questions.json",
    "v2_mscoco_val2014_annotations.json",
]
SMALL = {"num_train": 24, "num_val": 10, "questions_per_image": 7, "image_size": 64, "seed": 3}


# ----------------------------------------------------------------------------------------------------------------
# Independent ground truth from pixels


def pixel_objects(img: Image.Image) -> list[dict]:
    """Objects recovered from a lossless rendering: colour from the exact RGB, shape from how much of its box it
    fills (square 1, circle ~0.79, triangle ~0.5), size from its width."""
    a = np.asarray(img.convert("RGB"))
    size = a.shape[0]
    ext = object_extents(size)
    objs = []
    for name, rgb in COLOURS.items():
        labels, _ = ndimage.label(np.all(a == rgb, axis=-1), structure=np.ones((3, 3)))  # 8-connected
        for k, (ys, xs) in enumerate(ndimage.find_objects(labels), start=1):
            x0, x1, y0, y1 = xs.start, xs.stop, ys.start, ys.stop
            fill = (labels[ys, xs] == k).sum() / ((x1 - x0) * (y1 - y0))
            shape = "square" if fill > 0.93 else "circle" if fill > 0.66 else "triangle"
            objs.append({"colour": name, "shape": shape, "x0": int(x0), "x1": int(x1), "y0": int(y0), "y1": int(y1),
                         "cx": (x0 + x1) / 2, "size": "large" if x1 - x0 > (ext["small"] + ext["large"]) / 2
                         else "small"})
    known = np.zeros(a.shape[:2], dtype=bool)
    for rgb in COLOURS.values():
        known |= np.all(a == rgb, axis=-1)
    background = a[~known]
    assert (background == background[0]).all(), "every other pixel is the one background colour"
    return objs


def check_scene_pixels(scene: Scene) -> list[dict]:
    """The rendered pixels hold exactly the scene's objects (attributes and boxes); returns the pixel objects."""
    objs = pixel_objects(render_scene(scene))
    got = sorted((o["colour"], o["shape"], o["size"], o["x0"], o["y0"], o["x1"], o["y1"]) for o in objs)
    want = sorted((o.colour, o.shape, o.size, o.x0, o.y0, o.x1, o.y1) for o in scene.objects)
    assert got == want
    return objs


def sel(objs: list[dict], **kw: str) -> list[dict]:
    return [o for o in objs if all(o[k] == v for k, v in kw.items())]


def one(objs: list[dict], **kw: str) -> dict:
    found = sel(objs, **kw)
    assert len(found) == 1, f"referent {kw} is not unique: {len(found)} matches"
    return found[0]


def truth_from_pixels(question: str, objs: list[dict]) -> str:
    """Answer a question text from pixel objects (written independently of the generator's templates)."""
    yn = {True: "yes", False: "no"}
    if m := re.fullmatch(r"is there a (\w+) (\w+)\?", question):
        attr = "colour" if m[1] in COLOURS else "size"
        return yn[bool(sel(objs, **{attr: m[1]}, shape=m[2]))]
    if m := re.fullmatch(r"are there any (\w+)s\?", question):
        return yn[bool(sel(objs, shape=m[1]))]
    if m := re.fullmatch(r"is the (\w+) (\w+)\?", question):
        return yn[one(objs, shape=m[1])["colour"] == m[2]]
    if question == "how many objects are there?":
        return str(len(objs))
    if m := re.fullmatch(r"how many (\w+) objects are there\?", question):
        return str(len(sel(objs, colour=m[1])))
    if m := re.fullmatch(r"how many (\w+)s are there\?", question):
        return str(len(sel(objs, shape=m[1])))
    if m := re.fullmatch(r"what color is the (left|right)most object\?", question):
        sign = 1 if m[1] == "left" else -1
        best = min(objs, key=lambda o: sign * o["cx"])
        for o in objs:
            if o is not best:
                assert sign * (o["cx"] - best["cx"]) >= 3, "leftmost / rightmost must be clear"
                assert (o["x0"] > best["x0"]) if sign == 1 else (o["x1"] < best["x1"])
        assert len(objs) >= 2
        return best["colour"]
    if m := re.fullmatch(r"what color is the (\w+)\?", question):
        return one(objs, shape=m[1])["colour"]
    if m := re.fullmatch(r"what shape is the (\w+) object\?", question):
        return one(objs, colour=m[1])["shape"]
    if m := re.fullmatch(r"what size is the (\w+) (\w+)\?", question):
        return one(objs, colour=m[1], shape=m[2])["size"]
    if m := re.fullmatch(r"what color is the (\w+) (\w+)\?", question):
        return one(objs, size=m[1], shape=m[2])["colour"]
    raise AssertionError(f"unexpected question {question!r}")


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def vqa_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("vqa")
    summary = generate_vqa_scenes(out, noise=0.0, **SMALL)
    return out, summary


# ----------------------------------------------------------------------------------------------------------------
# Scenes


@pytest.mark.parametrize("image_size", [32, 64, 96])
def test_scenes_fit_do_not_overlap_and_render_exactly(image_size):
    rng = np.random.default_rng(image_size)
    ext = object_extents(image_size)
    n_objects = Counter()
    for _ in range(40):
        scene = sample_scene(rng, image_size)
        n_objects[len(scene.objects)] += 1
        assert 1 <= len(scene.objects) <= 5
        for o in scene.objects:
            assert o.extent == ext[o.size] and 0 < o.x0 and o.x1 < image_size and 0 < o.y0 and o.y1 < image_size
        for i, a in enumerate(scene.objects):
            for b in scene.objects[i + 1:]:
                assert a.x1 < b.x0 or b.x1 < a.x0 or a.y1 < b.y0 or b.y1 < a.y0
        check_scene_pixels(scene)
    assert len(n_objects) >= 4  # 1..5 objects all occur
    assert ext["small"] < ext["large"]
    assert object_extents(64) == {"small": 12, "large": 22}


def test_colours_are_distinct():
    rgb = np.array(list(COLOURS.values()), dtype=float)
    d = np.linalg.norm(rgb[:, None] - rgb[None], axis=-1)
    assert d[~np.eye(len(rgb), dtype=bool)].min() > 60


def test_answer_question_unique_referent():
    obj = SceneObject
    scene = Scene(64, (236, 236, 232), (obj("circle", "red", "small", 2, 2, 12),
                                         obj("circle", "blue", "large", 30, 30, 22),
                                         obj("square", "red", "large", 20, 2, 22)))
    assert answer_question(scene, "colour_of_shape", shape="circle") is None  # two circles
    assert answer_question(scene, "colour_of_shape", shape="square") == "red"
    assert answer_question(scene, "shape_of_colour", colour="red") is None
    assert answer_question(scene, "shape_of_colour", colour="blue") == "circle"
    assert answer_question(scene, "colour_of_size_shape", size="small", shape="circle") == "red"
    assert answer_question(scene, "count_shape", shape="triangle") == "0"
    assert answer_question(scene, "colour_of_leftmost") == "red"
    assert answer_question(scene, "colour_of_rightmost") == "blue"
    assert answer_question(scene, "shape_is_colour", shape="circle", colour="red") is None


# ----------------------------------------------------------------------------------------------------------------
# VQAv2


def test_vqa_deterministic(tmp_path, vqa_dir):
    out, _ = vqa_dir
    generate_vqa_scenes(tmp_path / "again", noise=0.0, **SMALL)
    assert tree_bytes(tmp_path / "again") == tree_bytes(out)
    other = build_vqa_splits(**{**SMALL, "seed": 4}, noise=0.0)
    assert [q["question"] for q in other["train2014"].questions] != [
        q["question"] for q in read_json(out / VQA_FILES[0])["questions"]]


def test_vqa_layout_and_json_shapes(vqa_dir):
    out, summary = vqa_dir
    for f in VQA_FILES:
        assert (out / f).is_file()
    ids = {}
    for sub, n in (("train2014", SMALL["num_train"]), ("val2014", SMALL["num_val"])):
        q = read_json(out / f"v2_OpenEnded_mscoco_{sub}_questions.json")
        a = read_json(out / f"v2_mscoco_{sub}_annotations.json")
        assert set(q) == {"info", "license", "data_subtype", "data_type", "task_type", "questions"}
        assert (q["data_subtype"], q["data_type"], q["task_type"]) == (sub, "mscoco", "Open-Ended")
        assert set(a) == {"info", "license", "data_subtype", "annotations"} and a["data_subtype"] == sub
        qs, anns = q["questions"], a["annotations"]
        assert len(qs) == len(anns) == n * SMALL["questions_per_image"]
        assert [x["question_id"] for x in qs] == [x["question_id"] for x in anns]
        assert len({x["question_id"] for x in qs}) == len(qs)
        per_image = Counter()
        for x, ann in zip(qs, anns):
            assert set(x) == {"image_id", "question", "question_id"}
            assert x["question_id"] == x["image_id"] * 1000 + per_image[x["image_id"]]
            per_image[x["image_id"]] += 1
            assert set(ann) == {"question_id", "image_id", "question_type", "answer_type", "multiple_choice_answer",
                                "answers"}
            assert ann["image_id"] == x["image_id"] and x["question"].startswith(ann["question_type"])
            assert ann["answer_type"] in ("yes/no", "number", "other")
            assert [y["answer_id"] for y in ann["answers"]] == list(range(1, 11))
            assert all(y["answer_confidence"] == "yes" and set(y) == {"answer", "answer_confidence", "answer_id"}
                       for y in ann["answers"])
            assert x["question"].endswith("?") and x["question"] == x["question"].lower()
        ids[sub] = set(per_image)
        assert len(ids[sub]) == n
        files = sorted(p.name for p in (out / sub).iterdir())
        assert files == sorted(f"COCO_{sub}_{i:012d}.jpg" for i in ids[sub])
        with Image.open(out / sub / files[0]) as im:
            assert im.format == "JPEG" and im.size == (64, 64) and im.mode == "RGB"
    assert not ids["train2014"] & ids["val2014"]
    assert summary["images"] == SMALL["num_train"] + SMALL["num_val"]
    assert set(summary["answers"]) <= set(ANSWERS)


def test_vqa_every_answer_matches_the_picture(vqa_dir):
    out, _ = vqa_dir
    splits = build_vqa_splits(noise=0.0, **SMALL)
    for sub, split in splits.items():
        qs = read_json(out / f"v2_OpenEnded_mscoco_{sub}_questions.json")["questions"]
        anns = read_json(out / f"v2_mscoco_{sub}_annotations.json")["annotations"]
        assert qs == split.questions and anns == split.annotations  # the files are the in-memory records
        objs = {}
        for image_id, scene in split.scenes.items():
            objs[image_id] = check_scene_pixels(scene)
            with Image.open(out / sub / f"COCO_{sub}_{image_id:012d}.jpg") as im:  # the file shows this scene
                diff = np.abs(np.asarray(im, dtype=float) - np.asarray(render_scene(scene), dtype=float))
            assert np.median(diff) <= 2 and diff.mean() < 6  # JPEG (4:2:0 chroma) blurs colour edges only
        for q, ann in zip(qs, anns):
            truth = truth_from_pixels(q["question"], objs[q["image_id"]])
            assert ann["multiple_choice_answer"] == truth, q
            assert [a["answer"] for a in ann["answers"]] == [truth] * 10  # noise=0: ten identical answers
        texts = Counter((q["image_id"], q["question"]) for q in qs)
        assert max(texts.values()) == 1  # no repeated question for one image


def test_vqa_mix_balance_and_zero_counts():
    splits = build_vqa_splits(num_train=160, num_val=0, questions_per_image=7, seed=1, captions=False)
    split = splits["train2014"]
    qobjs = list(split.question_objects.values())
    types = Counter(q.answer_type for q in qobjs)
    n = len(qobjs)
    assert n == 160 * 7
    assert types["yes/no"] / n == pytest.approx(0.35, abs=0.06)
    assert types["number"] / n == pytest.approx(0.25, abs=0.06)
    assert types["other"] / n == pytest.approx(0.40, abs=0.06)
    per_template = Counter(q.template for q in qobjs)
    assert len(per_template) == 13
    for t in ("exist_colour_shape", "exist_size_shape", "any_shape", "shape_is_colour"):
        yn = Counter(q.answer for q in qobjs if q.template == t)
        assert abs(yn["yes"] - yn["no"]) <= max(2, 0.1 * (yn["yes"] + yn["no"])), (t, yn)
    counts = [q.answer for q in qobjs if q.template in ("count_shape", "count_colour")]
    assert 0 < counts.count("0") < 0.35 * len(counts)
    for qid, q in split.question_objects.items():  # the stored answer is the answer function's, never ambiguous
        assert answer_question(split.scenes[qid // 1000], q.template, **q.params) == q.answer

    only = build_vqa_splits(num_train=20, num_val=0, seed=2, captions=False, mix={"yes/no": 1.0, "count_all": 0})
    assert {q.answer_type for q in only["train2014"].question_objects.values()} == {"yes/no"}
    shape_only = build_vqa_splits(num_train=20, num_val=0, seed=2, captions=False, mix={"shape_of_colour": 1})
    assert {q.template for q in shape_only["train2014"].question_objects.values()} == {"shape_of_colour"}
    with pytest.raises(ValueError, match="unknown mix key"):
        build_vqa_splits(num_train=1, num_val=0, mix={"colour": 1.0})


def test_vqa_annotator_noise():
    split = build_vqa_splits(num_train=80, num_val=0, seed=5, noise=0.1, captions=False)["train2014"]
    correct = []
    for ann in split.annotations:
        q = split.question_objects[ann["question_id"]]
        answers = [a["answer"] for a in ann["answers"]]
        correct.append(answers.count(q.answer))
        assert ann["multiple_choice_answer"] == Counter(answers).most_common(1)[0][0] or \
            answers.count(ann["multiple_choice_answer"]) == Counter(answers).most_common(1)[0][1]
        for a in answers:  # wrong answers are plausible: same kind as the truth
            if q.answer_type == "number":
                assert a.isdigit() and abs(int(a) - int(q.answer)) <= 1
            elif q.answer_type == "yes/no":
                assert a in ("yes", "no")
            else:
                kind = [set(COLOURS), set(SHAPES), {"small", "large"}]
                assert any(a in k and q.answer in k for k in kind)
    correct = np.array(correct)
    assert correct.mean() == pytest.approx(9.0, abs=0.3)
    assert (correct >= 8).mean() > 0.85
    assert (correct < 10).any()


def test_captions_and_karpathy(vqa_dir):
    out, _ = vqa_dir
    splits = build_vqa_splits(noise=0.0, **SMALL)
    karpathy = read_json(out / "dataset_coco.json")
    assert karpathy["dataset"] == "coco" and set(karpathy) == {"dataset", "images"}
    by_id = {img["cocoid"]: img for img in karpathy["images"]}
    sentids = [s["sentid"] for img in karpathy["images"] for s in img["sentences"]]
    assert len(set(sentids)) == len(sentids)
    for k, img in enumerate(karpathy["images"]):
        assert img["imgid"] == k and img["sentids"] == [s["sentid"] for s in img["sentences"]]
        assert all(s["imgid"] == k and s["tokens"] == re.findall(r"[a-z0-9]+", s["raw"].lower())
                   for s in img["sentences"])
    for sub, split in splits.items():
        coco = read_json(out / "annotations" / f"captions_{sub}.json")
        assert {"info", "licenses", "images", "annotations"} <= set(coco)
        assert {i["id"] for i in coco["images"]} == set(split.scenes)
        for i in coco["images"]:
            assert i["file_name"] == f"COCO_{sub}_{i['id']:012d}.jpg" and (i["width"], i["height"]) == (64, 64)
        caps = {}
        for a in coco["annotations"]:
            caps.setdefault(a["image_id"], []).append(a["caption"])
        assert len({a["id"] for a in coco["annotations"]}) == len(coco["annotations"])
        ks = Counter(by_id[i]["split"] for i in split.scenes)
        if sub == "train2014":
            assert ks == {"train": SMALL["num_train"]}
        else:
            assert ks == {"val": SMALL["num_val"] // 2, "test": SMALL["num_val"] - SMALL["num_val"] // 2}
        for image_id, scene in split.scenes.items():
            assert by_id[image_id]["filepath"] == sub
            assert by_id[image_id]["filename"] == f"COCO_{sub}_{image_id:012d}.jpg"
            assert [s["raw"] for s in by_id[image_id]["sentences"]] == caps[image_id]
            check_captions(caps[image_id], check_scene_pixels(scene))


def check_captions(caps: list[str], objs: list[dict]) -> None:
    assert len(caps) == 5
    m = re.fullmatch(r"(\w+) objects? on a plain background: (.*)\.", caps[0])
    assert m and WORDS.index(m[1]) == len(objs)
    listed = [tuple(x.split()[1:]) for x in re.split(r", | and ", m[2])]
    left_to_right = sorted(objs, key=lambda o: (o["cx"], (o["y0"] + o["y1"]) / 2))
    assert listed == [(o["size"], o["colour"], o["shape"]) for o in left_to_right]
    m = re.fullmatch(r"(?:a picture|an image|a drawing) of (.*)\.", caps[1])
    assert m and sorted(tuple(x.split()[1:]) for x in re.split(r", | and ", m[1])) == sorted(listed)
    m = re.fullmatch(r"the picture shows (.*)\.", caps[2])
    counted = {x.split()[1].rstrip("s"): WORDS.index(x.split()[0]) for x in re.split(r", | and ", m[1])}
    assert counted == dict(Counter(o["shape"] for o in objs))
    m = re.fullmatch(r"(.*) on a light background\.", caps[3])
    counted = {x.split()[1]: WORDS.index(x.split()[0]) for x in re.split(r", | and ", m[1])}
    assert counted == dict(Counter(o["colour"] for o in objs))
    if len(objs) == 1:
        o = objs[0]
        assert caps[4] == f"a single {o['size']} {o['colour']} {o['shape']}."
    else:
        m = re.fullmatch(r"a (\w+) (\w+) (to the left of|above) a (\w+) (\w+)\.", caps[4])
        assert m
        firsts, seconds = sel(objs, colour=m[1], shape=m[2]), sel(objs, colour=m[4], shape=m[5])
        assert any((a["x1"] <= b["x0"]) if m[3] == "to the left of" else (a["y1"] <= b["y0"])
                   for a in firsts for b in seconds if a is not b)


def test_blank_image_copy(tmp_path, vqa_dir):
    out, _ = vqa_dir
    info = blank_image_copy(out, tmp_path / "blank", split="val2014")
    dst = tmp_path / "blank"
    for f in ("v2_OpenEnded_mscoco_val2014_questions.json", "v2_mscoco_val2014_annotations.json"):
        assert (dst / f).read_bytes() == (out / f).read_bytes()
    names = sorted(p.name for p in (out / "val2014").iterdir())
    assert sorted(p.name for p in (dst / "val2014").iterdir()) == names
    assert info["images"] == SMALL["num_val"] and info["questions"] == SMALL["num_val"] * 7
    for name in names:
        with Image.open(dst / "val2014" / name) as im, Image.open(out / "val2014" / name) as orig:
            assert im.format == "JPEG" and im.size == orig.size
            a, o = np.asarray(im, dtype=float), np.asarray(orig, dtype=float)
        assert a.std(axis=(0, 1)).max() < 1.0  # blank
        assert np.abs(a[0, 0] - o[0, 0]).max() < 4  # the picture's own background
    with pytest.raises(DatasetError, match="not found"):  # a DatasetError (one CLI error line), no traceback
        blank_image_copy(tmp_path / "nothing", tmp_path / "x")


# ----------------------------------------------------------------------------------------------------------------
# NLVR2


def statement_from_pixels(sentence: str, left: list[dict], right: list[dict]) -> bool:
    side = {"left": left, "right": right}
    if m := re.fullmatch(r"the (left|right) image has more objects than the (left|right) image\.", sentence):
        return len(side[m[1]]) > len(side[m[2]])
    if m := re.fullmatch(r"the (left|right) image has more (\w+)s than the (left|right) image\.", sentence):
        return len(sel(side[m[1]], shape=m[2])) > len(sel(side[m[3]], shape=m[2]))
    if sentence == "both images contain the same number of objects.":
        return len(left) == len(right)
    if m := re.fullmatch(r"both images contain a (\w+) object\.", sentence):
        return bool(sel(left, colour=m[1])) and bool(sel(right, colour=m[1]))
    if m := re.fullmatch(r"exactly one image contains a (\w+) object\.", sentence):
        return bool(sel(left, colour=m[1])) != bool(sel(right, colour=m[1]))
    if m := re.fullmatch(r"there are exactly (\w+) objects in total\.", sentence):
        return WORDS.index(m[1]) == len(left) + len(right)
    if m := re.fullmatch(r"the (left|right) image contains a (\w+) (\w+)\.", sentence):
        return bool(sel(side[m[1]], colour=m[2], shape=m[3]))
    if m := re.fullmatch(r"neither image contains a (\w+)\.", sentence):
        return not sel(left, shape=m[1]) and not sel(right, shape=m[1])
    raise AssertionError(f"unexpected statement {sentence!r}")


def test_nlvr2_layout_truth_and_determinism(tmp_path):
    summary = generate_nlvr2_scenes(tmp_path / "a", num_train=40, num_dev=14, seed=2)
    out = tmp_path / "a"
    generate_nlvr2_scenes(tmp_path / "b", num_train=40, num_dev=14, seed=2)
    assert tree_bytes(tmp_path / "b") == tree_bytes(out)
    assert summary["splits"]["train"]["examples"] == 40 and summary["splits"]["dev"]["examples"] == 14
    for split, n in (("train", 40), ("dev", 14)):
        lines = (out / f"{split}.json").read_text(encoding="utf-8").splitlines()
        assert len(lines) == n
        recs = [json.loads(line) for line in lines]
        assert len({r["identifier"] for r in recs}) == n
        labels = Counter(r["label"] for r in recs)
        assert set(labels) <= {"True", "False"} and abs(labels["True"] - labels["False"]) <= 0.2 * n
        images = set()
        for r in recs:
            keys = ["identifier", "sentence", "label", "directory", "left_url", "right_url"]
            assert list(r) == (keys if split == "train" else [k for k in keys if k != "directory"])
            assert re.fullmatch(rf"{split}-\d+-\d+-\d+", r["identifier"])
            stem = r["identifier"].rsplit("-", 1)[0]
            folder = out / split / r["directory"] if split == "train" else out / split
            if split == "train":
                assert r["directory"] == str(int(stem.split("-")[1]) % 100)
            paths = [folder / f"{stem}-img0.png", folder / f"{stem}-img1.png"]
            objs = []
            for p in paths:
                with Image.open(p) as im:
                    assert im.format == "PNG" and im.size == (64, 64)
                    objs.append(pixel_objects(im))
                images.add(p)
            assert statement_from_pixels(r["sentence"], *objs) == (r["label"] == "True"), r
        on_disk = {p for p in (out / split).rglob("*.png")}
        assert on_disk == images
    examples = build_nlvr2_split("dev", 14, seed=2)
    assert [e.identifier for e in examples] == [json.loads(x)["identifier"]
                                                for x in (out / "dev.json").read_text().splitlines()]


def test_nlvr2_balance_and_templates():
    examples = build_nlvr2_split("train", 300, seed=7)
    labels = Counter(e.label for e in examples)
    assert abs(labels[True] - labels[False]) <= 10
    by_template = Counter(e.template for e in examples)
    assert len(by_template) == 8
    for t in by_template:
        c = Counter(e.label for e in examples if e.template == t)
        assert abs(c[True] - c[False]) <= max(3, 0.15 * by_template[t]), (t, c)


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError):
        build_vqa_splits(num_train=1, num_val=0, image_size=16)
    with pytest.raises(ValueError):
        build_vqa_splits(num_train=1, num_val=0, noise=1.5)
    with pytest.raises(ValueError):
        build_vqa_splits(num_train=-1, num_val=0)
    with pytest.raises(ValueError):
        generate_nlvr2_scenes(tmp_path, num_train=1, num_dev=0, image_size=8)
