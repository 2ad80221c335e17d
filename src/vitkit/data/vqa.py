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
articles, contractions). The official scoring lives in `vitkit.data.vqa_accuracy` (and is importable from here):
`vqa_accuracy` is the per-question accuracy; `VQAMetrics` accumulates it overall and per answer type;
`accuracy_table` / `sparse_accuracy_table` precompute it for every vocabulary answer so training-time evaluation
is one gather. `build_answer_vocab`, `answer_score` and `soft_targets` follow ViLT's VQAv2 recipe (3,129 answers,
BCE against 0 / 0.3 / 0.6 / 0.9 / 1.0 targets).
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..processing.images import DatasetError
from .paths import SafeRoot, expect_int, expect_list, expect_mapping, expect_str, read_json
from .vqa_accuracy import (
    ANSWER_TYPES,
    VQAAccuracyTable,
    VQAMetrics,
    accuracy_table,
    gather_accuracy,
    normalize_answer,
    sparse_accuracy_table,
    vqa_accuracy,
)

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
