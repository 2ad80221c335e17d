"""The official VQA evaluation (https://github.com/GT-Vision-Lab/VQA, vqaEval.py): answer normalisation
(punctuation, number words, articles, contractions), the per-question accuracy (the mean over the ten
9-annotator subsets of min(1, matches / 3)), `VQAMetrics` accumulating it overall and per answer type, and tables
that precompute it for every vocabulary answer so training-time evaluation is one gather.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..processing.images import DatasetError

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
        """The table on `device`."""
        return VQAAccuracyTable(self.indices.to(device), self.values.to(device), self.num_answers)

    def to_dense(self) -> torch.Tensor:
        """[Q, num_answers] with every entry (mostly zeros)."""
        dense = torch.zeros(len(self), self.num_answers + 1, dtype=self.values.dtype, device=self.values.device)
        cols = torch.where(self.indices >= 0, self.indices, torch.full_like(self.indices, self.num_answers))
        dense.scatter_(1, cols, self.values)
        return dense[:, : self.num_answers]


def sparse_accuracy_table(
    questions: Sequence[Any], vocab: Sequence[str], *, dtype: torch.dtype = torch.float64
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
    questions: Sequence[Any], vocab: Sequence[str], *, dtype: torch.dtype = torch.float64
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


__all__ = [
    "ANSWER_TYPES",
    "VQAAccuracyTable",
    "VQAMetrics",
    "accuracy_table",
    "gather_accuracy",
    "normalize_answer",
    "sparse_accuracy_table",
    "vqa_accuracy",
]
