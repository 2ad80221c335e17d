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
"""

from __future__ import annotations

import json
import re
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..errors import ConfigError
from ..processing.images import DatasetError, load_image
from ..utils.files import atomic_save_image, atomic_write_bytes, atomic_write_text

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 165, 60),
    "blue": (35, 75, 220),
    "yellow": (240, 210, 25),
    "purple": (135, 50, 175),
    "orange": (245, 135, 20),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)
SIZES: tuple[str, ...] = ("small", "large")
BACKGROUND: tuple[int, int, int] = (236, 236, 232)
MAX_OBJECTS = 5
NUMBER_ANSWERS: tuple[str, ...] = tuple(str(n) for n in range(MAX_OBJECTS + 1))
YES_NO: tuple[str, ...] = ("yes", "no")
# Every answer a question (or a noisy annotator) can give.
ANSWERS: tuple[str, ...] = (*YES_NO, *NUMBER_ANSWERS, *COLOUR_NAMES, *SHAPES, *SIZES)
NUM_ANNOTATORS = 10
ANSWER_TYPES: tuple[str, ...] = ("yes/no", "number", "other")

_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def number_word(n: int) -> str:
    return _WORDS[n] if 0 <= n < len(_WORDS) else str(n)


def object_extents(image_size: int) -> dict[str, int]:
    """Side length in pixels of a small / large object: 12 / 22 px at 64x64, scaled with the image size."""
    return {"small": max(4, round(12 * image_size / 64)), "large": max(7, round(22 * image_size / 64))}


def _gap(image_size: int) -> int:  # minimum free pixels between two objects' boxes
    return max(2, round(2 * image_size / 64))


def _margin(image_size: int) -> int:  # minimum free pixels between an object and the image border
    return max(1, round(image_size / 64))


def _separation(image_size: int) -> float:  # how much further left "the leftmost object" must be than the rest
    return max(3.0, 4 * image_size / 64)


# ----------------------------------------------------------------------------------------------------------------
# Scenes


@dataclass(frozen=True)
class SceneObject:
    """One object: its square bounding box is columns x0..x0+extent-1, rows y0..y0+extent-1."""

    shape: str
    colour: str
    size: str
    x0: int
    y0: int
    extent: int

    @property
    def x1(self) -> int:  # exclusive
        return self.x0 + self.extent

    @property
    def y1(self) -> int:  # exclusive
        return self.y0 + self.extent

    @property
    def cx(self) -> float:
        return self.x0 + self.extent / 2

    @property
    def cy(self) -> float:
        return self.y0 + self.extent / 2

    @property
    def name(self) -> str:
        return f"{self.size} {self.colour} {self.shape}"

    def matches(self, shape: str | None = None, colour: str | None = None, size: str | None = None) -> bool:
        return ((shape is None or self.shape == shape) and (colour is None or self.colour == colour)
                and (size is None or self.size == size))


@dataclass(frozen=True)
class Scene:
    image_size: int
    background: tuple[int, int, int]
    objects: tuple[SceneObject, ...]

    def find(self, shape: str | None = None, colour: str | None = None, size: str | None = None) -> list[SceneObject]:
        return [o for o in self.objects if o.matches(shape, colour, size)]

    def count(self, shape: str | None = None, colour: str | None = None, size: str | None = None) -> int:
        return len(self.find(shape, colour, size))

    def unique(self, shape: str | None = None, colour: str | None = None,
               size: str | None = None) -> SceneObject | None:
        """The one object matching the description, or None when none or several match."""
        found = self.find(shape, colour, size)
        return found[0] if len(found) == 1 else None

    def extreme(self, side: str) -> SceneObject | None:
        """The clearly leftmost / rightmost object (centre and edge beyond every other object's by a margin), or
        None (fewer than two objects, or no clear winner)."""
        if side not in ("left", "right"):
            raise ConfigError(f"side must be 'left' or 'right', got {side!r}")
        if len(self.objects) < 2:
            return None
        sep = _separation(self.image_size)
        sign = 1.0 if side == "left" else -1.0
        best = min(self.objects, key=lambda o: sign * o.cx)
        for o in self.objects:
            if o is best:
                continue
            if sign * (o.cx - best.cx) < sep:
                return None
            if (side == "left" and o.x0 <= best.x0) or (side == "right" and o.x1 >= best.x1):
                return None
        return best

    def to_dict(self) -> dict:
        return {"image_size": self.image_size, "background": list(self.background),
                "objects": [{"shape": o.shape, "colour": o.colour, "size": o.size, "x0": o.x0, "y0": o.y0,
                             "extent": o.extent} for o in self.objects]}


def _check_image_size(image_size: int) -> None:
    if int(image_size) != image_size or image_size < 32:
        raise ConfigError(f"image_size must be an integer >= 32, got {image_size!r}")


def sample_scene(rng: np.random.Generator, image_size: int = 64, *, num_objects: int | None = None,
                 max_objects: int = MAX_OBJECTS, tint: int = 8) -> Scene:
    """A random scene: `num_objects` (default uniform in 1..max_objects) non-overlapping objects, each fully inside
    the image with a free gap around it, on the light background shifted by up to +-`tint` per channel."""
    _check_image_size(image_size)
    if not 1 <= max_objects <= MAX_OBJECTS:
        raise ConfigError(f"max_objects must be in 1..{MAX_OBJECTS}, got {max_objects}")
    if num_objects is not None and not 1 <= num_objects <= MAX_OBJECTS:
        raise ConfigError(f"num_objects must be in 1..{MAX_OBJECTS}, got {num_objects}")
    extents = object_extents(image_size)
    gap, margin = _gap(image_size), _margin(image_size)
    shift = rng.integers(-tint, tint + 1, size=3) if tint > 0 else np.zeros(3, dtype=np.int64)
    background = tuple(int(np.clip(c + s, 0, 255)) for c, s in zip(BACKGROUND, shift))
    n = int(num_objects) if num_objects is not None else int(rng.integers(1, max_objects + 1))
    attr_high = np.array([len(SHAPES), len(COLOUR_NAMES), len(SIZES)])
    for _ in range(200):
        objects: list[SceneObject] = []
        for shape_i, colour_i, size_i in rng.integers(0, attr_high, size=(n, 3)).tolist():
            size = SIZES[size_i]
            e = extents[size]
            # 64 candidate top-left corners at once; keep the first whose box (plus the gap) is clear of the others
            xy = rng.integers(margin, image_size - margin - e + 1, size=(64, 2))
            ok = np.ones(len(xy), dtype=bool)
            for o in objects:
                ok &= ((xy[:, 0] >= o.x1 + gap) | (xy[:, 0] + e + gap <= o.x0)
                       | (xy[:, 1] >= o.y1 + gap) | (xy[:, 1] + e + gap <= o.y0))
            free = np.flatnonzero(ok)
            if len(free) == 0:
                break  # no room: start this scene's layout again
            x0, y0 = xy[free[0]].tolist()
            objects.append(SceneObject(SHAPES[shape_i], COLOUR_NAMES[colour_i], size, x0, y0, e))
        if len(objects) == n:
            return Scene(image_size, background, tuple(objects))
    raise RuntimeError(f"could not place {n} objects in a {image_size}x{image_size} image")  # pragma: no cover


def render_scene(scene: Scene) -> Image.Image:
    """The scene as an RGB PIL image (flat colours, no antialiasing: every pixel is the background or an object's
    exact colour)."""
    img = Image.new("RGB", (scene.image_size, scene.image_size), scene.background)
    draw = ImageDraw.Draw(img)
    for o in scene.objects:
        fill = COLOURS[o.colour]
        box = (o.x0, o.y0, o.x1 - 1, o.y1 - 1)
        if o.shape == "circle":
            draw.ellipse(box, fill=fill)
        elif o.shape == "square":
            draw.rectangle(box, fill=fill)
        elif o.shape == "triangle":
            draw.polygon([(o.x0, o.y1 - 1), (o.x1 - 1, o.y1 - 1), (o.x0 + (o.extent - 1) / 2, o.y0)], fill=fill)
        else:
            raise ConfigError(f"unknown shape {o.shape!r}")
    return img


# ----------------------------------------------------------------------------------------------------------------
# VQA questions

# template -> (answer_type, question_type, parameter names)
TEMPLATES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "exist_colour_shape": ("yes/no", "is there a", ("colour", "shape")),
    "exist_size_shape": ("yes/no", "is there a", ("size", "shape")),
    "any_shape": ("yes/no", "are there any", ("shape",)),
    "shape_is_colour": ("yes/no", "is the", ("shape", "colour")),
    "count_shape": ("number", "how many", ("shape",)),
    "count_colour": ("number", "how many", ("colour",)),
    "count_all": ("number", "how many", ()),
    "colour_of_shape": ("other", "what color is the", ("shape",)),
    "shape_of_colour": ("other", "what shape is the", ("colour",)),
    "size_of_colour_shape": ("other", "what size is the", ("colour", "shape")),
    "colour_of_size_shape": ("other", "what color is the", ("size", "shape")),
    "colour_of_leftmost": ("other", "what color is the", ()),
    "colour_of_rightmost": ("other", "what color is the", ()),
}
_TEXT = {
    "exist_colour_shape": "is there a {colour} {shape}?",
    "exist_size_shape": "is there a {size} {shape}?",
    "any_shape": "are there any {shape}s?",
    "shape_is_colour": "is the {shape} {colour}?",
    "count_shape": "how many {shape}s are there?",
    "count_colour": "how many {colour} objects are there?",
    "count_all": "how many objects are there?",
    "colour_of_shape": "what color is the {shape}?",
    "shape_of_colour": "what shape is the {colour} object?",
    "size_of_colour_shape": "what size is the {colour} {shape}?",
    "colour_of_size_shape": "what color is the {size} {shape}?",
    "colour_of_leftmost": "what color is the leftmost object?",
    "colour_of_rightmost": "what color is the rightmost object?",
}
_VALUES = {"colour": COLOUR_NAMES, "shape": SHAPES, "size": SIZES}
_GRID: dict[str, list[dict[str, str]]] = {
    t: [dict(zip(names, combo)) for combo in product(*(_VALUES[n] for n in names))]
    for t, (_, _, names) in TEMPLATES.items()
}
_TYPE_SHARE = {"yes/no": 0.35, "number": 0.25, "other": 0.40}
DEFAULT_MIX: dict[str, float] = {
    t: _TYPE_SHARE[a] / sum(1 for b, _, _ in TEMPLATES.values() if b == a) for t, (a, _, _) in TEMPLATES.items()
}
ZERO_COUNT_PROB = 0.15  # how often a "how many {shape|colour}" question asks about an absent attribute


@dataclass(frozen=True)
class Question:
    template: str
    text: str
    answer: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def answer_type(self) -> str:
        return TEMPLATES[self.template][0]

    @property
    def question_type(self) -> str:
        return TEMPLATES[self.template][1]


def question_text(template: str, **params: str) -> str:
    return _TEXT[template].format(**params)


def _yn(b: bool) -> str:
    return "yes" if b else "no"


def answer_question(scene: Scene, template: str, **params: str) -> str | None:
    """The true answer to `template` with `params` for this scene, or None when the question has no unique
    referent (e.g. "what color is the circle?" with zero or two circles)."""
    p = params
    if template == "exist_colour_shape":
        return _yn(scene.count(shape=p["shape"], colour=p["colour"]) > 0)
    if template == "exist_size_shape":
        return _yn(scene.count(shape=p["shape"], size=p["size"]) > 0)
    if template == "any_shape":
        return _yn(scene.count(shape=p["shape"]) > 0)
    if template == "shape_is_colour":
        o = scene.unique(shape=p["shape"])
        return None if o is None else _yn(o.colour == p["colour"])
    if template == "count_shape":
        return str(scene.count(shape=p["shape"]))
    if template == "count_colour":
        return str(scene.count(colour=p["colour"]))
    if template == "count_all":
        return str(len(scene.objects))
    if template == "colour_of_shape":
        o = scene.unique(shape=p["shape"])
        return None if o is None else o.colour
    if template == "shape_of_colour":
        o = scene.unique(colour=p["colour"])
        return None if o is None else o.shape
    if template == "size_of_colour_shape":
        o = scene.unique(shape=p["shape"], colour=p["colour"])
        return None if o is None else o.size
    if template == "colour_of_size_shape":
        o = scene.unique(shape=p["shape"], size=p["size"])
        return None if o is None else o.colour
    if template in ("colour_of_leftmost", "colour_of_rightmost"):
        o = scene.extreme("left" if template == "colour_of_leftmost" else "right")
        return None if o is None else o.colour
    raise ConfigError(f"unknown template {template!r}; known: {sorted(TEMPLATES)}")


def sample_question(scene: Scene, template: str, rng: np.random.Generator, *, want: str | None = None,
                    exclude: set[str] | frozenset[str] = frozenset()) -> Question | None:
    """A random instance of `template` that is answerable for `scene` (unique referent), not in `exclude`
    (question texts), and, for yes/no templates with `want`, has that answer. None when there is none."""
    cands = []
    for params in _GRID[template]:
        ans = answer_question(scene, template, **params)
        if ans is None or (want is not None and ans != want):
            continue
        text = question_text(template, **params)
        if text not in exclude:
            cands.append((params, text, ans))
    if not cands:
        return None
    if template in ("count_shape", "count_colour"):
        zero = [c for c in cands if c[2] == "0"]
        nonzero = [c for c in cands if c[2] != "0"]
        if zero and nonzero:
            cands = zero if rng.random() < ZERO_COUNT_PROB else nonzero
    params, text, ans = cands[int(rng.integers(len(cands)))]
    return Question(template, text, ans, dict(params))


def _resolve_mix(mix: Mapping[str, float] | None) -> dict[str, float]:
    if mix is None:
        return dict(DEFAULT_MIX)
    weights = dict.fromkeys(TEMPLATES, 0.0)
    for key, w in mix.items():
        if w < 0:
            raise ConfigError(f"mix weight for {key!r} is negative: {w}")
        if key in TEMPLATES:
            weights[key] += float(w)
        elif key in ANSWER_TYPES:  # an answer type: shared equally by its templates
            members = [t for t, (a, _, _) in TEMPLATES.items() if a == key]
            for t in members:
                weights[t] += float(w) / len(members)
        else:
            raise ConfigError(f"unknown mix key {key!r}; use template names {sorted(TEMPLATES)} "
                             f"or answer types {list(ANSWER_TYPES)}")
    if sum(weights.values()) <= 0:
        raise ConfigError("mix has no positive weight")
    return weights


class _QuestionSampler:
    """Draws distinct questions per scene: answer type by the mix, then templates of that type in weighted random
    order until one is answerable. Yes/no answers are balanced per template over the whole split."""

    def __init__(self, mix: Mapping[str, float] | None, rng: np.random.Generator) -> None:
        self.weights = _resolve_mix(mix)
        self.rng = rng
        self.types = [a for a in ANSWER_TYPES if any(w > 0 for t, w in self.weights.items() if TEMPLATES[t][0] == a)]
        tw = np.array([sum(w for t, w in self.weights.items() if TEMPLATES[t][0] == a) for a in self.types])
        self.type_cum = list(np.cumsum(tw / tw.sum()))
        self.members = {a: [t for t in TEMPLATES if TEMPLATES[t][0] == a and self.weights[t] > 0] for a in self.types}
        self.yes_no: dict[str, Counter] = {t: Counter() for t in TEMPLATES if TEMPLATES[t][0] == "yes/no"}

    def _want(self, template: str) -> str | None:
        if TEMPLATES[template][0] != "yes/no":
            return None
        c = self.yes_no[template]
        if c["yes"] != c["no"]:
            return "yes" if c["yes"] < c["no"] else "no"
        return "yes" if self.rng.random() < 0.5 else "no"

    def questions(self, scene: Scene, n: int) -> list[Question]:
        out: list[Question] = []
        seen: set[str] = set()
        for _ in range(20 * n):
            if len(out) == n:
                break
            atype = self.types[min(bisect_right(self.type_cum, self.rng.random()), len(self.types) - 1)]
            members = self.members[atype]
            # weighted random order without replacement (Efraimidis-Spirakis keys u ** (1 / w))
            keys = self.rng.random(len(members)) ** (1.0 / np.array([self.weights[t] for t in members]))
            for i in np.argsort(-keys, kind="stable"):
                t = members[int(i)]
                q = sample_question(scene, t, self.rng, want=self._want(t), exclude=seen)
                if q is not None:
                    out.append(q)
                    seen.add(q.text)
                    if t in self.yes_no:
                        self.yes_no[t][q.answer] += 1
                    break
        return out


def _wrong_answers(answer: str) -> tuple[str, ...]:
    """Plausible wrong answers an annotator might give instead of `answer`."""
    if answer in YES_NO:
        return ("no",) if answer == "yes" else ("yes",)
    if answer in NUMBER_ANSWERS:
        n = int(answer)
        return tuple(str(m) for m in (n - 1, n + 1) if 0 <= m <= MAX_OBJECTS)
    for group in (COLOUR_NAMES, SHAPES, SIZES):
        if answer in group:
            return tuple(a for a in group if a != answer)
    raise ConfigError(f"not an answer: {answer!r}")


def annotator_answers(answer: str, rng: np.random.Generator, noise: float) -> list[str]:
    """NUM_ANNOTATORS answers: each independently wrong (a neighbouring number, another colour / shape / size,
    the opposite yes/no) with probability `noise`, otherwise `answer`."""
    wrong = _wrong_answers(answer)
    u = rng.random(2 * NUM_ANNOTATORS).tolist()
    return [wrong[min(int(v * len(wrong)), len(wrong) - 1)] if f < noise else answer
            for f, v in zip(u[:NUM_ANNOTATORS], u[NUM_ANNOTATORS:])]


def majority_answer(answers: list[str], truth: str | None = None) -> str:
    """The most common answer (ties: `truth` if among the tied, else the alphabetically first)."""
    counts = Counter(answers)
    top = max(counts.values())
    tied = sorted(a for a, c in counts.items() if c == top)
    return truth if truth in tied else tied[0]


# ----------------------------------------------------------------------------------------------------------------
# Captions


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _relation(scene: Scene, rng: np.random.Generator) -> str:
    pairs = []
    for a in scene.objects:
        for b in scene.objects:
            if a is b:
                continue
            if a.x1 <= b.x0:  # boxes disjoint horizontally
                pairs.append((a, "to the left of", b))
            elif a.y1 <= b.y0 and not (b.x1 <= a.x0):  # vertically stacked (and not already a left/right pair)
                pairs.append((a, "above", b))
    a, rel, b = pairs[int(rng.integers(len(pairs)))]
    return f"a {a.colour} {a.shape} {rel} a {b.colour} {b.shape}."


def scene_captions(scene: Scene, rng: np.random.Generator) -> list[str]:
    """Five captions, each fully true of the scene:
    0. "{n} object(s) on a plain background: {objects left to right}."
    1. "{a picture|an image|a drawing} of {objects in random order}."
    2. "the picture shows {count per shape}."
    3. "{count per colour} on a light background."
    4. "a {colour} {shape} {to the left of|above} a {colour} {shape}." (one object: "a single {object}.")
    """
    objs = list(scene.objects)
    n = len(objs)
    left_to_right = sorted(objs, key=lambda o: (o.cx, o.cy))
    c0 = (f"{number_word(n)} {'object' if n == 1 else 'objects'} on a plain background: "
          f"{_join([f'a {o.name}' for o in left_to_right])}.")
    order = rng.permutation(n)
    prefix = ("a picture of", "an image of", "a drawing of")[int(rng.integers(3))]
    c1 = f"{prefix} {_join([f'a {objs[int(i)].name}' for i in order])}."
    shape_counts = [(s, scene.count(shape=s)) for s in SHAPES]
    c2 = "the picture shows " + _join([f"{number_word(c)} {s}{'' if c == 1 else 's'}"
                                        for s, c in shape_counts if c]) + "."
    colour_counts = [(col, scene.count(colour=col)) for col in COLOUR_NAMES]
    c3 = _join([f"{number_word(c)} {col} {'shape' if c == 1 else 'shapes'}"
                for col, c in colour_counts if c]) + " on a light background."
    c4 = _relation(scene, rng) if n >= 2 else f"a single {objs[0].name}."
    return [c0, c1, c2, c3, c4]


def caption_tokens(caption: str) -> list[str]:
    """Karpathy-style tokens: lower case, punctuation dropped."""
    return re.findall(r"[a-z0-9]+", caption.lower())


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
    return f"COCO_{subtype}_{image_id:012d}.jpg"


def vqa_question_file(subtype: str) -> str:
    return f"v2_OpenEnded_mscoco_{subtype}_questions.json"


def vqa_annotation_file(subtype: str) -> str:
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
    1..num_train, val ids num_train+1..num_train+num_val; question_id = image_id * 1000 + k."""
    _check_common(num_train, "num_train")
    _check_common(num_val, "num_val")
    _check_image_size(image_size)
    if not 1 <= questions_per_image <= 999:
        raise ConfigError(f"questions_per_image must be in 1..999, got {questions_per_image}")
    if not 0.0 <= noise <= 1.0:
        raise ConfigError(f"noise must be in [0, 1], got {noise}")
    _resolve_mix(mix)  # validate before any work
    splits: dict[str, VQASplit] = {}
    first_id = 1
    for split_idx, (subtype, num) in enumerate(zip(VQA_SUBTYPES, (num_train, num_val))):
        scene_rng, q_rng, ann_rng, cap_rng = (_rng(seed, split_idx, stream) for stream in range(4))
        sampler = _QuestionSampler(mix, q_rng)
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

    `noise`: probability that each of the 10 annotators gives a plausible wrong answer. `mix`: relative weights
    by template name (`TEMPLATES`) and / or answer type ("yes/no", "number", "other"; shared equally by its
    templates); default `DEFAULT_MIX` (35% yes/no, 25% number, 40% other). Returns a summary (counts per split,
    answer types, templates, yes/no balance, the answer set, seconds)."""
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
    from .vqa import load_vqa_split  # (vqa needs nothing from here)

    src, dst = Path(src_dir), Path(dst_dir)
    qfile, afile = src / vqa_question_file(split), src / vqa_annotation_file(split)
    for f in (qfile, afile):
        if not f.is_file():
            raise DatasetError(f"{f} not found (is {src} a VQA directory with split {split!r}?)")
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
# NLVR2

NLVR2_TEMPLATES: dict[str, tuple[str, tuple[str, ...]]] = {
    "more_shape": ("the {side} image has more {shape}s than the {other} image.", ("side", "shape")),
    "more_objects": ("the {side} image has more objects than the {other} image.", ("side",)),
    "same_count": ("both images contain the same number of objects.", ()),
    "both_colour": ("both images contain a {colour} object.", ("colour",)),
    "one_colour": ("exactly one image contains a {colour} object.", ("colour",)),
    "total_exact": ("there are exactly {n} objects in total.", ("n",)),
    "side_contains": ("the {side} image contains a {colour} {shape}.", ("side", "colour", "shape")),
    "neither_shape": ("neither image contains a {shape}.", ("shape",)),
}
_NLVR2_VALUES: dict[str, tuple] = {**_VALUES, "side": ("left", "right"), "n": tuple(range(2, 2 * MAX_OBJECTS + 1))}
_NLVR2_GRID: dict[str, list[dict]] = {
    t: [dict(zip(names, combo)) for combo in product(*(_NLVR2_VALUES[n] for n in names))]
    for t, (_, names) in NLVR2_TEMPLATES.items()
}
PAIRS_PER_SET = 2
SENTENCES_PER_PAIR = 2


def statement_text(template: str, **params) -> str:
    p = dict(params)
    if "side" in p:
        p["other"] = "right" if p["side"] == "left" else "left"
    if "n" in p:
        p["n"] = number_word(int(p["n"]))
    return NLVR2_TEMPLATES[template][0].format(**p)


def statement_truth(left: Scene, right: Scene, template: str, **params) -> bool:
    """Whether the statement `template` with `params` holds for the pair (left = img0, right = img1)."""
    p = params
    if "side" in p:
        this, other = (left, right) if p["side"] == "left" else (right, left)
    if template == "more_shape":
        return this.count(shape=p["shape"]) > other.count(shape=p["shape"])
    if template == "more_objects":
        return len(this.objects) > len(other.objects)
    if template == "same_count":
        return len(left.objects) == len(right.objects)
    if template == "both_colour":
        return left.count(colour=p["colour"]) > 0 and right.count(colour=p["colour"]) > 0
    if template == "one_colour":
        return (left.count(colour=p["colour"]) > 0) != (right.count(colour=p["colour"]) > 0)
    if template == "total_exact":
        return len(left.objects) + len(right.objects) == int(p["n"])
    if template == "side_contains":
        return this.count(shape=p["shape"], colour=p["colour"]) > 0
    if template == "neither_shape":
        return left.count(shape=p["shape"]) == 0 and right.count(shape=p["shape"]) == 0
    raise ConfigError(f"unknown NLVR2 template {template!r}; known: {sorted(NLVR2_TEMPLATES)}")


def _sample_statement(left: Scene, right: Scene, template: str, want: bool, rng: np.random.Generator,
                      exclude: set[str]) -> tuple[str, dict] | None:
    total = len(left.objects) + len(right.objects)
    cands = []
    for params in _NLVR2_GRID[template]:
        if statement_truth(left, right, template, **params) != want:
            continue
        if template == "total_exact" and abs(int(params["n"]) - total) > 2:  # near misses only
            continue
        text = statement_text(template, **params)
        if text not in exclude:
            cands.append((text, params))
    return cands[int(rng.integers(len(cands)))] if cands else None


@dataclass(frozen=True)
class NLVR2Example:
    identifier: str  # "{split}-{set}-{pair}-{sentence}"
    sentence: str
    label: bool
    template: str
    left: Scene
    right: Scene
    directory: str | None  # train only

    @property
    def pair_id(self) -> str:  # the identifier without its trailing sentence index: the images' name stem
        return self.identifier.rsplit("-", 1)[0]

    def image_paths(self) -> tuple[str, str]:
        split = self.identifier.split("-", 1)[0]
        folder = f"{split}/{self.directory}" if self.directory is not None else split
        return f"{folder}/{self.pair_id}-img0.png", f"{folder}/{self.pair_id}-img1.png"

    def record(self) -> dict:
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
    _check_image_size(image_size)
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
                got = _sample_statement(left, right, t, want, s_rng, seen)
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
    (examples, pairs, True / False counts and templates per split, seconds)."""
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
