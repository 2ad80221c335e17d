"""Procedural scenes (coloured circles, squares and triangles on a light background) written as vision-language
datasets in the official file formats, so ViLT fine-tuning and evaluation run with no downloads.

* `generate_vqa_scenes(out_dir)`: VQAv2 (questions + annotations json, `train2014/COCO_train2014_*.jpg`, ...), and
  optionally COCO captions (`annotations/captions_*2014.json`) and a Karpathy-split `dataset_coco.json`.
* `blank_image_copy(src, dst)`: the same questions with every picture replaced by its blank background (a
  "language prior only" control).
* `generate_nlvr2_scenes(out_dir)`: NLVR2 (`train.json` / `dev.json` json lines, `train/{directory}/*-img0.png`,
  `dev/*-img0.png`): true/false statements about two scenes.

Every question / statement is answerable from the picture: referring expressions ("the circle") are only asked
when exactly one object matches, "leftmost" only when one object is clearly left of all others. The ground
truth comes from the scene metadata (`Scene`, `answer_question`, `statement_truth`); `build_vqa_splits` and
`build_nlvr2_split` return the in-memory records (scenes included) the writers save, deterministically from the seed.

This module writes the datasets; scenes are sampled and drawn in `vitkit.data.scene_drawing`, and questions,
answers, captions and statements come from `vitkit.data.scene_text` (their public names are importable from here
too).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError
from ..processing.images import DatasetError, load_image
from ..utils.files import atomic_save_image, atomic_write_bytes, atomic_write_text
from .scene_drawing import (  # noqa: F401  (re-exported: the names `vitkit.data.scenes` has always offered)
    BACKGROUND,
    COLOUR_NAMES,
    COLOURS,
    MAX_OBJECTS,
    SHAPES,
    SIZES,
    Scene,
    SceneObject,
    check_image_size,
    object_extents,
    render_scene,
    sample_scene,
)
from .scene_text import (  # noqa: F401  (re-exported, as above)
    ANSWER_TYPES,
    ANSWERS,
    DEFAULT_MIX,
    NLVR2_TEMPLATES,
    NUM_ANNOTATORS,
    NUMBER_ANSWERS,
    TEMPLATES,
    YES_NO,
    ZERO_COUNT_PROB,
    Question,
    QuestionSampler,
    annotator_answers,
    answer_question,
    caption_tokens,
    majority_answer,
    number_word,
    question_text,
    resolve_mix,
    sample_question,
    sample_statement,
    scene_captions,
    statement_text,
    statement_truth,
)

# ----------------------------------------------------------------------------------------------------------------
# VQAv2 writer

_VQA_INFO = {"description": "vitkit procedural scenes in the VQA v2 layout", "url": "", "version": "2.0",
             "year": 2017, "contributor": "vitkit", "date_created": "2017-04-26 17:00:44"}
_VQA_LICENSE = {"url": "http://creativecommons.org/licenses/by/4.0/", "name": "Creative Commons Attribution 4.0"}
_COCO_INFO = {"description": "vitkit procedural scenes in the COCO captions layout", "url": "", "version": "1.0",
              "year": 2014, "contributor": "vitkit", "date_created": "2015-01-27 09:11:52.357475"}
_COCO_LICENSES = [{"url": "http://creativecommons.org/licenses/by/4.0/", "id": 1,
                   "name": "Creative Commons Attribution 4.0"}]
VQA_SUBTYPES = ("train2014", "val2014")


def vqa_image_name(subtype: str, image_id: int) -> str:
    """COCO's image file name for `image_id` in `subtype` ("train2014", ...)."""
    return f"COCO_{subtype}_{image_id:012d}.jpg"


def vqa_question_file(subtype: str) -> str:
    """The official VQAv2 questions file name of `subtype`."""
    return f"v2_OpenEnded_mscoco_{subtype}_questions.json"


def vqa_annotation_file(subtype: str) -> str:
    """The official VQAv2 annotations file name of `subtype`."""
    return f"v2_mscoco_{subtype}_annotations.json"


@dataclass
class VQASplit:
    """One split in memory: scenes by image id, the official question / annotation records, captions by image id
    (empty when not generated) and the Question objects (with their template) by question id."""

    subtype: str
    scenes: dict[int, Scene]
    questions: list[dict]
    annotations: list[dict]
    captions: dict[int, list[str]]
    question_objects: dict[int, Question]


def _check_common(num: int, name: str) -> None:
    if int(num) != num or num < 0:
        raise ConfigError(f"{name} must be a non-negative integer, got {num!r}")


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *keys])


def build_vqa_splits(*, num_train: int = 3000, num_val: int = 500, questions_per_image: int = 7,
                     image_size: int = 64, seed: int = 0, noise: float = 0.1, captions: bool = True,
                     mix: Mapping[str, float] | None = None) -> dict[str, VQASplit]:
    """The in-memory content `generate_vqa_scenes` writes, keyed "train2014" / "val2014". Train image ids are
    1..num_train, val ids num_train+1..num_train+num_val; question_id = image_id * 1000 + k. The arguments are
    `generate_vqa_scenes`'s (its Args section says what each means), without `out_dir`."""
    _check_common(num_train, "num_train")
    _check_common(num_val, "num_val")
    check_image_size(image_size)
    if not 1 <= questions_per_image <= 999:
        raise ConfigError(f"questions_per_image must be in 1..999, got {questions_per_image}")
    if not 0.0 <= noise <= 1.0:
        raise ConfigError(f"noise must be in [0, 1], got {noise}")
    resolve_mix(mix)  # validate before any work
    splits: dict[str, VQASplit] = {}
    first_id = 1
    for split_idx, (subtype, num) in enumerate(zip(VQA_SUBTYPES, (num_train, num_val))):
        scene_rng, q_rng, ann_rng, cap_rng = (_rng(seed, split_idx, stream) for stream in range(4))
        sampler = QuestionSampler(mix, q_rng)
        split = VQASplit(subtype, {}, [], [], {}, {})
        for image_id in range(first_id, first_id + num):
            scene = sample_scene(scene_rng, image_size)
            split.scenes[image_id] = scene
            for k, q in enumerate(sampler.questions(scene, questions_per_image)):
                qid = image_id * 1000 + k
                answers = annotator_answers(q.answer, ann_rng, noise)
                split.question_objects[qid] = q
                split.questions.append({"image_id": image_id, "question": q.text, "question_id": qid})
                split.annotations.append({
                    "question_type": q.question_type,
                    "multiple_choice_answer": majority_answer(answers, q.answer),
                    "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": j + 1}
                                for j, a in enumerate(answers)],
                    "image_id": image_id,
                    "answer_type": q.answer_type,
                    "question_id": qid,
                })
            if captions:
                split.captions[image_id] = scene_captions(scene, cap_rng)
        splits[subtype] = split
        first_id += num
    return splits


def _write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(obj))


def _write_image(path: Path, image: Image.Image, **params: object) -> None:
    """Generated pictures: complete or absent (temp + rename), without an fsync each (regenerated after a crash)."""
    atomic_save_image(path, image, durable=False, **params)


def _split_summary(split: VQASplit) -> dict:
    types = Counter(a["answer_type"] for a in split.annotations)
    templates = Counter(q.template for q in split.question_objects.values())
    yes_no: dict[str, dict[str, int]] = {}
    for q in split.question_objects.values():
        if q.answer_type == "yes/no":
            yes_no.setdefault(q.template, {"yes": 0, "no": 0})[q.answer] += 1
    correct = [sum(x["answer"] == split.question_objects[a["question_id"]].answer for x in a["answers"])
               for a in split.annotations]
    return {"images": len(split.scenes), "questions": len(split.questions),
            "answer_types": {t: types[t] for t in ANSWER_TYPES}, "templates": dict(sorted(templates.items())),
            "yes_no": yes_no, "mean_correct_annotators": float(np.mean(correct)) if correct else 0.0,
            "captions": sum(len(c) for c in split.captions.values())}


def generate_vqa_scenes(out_dir: str | Path, *, num_train: int = 3000, num_val: int = 500,
                        questions_per_image: int = 7, image_size: int = 64, seed: int = 0, noise: float = 0.1,
                        captions: bool = True, mix: Mapping[str, float] | None = None) -> dict:
    """Write a VQAv2-format dataset of procedural scenes to `out_dir` (see the module docstring for the files).
    Returns a summary (counts per split, answer types, templates, yes/no balance, the answer set, seconds).

    Args:
        out_dir: the folder to write (created if missing).
        num_train: training images (ids 1..num_train).
        num_val: validation images (the ids after them).
        questions_per_image: distinct questions asked about each image (1..999).
        image_size: the side of the square images, >= 32 pixels.
        seed: everything is drawn from it, so a seed gives the same dataset.
        noise: the probability that each of the 10 annotators gives a plausible wrong answer.
        captions: also write five captions per image (COCO captions files and a Karpathy split).
        mix: relative question weights by template name (`TEMPLATES`) and / or answer type ("yes/no",
            "number", "other", shared equally by its templates); None: `DEFAULT_MIX` (35% yes/no, 25% number,
            40% other).
    """
    start = time.perf_counter()
    out = Path(out_dir)
    splits = build_vqa_splits(num_train=num_train, num_val=num_val, questions_per_image=questions_per_image,
                              image_size=image_size, seed=seed, noise=noise, captions=captions, mix=mix)
    for subtype, split in splits.items():
        img_dir = out / subtype
        img_dir.mkdir(parents=True, exist_ok=True)
        for image_id, scene in split.scenes.items():
            _write_image(img_dir / vqa_image_name(subtype, image_id), render_scene(scene), quality=95)
        _write_json(out / vqa_question_file(subtype), {
            "info": _VQA_INFO, "task_type": "Open-Ended", "data_type": "mscoco", "license": _VQA_LICENSE,
            "data_subtype": subtype, "questions": split.questions})
        _write_json(out / vqa_annotation_file(subtype), {
            "info": _VQA_INFO, "license": _VQA_LICENSE, "data_subtype": subtype, "annotations": split.annotations})
    if captions:
        _write_captions(out, splits)
    answers = sorted({x["answer"] for s in splits.values() for a in s.annotations for x in a["answers"]}
                     | {a["multiple_choice_answer"] for s in splits.values() for a in s.annotations})
    per_split = {k: _split_summary(s) for k, s in splits.items()}
    return {
        "out_dir": str(out),
        "images": sum(v["images"] for v in per_split.values()),
        "questions": sum(v["questions"] for v in per_split.values()),
        "answer_types": {t: sum(v["answer_types"][t] for v in per_split.values()) for t in ANSWER_TYPES},
        "answers": answers,
        "splits": per_split,
        "image_size": image_size,
        "seed": seed,
        "noise": noise,
        "seconds": time.perf_counter() - start,
    }


def _write_captions(out: Path, splits: dict[str, VQASplit]) -> None:
    karpathy = []
    sentid = 0
    for subtype, split in splits.items():
        images, anns = [], []
        n = len(split.scenes)
        for idx, (image_id, scene) in enumerate(split.scenes.items()):
            name = vqa_image_name(subtype, image_id)
            images.append({"license": 1, "file_name": name, "coco_url": "", "height": scene.image_size,
                           "width": scene.image_size, "date_captured": "", "flickr_url": "", "id": image_id})
            sentences = []
            for j, cap in enumerate(split.captions[image_id]):
                anns.append({"image_id": image_id, "id": image_id * 10 + j, "caption": cap})
                sentences.append({"tokens": caption_tokens(cap), "raw": cap, "imgid": len(karpathy),
                                  "sentid": sentid + j})
            if subtype == "train2014":
                ksplit = "train"
            else:
                ksplit = "val" if idx < n // 2 else "test"
            karpathy.append({"filepath": subtype, "sentids": [s["sentid"] for s in sentences], "filename": name,
                             "imgid": len(karpathy), "split": ksplit, "sentences": sentences, "cocoid": image_id})
            sentid += len(sentences)
        _write_json(out / "annotations" / f"captions_{subtype}.json",
                    {"info": _COCO_INFO, "licenses": _COCO_LICENSES, "images": images, "annotations": anns})
    _write_json(out / "dataset_coco.json", {"images": karpathy, "dataset": "coco"})


def blank_image_copy(src_dir: str | Path, dst_dir: str | Path, split: str = "val2014") -> dict:
    """Copy `split`'s VQA question / annotation files from `src_dir` to `dst_dir` and write, under the same file
    names, a blank image (the source image's background colour, same size) for every image the questions use:
    the same questions with the picture taken away. Returns {"split", "images", "questions", "out_dir"}."""
    src, dst = Path(src_dir), Path(dst_dir)
    qfile, afile = src / vqa_question_file(split), src / vqa_annotation_file(split)
    for f in (qfile, afile):
        if not f.is_file():
            raise DatasetError(f"{f} not found (is {src} a VQA directory with split {split!r}?)")
    from .vqa import load_vqa_split  # (vqa needs nothing from here)

    questions = load_vqa_split(src, split)  # the files' shape and every image checked first: DatasetError
    (dst / split).mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dst / qfile.name, qfile.read_bytes())
    atomic_write_bytes(dst / afile.name, afile.read_bytes())
    image_ids = sorted({q.image_id for q in questions})
    for image_id in image_ids:
        name = vqa_image_name(split, image_id)
        arr = np.asarray(load_image(src / split / name))
        border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
        colour = tuple(int(v) for v in np.median(border, axis=0))
        _write_image(dst / split / name, Image.new("RGB", (arr.shape[1], arr.shape[0]), colour), quality=95)
    return {"split": split, "images": len(image_ids), "questions": len(questions), "out_dir": str(dst)}


# ----------------------------------------------------------------------------------------------------------------
# NLVR2 writer

PAIRS_PER_SET = 2
SENTENCES_PER_PAIR = 2


@dataclass(frozen=True)
class NLVR2Example:
    """One generated NLVR2 statement about a pair of scenes, with its truth and where its images go."""

    identifier: str  # "{split}-{set}-{pair}-{sentence}"
    sentence: str
    label: bool
    template: str
    left: Scene
    right: Scene
    directory: str | None  # train only

    @property
    def pair_id(self) -> str:
        """The identifier without its trailing sentence index: the stem of the pair's image names."""
        return self.identifier.rsplit("-", 1)[0]

    def image_paths(self) -> tuple[str, str]:
        """The left and right image paths relative to the dataset folder, in NLVR2's naming."""
        split = self.identifier.split("-", 1)[0]
        folder = f"{split}/{self.directory}" if self.directory is not None else split
        return f"{folder}/{self.pair_id}-img0.png", f"{folder}/{self.pair_id}-img1.png"

    def record(self) -> dict:
        """The line NLVR2's `{split}.json` holds for this statement."""
        rec: dict = {"identifier": self.identifier, "sentence": self.sentence, "label": str(self.label)}
        if self.directory is not None:
            rec["directory"] = self.directory
        rec["left_url"] = ""
        rec["right_url"] = ""
        return rec


def build_nlvr2_split(split: str, num: int, *, image_size: int = 64, seed: int = 0) -> list[NLVR2Example]:
    """`num` statements for `split` ("train" gets a `directory`, anything else is flat): pairs of scenes with
    SENTENCES_PER_PAIR statements each, PAIRS_PER_SET pairs per set, labels balanced per template."""
    _check_common(num, "num")
    check_image_size(image_size)
    split_idx = {"train": 0, "dev": 1, "test1": 2}.get(split, 3)
    scene_rng, s_rng = _rng(seed, 100 + split_idx, 0), _rng(seed, 100 + split_idx, 1)
    counts: dict[str, Counter] = {t: Counter() for t in NLVR2_TEMPLATES}
    names = list(NLVR2_TEMPLATES)
    examples: list[NLVR2Example] = []
    pair_index = 0
    while len(examples) < num:
        set_id, pair = divmod(pair_index, PAIRS_PER_SET)
        pair_index += 1
        left, right = sample_scene(scene_rng, image_size), sample_scene(scene_rng, image_size)
        directory = str(set_id % 100) if split == "train" else None
        seen: set[str] = set()
        for k in range(min(SENTENCES_PER_PAIR, num - len(examples))):
            for i in s_rng.permutation(len(names)):
                t = names[int(i)]
                c = counts[t]
                want = c[True] < c[False] if c[True] != c[False] else bool(s_rng.random() < 0.5)
                got = sample_statement(left, right, t, want, s_rng, seen)
                if got is not None:
                    text, _ = got
                    seen.add(text)
                    c[want] += 1
                    examples.append(NLVR2Example(f"{split}-{set_id}-{pair}-{k}", text, want, t, left, right,
                                                 directory))
                    break
    return examples


def generate_nlvr2_scenes(out_dir: str | Path, *, num_train: int = 2000, num_dev: int = 400, image_size: int = 64,
                          seed: int = 0) -> dict:
    """Write an NLVR2-format dataset of procedural scene pairs: `train.json` / `dev.json` (json lines),
    `train/{directory}/{split}-{set}-{pair}-img{0,1}.png`, `dev/dev-{set}-{pair}-img{0,1}.png`. Returns a summary
    (examples, pairs, True / False counts and templates per split, seconds).

    Args:
        out_dir: the folder to write (created if missing).
        num_train: training statements.
        num_dev: dev statements.
        image_size: the side of the square images, >= 32 pixels.
        seed: everything is drawn from it, so a seed gives the same dataset.
    """
    start = time.perf_counter()
    out = Path(out_dir)
    summary: dict = {"out_dir": str(out), "splits": {}, "image_size": image_size, "seed": seed}
    for split, num in (("train", num_train), ("dev", num_dev)):
        examples = build_nlvr2_split(split, num, image_size=image_size, seed=seed)
        out.mkdir(parents=True, exist_ok=True)
        written: set[str] = set()
        for ex in examples:
            if ex.pair_id in written:
                continue
            written.add(ex.pair_id)
            for scene, rel in zip((ex.left, ex.right), ex.image_paths()):
                path = out / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                _write_image(path, render_scene(scene))
        atomic_write_text(out / f"{split}.json", "".join(json.dumps(ex.record()) + "\n" for ex in examples))
        labels = Counter(ex.label for ex in examples)
        summary["splits"][split] = {"examples": len(examples), "pairs": len(written), "images": 2 * len(written),
                                    "true": labels[True], "false": labels[False],
                                    "templates": dict(sorted(Counter(ex.template for ex in examples).items()))}
    summary["seconds"] = time.perf_counter() - start
    return summary
