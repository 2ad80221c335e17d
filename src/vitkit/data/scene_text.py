"""What is said about procedural scenes: VQA questions from templates with their ground-truth answers (only ever
asked when the scene answers them: a referring expression matches exactly one object, "leftmost" is clear),
annotators' answers with noise, five true captions per scene, and NLVR2 true / false statements about two scenes."""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import product

import numpy as np

from ..errors import ConfigError
from .scene_drawing import COLOUR_NAMES, MAX_OBJECTS, SHAPES, SIZES, Scene

NUMBER_ANSWERS: tuple[str, ...] = tuple(str(n) for n in range(MAX_OBJECTS + 1))
YES_NO: tuple[str, ...] = ("yes", "no")
# Every answer a question (or a noisy annotator) can give.
ANSWERS: tuple[str, ...] = (*YES_NO, *NUMBER_ANSWERS, *COLOUR_NAMES, *SHAPES, *SIZES)
NUM_ANNOTATORS = 10
ANSWER_TYPES: tuple[str, ...] = ("yes/no", "number", "other")

_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def number_word(n: int) -> str:
    """0..10 as an English word ("three"), larger numbers as digits."""
    return _WORDS[n] if 0 <= n < len(_WORDS) else str(n)


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
    """A question drawn from a template for a scene, with its ground-truth answer and the template's values."""

    template: str
    text: str
    answer: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def answer_type(self) -> str:
        """The official VQA answer type: "yes/no", "number" or "other"."""
        return TEMPLATES[self.template][0]

    @property
    def question_type(self) -> str:
        """VQA's question type: the question's first words ("how many", "what color is the", ...)."""
        return TEMPLATES[self.template][1]


def question_text(template: str, **params: str) -> str:
    """The question `template` asks with these values ("is there a red circle?")."""
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
    """A random instance of `template` that the scene answers (a referring expression matches exactly one object),
    or None when there is none.

    Args:
        scene: the scene asked about.
        template: a key of `TEMPLATES`.
        rng: the random source.
        want: for yes/no templates, the answer the question must have (None: either).
        exclude: question texts already asked about this scene.
    """
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


def resolve_mix(mix: Mapping[str, float] | None) -> dict[str, float]:
    """Per-template weights from weights by template name and / or answer type (an answer type's weight is
    shared equally by its templates); None gives `DEFAULT_MIX`. Unknown keys and negative weights raise."""
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


class QuestionSampler:
    """Draws distinct questions per scene: answer type by the mix, then templates of that type in weighted random
    order until one is answerable. Yes/no answers are balanced per template over the whole split."""

    def __init__(self, mix: Mapping[str, float] | None, rng: np.random.Generator) -> None:
        self.weights = resolve_mix(mix)
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
        """Up to `n` distinct questions about `scene` (fewer only when the scene answers fewer)."""
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


def statement_text(template: str, **params) -> str:
    """The NLVR2 statement `template` makes with these values ("the left image has more circles than ...")."""
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


def sample_statement(left: Scene, right: Scene, template: str, want: bool, rng: np.random.Generator,
                     exclude: set[str]) -> tuple[str, dict] | None:
    """A random (text, values) of an NLVR2 statement template with the wanted truth; "exactly n objects"
    statements only as near misses. None when there is none.

    Args:
        left: the pair's left image (img0).
        right: the pair's right image (img1).
        template: a key of `NLVR2_TEMPLATES`.
        want: whether the statement must be true or false of the pair.
        rng: the random source.
        exclude: statement texts already made about this pair.
    """
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


__all__ = [
    "ANSWERS",
    "ANSWER_TYPES",
    "DEFAULT_MIX",
    "NLVR2_TEMPLATES",
    "NUMBER_ANSWERS",
    "NUM_ANNOTATORS",
    "TEMPLATES",
    "YES_NO",
    "ZERO_COUNT_PROB",
    "Question",
    "QuestionSampler",
    "annotator_answers",
    "answer_question",
    "caption_tokens",
    "majority_answer",
    "number_word",
    "question_text",
    "resolve_mix",
    "sample_question",
    "sample_statement",
    "scene_captions",
    "statement_text",
    "statement_truth",
]
