"""VQAv2 in its official layout, its answer vocabulary, ViLT's soft targets and the official accuracy.

Layout of a data dir `D` (the files as the VQA site ships them, unzipped side by side):

    D/v2_OpenEnded_mscoco_{split}_questions.json   {"questions": [{"image_id", "question", "question_id"}, ...]}
    D/v2_mscoco_{split}_annotations.json           {"annotations": [{"question_id", "image_id", "answer_type",
                                                     "question_type", "multiple_choice_answer",
                                                     "answers": [{"answer", "answer_confidence", "answer_id"}]}]}
    D/{split}/COCO_{split}_{image_id:012d}.jpg     the COCO images

for any split name (`train2014`, `val2014`, `test2015` and `test-dev2015` have questions but no annotations;
test-dev's images are test2015's, so `test-dev*` splits look in `D/test*/COCO_test*_...`).

Answers are normalised with `normalize_answer`, the official evaluation's processing (punctuation, number words,
articles, contractions). `vqa_accuracy` is the official per-question accuracy; `VQAMetrics` accumulates it
overall and per answer type; `accuracy_table` / `sparse_accuracy_table` precompute it for every vocabulary answer
so training-time evaluation is one gather. `build_answer_vocab`, `answer_score` and `soft_targets` follow ViLT's
VQAv2 recipe (3,129 answers, BCE against 0 / 0.3 / 0.6 / 0.9 / 1.0 targets).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..processing.images import DatasetError
from .paths import SafeRoot, expect_int, expect_list, expect_mapping, expect_str, read_json

logger = logging.getLogger(__name__)

__all__ = [
    "ANSWER_TYPES",
    "VQAAccuracyTable",
    "VQAMetrics",
    "VQAQuestion",
    "accuracy_table",
    "annotations_file",
    "answer_score",
    "build_answer_vocab",
    "gather_accuracy",
    "list_vqa_splits",
    "load_vqa_split",
    "normalize_answer",
    "questions_file",
    "soft_targets",
    "sparse_accuracy_table",
    "vqa_accuracy",
]

ANSWER_TYPES = ("yes/no", "number", "other")  # the official answer types, in the order the VQA site reports them

# ---- the official answer normalisation ----------------------------------------------------------------------------
# Tables as in the official VQA evaluation (vqaEval.py): punctuation, number words, articles, contractions.

_PUNCTUATION = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!",
)
_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
_ARTICLES = frozenset({"a", "an", "the"})
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm", "Ive": "I've",
    "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll", "let's": "let's",
    "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've", "mightn'tve": "mightn't've",
    "mightve": "might've", "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at",
    "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've",
    "someone'dve": "someone'd've", "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}
# (The mixed-case keys "Im", "Ive", ... never match: the official code lower-cases first. Kept as published.)

_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
# A period not followed by a digit ("3.5" and ".5" keep theirs). The official pattern passes re.UNICODE (== 32)
# where `sub` takes its `count`, so at most 32 such periods are removed; kept, so results match it exactly.
_LONE_PERIOD = re.compile(r"\.(?!\d)")
_OFFICIAL_PERIOD_LIMIT = int(re.UNICODE)


def _process_punctuation(text: str) -> str:
    """The official `processPunctuation`: each listed mark is deleted where it touches a space (or anywhere, when
    the text has a digit-comma-digit such as "10,000"), otherwise replaced by a space; then lone periods go.
    Apostrophes, colons and periods before a digit survive."""
    delete_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in _PUNCTUATION:
        if mark not in out:
            continue
        # the official test looks at the input text, not at the text as already edited
        if delete_all or (mark + " ") in text or (" " + mark) in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _LONE_PERIOD.sub("", out, count=_OFFICIAL_PERIOD_LIMIT)


def _process_digit_article(text: str) -> str:
    """The official `processDigitArticle`: lower-case, split on whitespace, number words to digits, drop
    articles, then restore missing contraction apostrophes ("dont" -> "don't"), re-joined with single spaces."""
    words = []
    for word in text.lower().split():
        word = _NUMBER_WORDS.get(word, word)
        if word not in _ARTICLES:
            words.append(_CONTRACTIONS.get(word, word))
    return " ".join(words)


def normalize_answer(answer: str) -> str:
    """An answer as the official VQA evaluation compares it (also what ViLT's `normalize_word` computes).

    Newlines/tabs become spaces and the ends are stripped; then punctuation ``; / [ ] " { } ( ) = + \\ _ - > < @ `
    , ? !`` is deleted next to a space (or everywhere if the text contains a digit-comma-digit: "10,000" -> "10000")
    and replaced by a space elsewhere ("t-shirt" -> "t shirt"); a period is removed unless a digit follows ("3.5"
    stays); then lower-case, number words zero..ten (and "none") become digits, "a"/"an"/"the" are dropped, a
    missing contraction apostrophe is restored ("dont" -> "don't"), and words are joined by single spaces.
    """
    if not isinstance(answer, str):
        raise DatasetError(f"an answer should be a string, got {type(answer).__name__}: {answer!r:.60}")
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    return _process_digit_article(_process_punctuation(text))


# ---- the official accuracy ----------------------------------------------------------------------------------------


def _ground_truths(answers: Sequence[str]) -> list[str]:
    """The official treatment of the human answers: punctuation processing, only when they are not all equal."""
    answers = list(answers)
    for a in answers:
        if not isinstance(a, str):
            raise DatasetError(f"an answer should be a string, got {type(a).__name__}: {a!r:.60}")
    if len(set(answers)) > 1:
        answers = [_process_punctuation(a) for a in answers]
    return answers


def _leave_one_out(ground_truths: Sequence[str], prediction: str) -> float:
    """mean over i of min(1, #{j != i : gt_j == prediction} / 3), summed in the official order (so equal to the
    last bit)."""
    return _leave_one_out_pattern(tuple(g == prediction for g in ground_truths))


@functools.lru_cache(maxsize=4096)
def _leave_one_out_pattern(matched: tuple[bool, ...]) -> float:
    """`_leave_one_out` from which human answers match (the value depends on nothing else)."""
    matches = sum(matched)
    total = 0.0
    for m in matched:
        total += min(1, float(matches - m) / 3)
    return total / len(matched)


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """The official VQA accuracy of one predicted answer against the human answers (usually ten), in [0, 1].

    For each annotator i, the prediction scores min(1, (matching answers among the other annotators) / 3); the
    accuracy is the mean over annotators. The prediction is normalised with `normalize_answer`; the human answers
    as the official evaluation does: punctuation-processed when they are not all identical, otherwise compared
    as given (the released VQAv2 answers are already normalised; `VQAQuestion.answers` are fully normalised).
    A prediction 2 of 10 annotators gave scores (8 * 2/3 + 2 * 1/3) / 10 = 0.6; 3 of 10: 0.9; 4 or more: 1.
    Fewer than ten answers are handled the same way (leave-one-out over len(answers)). DatasetError when empty.
    """
    if len(answers) == 0:
        raise DatasetError("no human answers to score the prediction against (a split without annotations?)")
    return _leave_one_out(_ground_truths(answers), normalize_answer(prediction))


class VQAMetrics:
    """Accumulates the official accuracy overall and per answer type ("yes/no", "number", "other").

        metrics = VQAMetrics()
        for pred, q in zip(predictions, questions):
            metrics.add(pred, q.answers, q.answer_type)
        metrics.result()   # {"vqa_accuracy": 0.71, "yes/no": 0.87, "number": 0.5, "other": 0.62}

    Values are fractions in [0, 1] (the VQA site reports 100x, rounded to 2 decimals). `result()` lists a type
    only when questions of it were added; with nothing added, "vqa_accuracy" is nan.

    Across processes: `sums()` returns the raw sums and counts as a flat dict of floats. Its keys always include
    `SUM_KEYS` (zeros when absent) in a fixed order, so every rank can all-reduce them as one tensor:

        keys = VQAMetrics.SUM_KEYS
        t = torch.tensor([metrics.sums()[k] for k in keys], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(t)
        total = VQAMetrics.from_sums(dict(zip(keys, t.tolist())))

    Answer types beyond the official three add "sum:<type>" / "count:<type>" keys that only the ranks which saw
    them have (merge those with `all_gather_object` + `merge`, or ignore them). `merge(other)` adds another
    accumulator's sums into this one.
    """

    SUM_KEYS: tuple[str, ...] = ("sum", "count", *(f"{kind}:{t}" for t in ANSWER_TYPES for kind in ("sum", "count")))

    def __init__(self) -> None:
        self._sums: dict[str, float] = dict.fromkeys(self.SUM_KEYS, 0.0)

    def add(self, prediction: str, answers: Sequence[str], answer_type: str | None = None) -> float:
        """Score one prediction (`vqa_accuracy`), accumulate it, and return it."""
        acc = vqa_accuracy(prediction, answers)
        self.add_score(acc, answer_type)
        return acc

    def add_score(self, accuracy: float, answer_type: str | None = None) -> None:
        """Accumulate an accuracy already computed (e.g. gathered from an `accuracy_table`). Without an answer
        type (None or ""), it counts only overall."""
        accuracy = float(accuracy)
        self._sums["sum"] += accuracy
        self._sums["count"] += 1
        if answer_type:
            self._sums[f"sum:{answer_type}"] = self._sums.get(f"sum:{answer_type}", 0.0) + accuracy
            self._sums[f"count:{answer_type}"] = self._sums.get(f"count:{answer_type}", 0.0) + 1

    def __len__(self) -> int:
        return int(self._sums["count"])

    def sums(self) -> dict[str, float]:
        """Raw sums and counts: "sum", "count" (overall), "sum:<type>", "count:<type>" (see the class doc)."""
        return dict(self._sums)

    @classmethod
    def from_sums(cls, sums: Mapping[str, float]) -> VQAMetrics:
        """An accumulator holding `sums` (as `sums()` returns them, possibly added up across processes)."""
        metrics = cls()
        for key, value in sums.items():
            kind, sep, name = key.partition(":")
            if kind not in ("sum", "count") or (sep and not name):
                raise ValueError(f"not a VQAMetrics sum key: {key!r} (expected 'sum', 'count', 'sum:<type>' or "
                                 "'count:<type>')")
            metrics._sums[key] = float(value)
        return metrics

    def merge(self, other: VQAMetrics) -> VQAMetrics:
        """Add `other`'s sums into this accumulator (returns self)."""
        for key, value in other._sums.items():
            self._sums[key] = self._sums.get(key, 0.0) + value
        return self

    def result(self) -> dict[str, float]:
        """{"vqa_accuracy": overall, then each answer type seen: official ones first, others sorted}."""
        count = self._sums["count"]
        out = {"vqa_accuracy": self._sums["sum"] / count if count else math.nan}
        extra = sorted(k.partition(":")[2] for k in self._sums if k.startswith("count:"))
        for name in (*ANSWER_TYPES, *(t for t in extra if t not in ANSWER_TYPES)):
            n = self._sums.get(f"count:{name}", 0.0)
            if n:
                out[name] = self._sums.get(f"sum:{name}", 0.0) / n
        return out


# ---- the dataset ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VQAQuestion:
    """One VQAv2 question. `answers`: the annotators' answers normalised with `normalize_answer`, in file order
    (usually 10; empty for a split without annotations, e.g. test2015). `multiple_choice_answer`: the annotation's
    most common answer, normalised (what ViLT's vocabulary counts), None without annotations."""

    question_id: int
    image_id: int
    image_path: Path
    question: str
    answers: tuple[str, ...]
    answer_type: str | None
    question_type: str | None
    multiple_choice_answer: str | None = None


def questions_file(split: str) -> str:
    """The official questions file name for `split`: v2_OpenEnded_mscoco_{split}_questions.json."""
    return f"v2_OpenEnded_mscoco_{split}_questions.json"


def annotations_file(split: str) -> str:
    """The official annotations file name for `split`: v2_mscoco_{split}_annotations.json."""
    return f"v2_mscoco_{split}_annotations.json"


_QUESTIONS_RE = re.compile(r"^v2_OpenEnded_mscoco_(.+)_questions\.json$")


def list_vqa_splits(root: str | os.PathLike) -> list[str]:
    """The splits (sorted) that have a questions file in `root`; DatasetError when `root` is not a directory."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"VQA data directory not found: {root}")
    return sorted(m.group(1) for p in root.iterdir() if p.is_file() and (m := _QUESTIONS_RE.match(p.name)))


def _image_split(split: str) -> str:
    """test-dev2015's images are test2015's."""
    return "test" + split[len("test-dev") :] if split.startswith("test-dev") else split


def _optional_str(entry: dict, key: str, where: str) -> str | None:
    value = entry.get(key)
    return None if value is None else expect_str(value, f"{where}: {key!r}")


def _read_questions(path: Path) -> list[tuple[int, int, str]]:
    data = expect_mapping(read_json(path, "VQA questions file"), f"{path}: top level")
    if "questions" not in data:
        raise DatasetError(f"{path}: no 'questions' list (keys: {', '.join(map(str, data)) or 'none'})")
    entries = expect_list(data["questions"], f"{path}: 'questions'")
    out, seen = [], set()
    for i, entry in enumerate(entries):
        if type(entry) is dict:
            qid, image_id, text = entry.get("question_id"), entry.get("image_id"), entry.get("question")
        else:
            qid = image_id = text = None
        if not (_is_int(qid) and _is_int(image_id) and type(text) is str):
            where = f"{path}: questions[{i}]"
            entry = expect_mapping(entry, where, ("question_id", "image_id", "question"))
            expect_int(entry["question_id"], f"{where}: 'question_id'")
            expect_int(entry["image_id"], f"{where}: 'image_id'")
            expect_str(entry["question"], f"{where}: 'question'")
        if qid in seen:
            raise DatasetError(f"{path}: question {qid} appears more than once")
        seen.add(qid)
        out.append((qid, image_id, text))
    return out


def _is_int(value: object) -> bool:
    return type(value) is int  # not bool, not float


def _parse_annotation(entry: object, normalized: dict[str, str]) -> tuple[int, dict] | None:
    """(question_id, fields) for a well-formed annotation, else None (then `_check_annotation` says what is wrong).
    The fast path: plain type tests, each distinct answer normalised once (`normalized` memoises)."""
    if type(entry) is not dict:
        return None
    qid, image_id, raw_answers = entry.get("question_id"), entry.get("image_id"), entry.get("answers")
    if not (_is_int(qid) and _is_int(image_id) and type(raw_answers) is list and raw_answers):
        return None
    answers = []
    for ans in raw_answers:
        raw = ans.get("answer") if type(ans) is dict else None
        if type(raw) is not str:
            return None
        norm = normalized.get(raw)
        if norm is None:
            norm = normalized[raw] = normalize_answer(raw)
        answers.append(norm)
    optional = {}
    for key in ("answer_type", "question_type", "multiple_choice_answer"):
        value = entry.get(key)
        if value is not None and type(value) is not str:
            return None
        optional[key] = value
    mc = optional["multiple_choice_answer"]
    if mc is not None:
        mc = normalized.get(mc) or normalize_answer(mc)
    return qid, {"image_id": image_id, "answers": tuple(answers), "answer_type": optional["answer_type"],
                 "question_type": optional["question_type"], "multiple_choice_answer": mc}


def _check_annotation(entry: object, where: str, path: Path) -> None:
    """Raise the DatasetError describing what is wrong with an annotation `_parse_annotation` refused."""
    entry = expect_mapping(entry, where, ("question_id", "image_id", "answers"))
    qid = expect_int(entry["question_id"], f"{where}: 'question_id'")
    expect_int(entry["image_id"], f"{where}: 'image_id'")
    answers = expect_list(entry["answers"], f"{where}: 'answers'")
    if not answers:
        raise DatasetError(f"{path}: question {qid} has an annotation with no answers")
    for j, ans in enumerate(answers):
        ans = expect_mapping(ans, f"{where}: answers[{j}]")
        if "answer" not in ans:
            raise DatasetError(f"{where}: answers[{j}] has no 'answer'")
        expect_str(ans["answer"], f"{where}: answers[{j}]['answer']")
    for key in ("answer_type", "question_type", "multiple_choice_answer"):
        _optional_str(entry, key, where)
    raise AssertionError(f"{where}: refused but no problem found")  # pragma: no cover


def _read_annotations(path: Path) -> dict[int, dict]:
    data = expect_mapping(read_json(path, "VQA annotations file"), f"{path}: top level")
    if "annotations" not in data:
        raise DatasetError(f"{path}: no 'annotations' list (keys: {', '.join(map(str, data)) or 'none'})")
    entries = expect_list(data["annotations"], f"{path}: 'annotations'")
    out: dict[int, dict] = {}
    normalized: dict[str, str] = {}  # answers repeat a lot: normalise each distinct one once
    for i, entry in enumerate(entries):
        parsed = _parse_annotation(entry, normalized)
        if parsed is None:
            _check_annotation(entry, f"{path}: annotations[{i}]", path)
        qid, fields = parsed
        if qid in out:
            raise DatasetError(f"{path}: question {qid} is annotated more than once")
        out[qid] = fields
    return out


def _missing_images_error(paths: Sequence[Path], total: int, where: str) -> DatasetError:
    shown = ", ".join(str(p) for p in paths[:3])
    more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
    return DatasetError(f"{len(paths)} of {total} images for {where} are missing: {shown}{more}")


def load_vqa_split(
    root: str | os.PathLike, split: str, *, require_annotations: bool = True, check_images: bool = True
) -> list[VQAQuestion]:
    """The questions of one VQAv2 split, joined with their annotations by question_id, in questions-file order.

    Reads `root/v2_OpenEnded_mscoco_{split}_questions.json` and `root/v2_mscoco_{split}_annotations.json`;
    images are `root/{split}/COCO_{split}_{image_id:012d}.jpg` (test-dev splits use the test images).
    `require_annotations=False` allows a split without an annotations file (test2015): answers are then empty
    and the types None. DatasetError (naming the file) for: a missing file (the expected name), JSON of the
    wrong shape, a duplicated question, a question without annotation, an annotation whose image_id differs
    from its question's, and (with `check_images`) missing image files (how many, and the first few).
    Annotations of questions not in the questions file are ignored with a logged warning.
    """
    root = Path(root)
    if not isinstance(split, str) or not split:
        raise DatasetError(f"VQA split should be a non-empty string, got {split!r}")
    if not root.is_dir():
        raise DatasetError(f"VQA data directory not found: {root}")
    q_path, a_path = root / questions_file(split), root / annotations_file(split)
    if not q_path.is_file():
        splits = list_vqa_splits(root)
        found = f"splits with a questions file there: {', '.join(splits)}" if splits else "no questions files there"
        raise DatasetError(f"VQA questions file for split {split!r} not found: expected {q_path} ({found})")
    questions = _read_questions(q_path)
    annotations: dict[int, dict] | None = None
    if a_path.is_file():
        annotations = _read_annotations(a_path)
    elif require_annotations:
        raise DatasetError(
            f"VQA annotations file for split {split!r} not found: expected {a_path} "
            "(pass require_annotations=False for a split without answers, e.g. test2015)"
        )

    image_split = _image_split(split)
    safe_root = SafeRoot(root)
    image_paths: dict[int, Path] = {}
    out = []
    for qid, image_id, text in questions:
        if image_id not in image_paths:
            image_paths[image_id] = safe_root.join(f"{image_split}/COCO_{image_split}_{image_id:012d}.jpg")
        if annotations is None:
            out.append(VQAQuestion(qid, image_id, image_paths[image_id], text, (), None, None))
            continue
        ann = annotations.get(qid)
        if ann is None:
            raise DatasetError(f"{a_path}: question {qid} has no annotation")
        if ann["image_id"] != image_id:
            raise DatasetError(
                f"{a_path}: question {qid} is annotated for image {ann['image_id']} but asked about image "
                f"{image_id} in {q_path.name}"
            )
        out.append(VQAQuestion(qid, image_id, image_paths[image_id], text, ann["answers"], ann["answer_type"],
                               ann["question_type"], ann["multiple_choice_answer"]))
    if annotations is not None and len(annotations) > len(questions):
        asked = {q[0] for q in questions}
        extra = sum(1 for qid in annotations if qid not in asked)
        if extra:
            logger.warning("%s: %d annotations are for questions not in %s; ignored", a_path, extra, q_path.name)
    if check_images:
        missing = [p for p in image_paths.values() if not p.is_file()]
        if missing:
            raise _missing_images_error(missing, len(image_paths), f"VQA split {split!r} (under {root / image_split})")
    return out


# ---- answer vocabulary and soft targets (ViLT) ---------------------------------------------------------------------


def build_answer_vocab(questions: Iterable[VQAQuestion], min_count: int = 9, *, count: str = "majority") -> list[str]:
    """The answers seen at least `min_count` times, most frequent first, ties in alphabetical order.

    `count="majority"` (ViLT's recipe): one vote per question, its `multiple_choice_answer` (normalised); over
    VQAv2 train2014 + val2014 with min_count 9 this gives ViLT's 3,129 answers. A question without one (built by
    hand) votes for its most common answer (the first such in `answers` on a tie). `count="all"`: every
    annotator answer counts (about ten votes per question). Questions without answers are skipped.
    Note the order differs from ViLT's label order (first appearance); to use a fine-tuned checkpoint's head,
    take the vocabulary from its `id2label` instead.
    """
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"min_count should be a positive integer, got {min_count!r}")
    if count not in ("majority", "all"):
        raise ValueError(f"count should be 'majority' or 'all', got {count!r}")
    counter: Counter[str] = Counter()
    for q in questions:
        if count == "all":
            counter.update(q.answers)
        elif q.multiple_choice_answer is not None:
            counter[q.multiple_choice_answer] += 1
        elif q.answers:
            counter[Counter(q.answers).most_common(1)[0][0]] += 1
    return [a for a, n in sorted(counter.items(), key=lambda item: (-item[1], item[0])) if n >= min_count]


def answer_score(count: int) -> float:
    """ViLT's soft target for an answer `count` annotators gave: 0, 0.3, 0.6, 0.9, then 1.0 for 4 or more."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count should be a non-negative integer, got {count!r}")
    return (0.0, 0.3, 0.6, 0.9)[count] if count < 4 else 1.0


def soft_targets(answers: Iterable[str], index: Mapping[str, int]) -> tuple[list[int], list[float]]:
    """(vocabulary indices, `answer_score` of each) for a question's annotator answers, sorted by index.

    `answers` should be normalised already (`VQAQuestion.answers` are); answers outside `index` (answer -> label,
    e.g. `{a: i for i, a in enumerate(vocab)}`) are dropped, so both lists may be empty.
    """
    counts = Counter(answers)
    labels = sorted((index[a], n) for a, n in counts.items() if a in index)
    return [i for i, _ in labels], [answer_score(n) for _, n in labels]


# ---- precomputed accuracy for training-time evaluation -------------------------------------------------------------


@dataclass(frozen=True)
class VQAAccuracyTable:
    """The official accuracy of every vocabulary answer for every question, stored sparsely.

    Row q lists the vocabulary answers that score above 0 for question q: `indices[q, k]` (padded with -1) and
    `values[q, k]`; all other answers score 0 (as does any prediction outside the vocabulary). Memory is
    num_questions x (most matching answers of one question, at most 10) instead of num_questions x vocab.
    """

    indices: torch.Tensor  # [Q, K] int64, -1 = padding
    values: torch.Tensor  # [Q, K] accuracy, 0 at padding
    num_answers: int

    def __len__(self) -> int:
        return self.indices.shape[0]

    def gather(self, question_indices: torch.Tensor, answer_indices: torch.Tensor) -> torch.Tensor:
        """Accuracy [B] of predicting vocabulary answer `answer_indices[b]` for question `question_indices[b]`."""
        q = torch.as_tensor(question_indices, dtype=torch.long, device=self.indices.device)
        a = torch.as_tensor(answer_indices, dtype=torch.long, device=self.indices.device)
        if q.shape != a.shape or q.dim() != 1:
            raise ValueError(f"question and answer indices should be 1-D of one length, got {tuple(q.shape)} "
                             f"and {tuple(a.shape)}")
        hit = self.indices[q] == a.unsqueeze(1)
        return torch.where(hit, self.values[q], torch.zeros((), dtype=self.values.dtype,
                                                            device=self.values.device)).sum(dim=1)

    def to(self, device: torch.device | str) -> VQAAccuracyTable:
        return VQAAccuracyTable(self.indices.to(device), self.values.to(device), self.num_answers)

    def to_dense(self) -> torch.Tensor:
        """[Q, num_answers] with every entry (mostly zeros)."""
        dense = torch.zeros(len(self), self.num_answers + 1, dtype=self.values.dtype, device=self.values.device)
        cols = torch.where(self.indices >= 0, self.indices, torch.full_like(self.indices, self.num_answers))
        dense.scatter_(1, cols, self.values)
        return dense[:, : self.num_answers]


def sparse_accuracy_table(
    questions: Sequence[VQAQuestion], vocab: Sequence[str], *, dtype: torch.dtype = torch.float64
) -> VQAAccuracyTable:
    """`VQAAccuracyTable` for `questions` and the answer `vocab`: entry (q, a) = vqa_accuracy(vocab[a], answers_q),
    exactly (float64 by default; float32 rounds). Questions without answers get an all-zero row."""
    by_normal: dict[str, list[int]] = {}
    for i, a in enumerate(vocab):
        by_normal.setdefault(normalize_answer(a), []).append(i)
    punctuated: dict[str, str] = {}
    rows: list[list[tuple[int, float]]] = []
    for q in questions:
        row = []
        if q.answers:
            gts = list(q.answers)
            if len(set(gts)) > 1:  # as `_ground_truths`, memoised
                for k, g in enumerate(gts):
                    if g not in punctuated:
                        punctuated[g] = _process_punctuation(g)
                    gts[k] = punctuated[g]
            for answer in dict.fromkeys(gts):  # distinct, first-seen order
                indices = by_normal.get(answer)
                if indices:
                    score = _leave_one_out(gts, answer)
                    row.extend((i, score) for i in indices)
        rows.append(sorted(row))
    width = max((len(r) for r in rows), default=0)
    flat_idx, flat_val = [], []
    for row in rows:
        pad = width - len(row)
        flat_idx.extend([i for i, _ in row] + [-1] * pad)
        flat_val.extend([v for _, v in row] + [0.0] * pad)
    indices = torch.tensor(flat_idx, dtype=torch.long).reshape(len(rows), width)
    values = torch.tensor(flat_val, dtype=dtype).reshape(len(rows), width)
    return VQAAccuracyTable(indices, values, len(vocab))


def accuracy_table(
    questions: Sequence[VQAQuestion], vocab: Sequence[str], *, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """Dense [num_questions, len(vocab)] table: entry (q, a) = vqa_accuracy(vocab[a], questions[q].answers), so
    a model's accuracy is `table[q, logits.argmax(-1)]`. Needs Q x V x 8 bytes (VQAv2 val: 214k x 3129 -> 5 GiB);
    for full splits use `sparse_accuracy_table` and `gather_accuracy`."""
    return sparse_accuracy_table(questions, vocab, dtype=dtype).to_dense()


def gather_accuracy(
    table: VQAAccuracyTable | torch.Tensor, question_indices: torch.Tensor, answer_indices: torch.Tensor
) -> torch.Tensor:
    """Accuracy [B] of predicted vocabulary answers `answer_indices` for the questions `question_indices`
    (indices into the questions the table was built from), from a sparse or a dense table."""
    if isinstance(table, VQAAccuracyTable):
        return table.gather(question_indices, answer_indices)
    q = torch.as_tensor(question_indices, dtype=torch.long, device=table.device)
    a = torch.as_tensor(answer_indices, dtype=torch.long, device=table.device)
    return table[q, a]
