"""VQAv2: the official answer normalisation and accuracy, ViLT's vocabulary and soft targets, the precomputed
accuracy tables, and the reader for the official layout (every error path on tiny files built in tmp_path)."""

from __future__ import annotations

import json
import logging
import math
import random
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from vitkit.data.vqa import (
    ANSWER_TYPES,
    VQAMetrics,
    VQAQuestion,
    accuracy_table,
    annotations_file,
    answer_score,
    build_answer_vocab,
    gather_accuracy,
    list_vqa_splits,
    load_vqa_split,
    normalize_answer,
    questions_file,
    soft_targets,
    sparse_accuracy_table,
    vqa_accuracy,
)
from vitkit.errors import VitkitError
from vitkit.processing.images import DatasetError

# ---- normalisation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Two", "2"),  # number words -> digits, after lower-casing
        ("none", "0"),
        ("ten", "10"),
        ("eleven", "eleven"),  # only zero..ten
        ("the dog.", "dog"),  # article dropped, final period removed
        ("An apple", "apple"),
        ("a", ""),  # nothing left
        ("yes!", "yes"),
        ("Yes.", "yes"),
        ("3.5", "3.5"),  # a period before a digit is a decimal point
        (".5", ".5"),
        ("5.", "5"),
        ("dont", "don't"),  # missing contraction apostrophe restored
        ("don't", "don't"),  # apostrophes are not punctuation here
        ("whats up?", "what's up"),
        ("10,000", "10000"),  # digit-comma-digit: every mark deleted, not spaced
        ("1,000 and more!", "1000 and more"),
        ("red, white", "red white"),  # a mark next to a space is deleted...
        ("red,white", "red white"),  # ...elsewhere it becomes a space
        ("t-shirt", "t shirt"),
        ("(left)", "left"),
        ("  Many   spaces\tand\nlines  ", "many spaces and lines"),
        ("12:30", "12:30"),  # colons survive
    ],
)
def test_normalize_answer(raw: str, expected: str) -> None:
    assert normalize_answer(raw) == expected


def test_normalize_answer_rejects_non_strings() -> None:
    with pytest.raises(DatasetError, match="string"):
        normalize_answer(3)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab 12.,-!?'/tTheon", max_size=25))
def test_normalize_answer_is_idempotent(text: str) -> None:
    once = normalize_answer(text)
    assert normalize_answer(once) == once


# ---- the official accuracy ----------------------------------------------------------------------------------------


def test_vqa_accuracy_hand_worked() -> None:
    # 2 of 10 say "red": the 8 subsets leaving out a non-red annotator hold 2 matches (2/3), the 2 leaving out a
    # red one hold 1 (1/3): (8 * 2/3 + 2 * 1/3) / 10 = 0.6
    answers = ["red", "red"] + ["blue"] * 8
    assert vqa_accuracy("red", answers) == pytest.approx(0.6)
    assert vqa_accuracy("blue", answers) == 1.0
    assert vqa_accuracy("green", answers) == 0.0


@pytest.mark.parametrize(("matches", "expected"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_vqa_accuracy_by_number_of_matches(matches: int, expected: float) -> None:
    answers = ["cat"] * matches + ["dog"] * (10 - matches)
    assert vqa_accuracy("cat", answers) == pytest.approx(expected)


def test_vqa_accuracy_normalises_the_prediction() -> None:
    answers = ["2"] * 10
    assert vqa_accuracy("Two.", answers) == 1.0
    assert vqa_accuracy("  the 2!\n", answers) == 1.0


def test_vqa_accuracy_fewer_than_ten_answers() -> None:
    # 3 answers, all "red": each leave-one-out subset holds 2 matches -> 2/3
    assert vqa_accuracy("red", ["red"] * 3) == pytest.approx(2 / 3)
    # 1 answer: the only subset is empty
    assert vqa_accuracy("red", ["red"]) == 0.0
    with pytest.raises(DatasetError, match="no human answers"):
        vqa_accuracy("red", [])


def test_vqa_accuracy_treats_human_answers_as_the_official_eval_does() -> None:
    # differing answers get the punctuation step only ("t-shirt" -> "t shirt"), so they match the prediction
    assert vqa_accuracy("t-shirt", ["t-shirt"] * 5 + ["shirt"] * 5) == 1.0
    # no lower-casing / number words for human answers (the released ones are already normalised)
    assert vqa_accuracy("two", ["Two"] * 10) == 0.0
    assert vqa_accuracy("two", [normalize_answer("Two")] * 10) == 1.0


# ---- vocabulary and soft targets ------------------------------------------------------------------------------------


def test_answer_score_matches_vilt() -> None:
    assert [answer_score(n) for n in range(7)] == [0.0, 0.3, 0.6, 0.9, 1.0, 1.0, 1.0]
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError):
            answer_score(bad)  # type: ignore[arg-type]


def test_soft_targets() -> None:
    index = {"yes": 0, "no": 1, "2": 2}
    answers = ["no"] * 2 + ["yes"] * 7 + ["maybe"]
    assert soft_targets(answers, index) == ([0, 1], [1.0, 0.6])
    assert soft_targets(["maybe"] * 10, index) == ([], [])
    assert soft_targets(["2", "no", "2", "2"], index) == ([1, 2], [0.3, 0.9])


def _q(qid: int, answers: list[str], mc: str | None = None, answer_type: str | None = "other") -> VQAQuestion:
    return VQAQuestion(qid, qid, Path(f"{qid}.jpg"), "?", tuple(answers), answer_type, "what", mc)


def test_build_answer_vocab_counts_majority_answers_like_vilt() -> None:
    questions = [_q(i, ["yes"] * 10, "yes") for i in range(3)]
    questions += [_q(10 + i, ["no"] * 6 + ["yes"] * 4, "no") for i in range(3)]
    questions += [_q(20 + i, ["2"] * 10, "2") for i in range(2)]
    questions += [_q(30, ["red"] * 9 + ["blue"], "red")]
    assert build_answer_vocab(questions, min_count=1) == ["no", "yes", "2", "red"]  # count desc, then alphabetical
    assert build_answer_vocab(questions, min_count=2) == ["no", "yes", "2"]
    assert build_answer_vocab(questions, min_count=3) == ["no", "yes"]
    assert build_answer_vocab(questions) == []  # ViLT's threshold: 9


def test_build_answer_vocab_counting_every_annotator() -> None:
    questions = [_q(1, ["yes"] * 6 + ["no"] * 4, "yes"), _q(2, ["no"] * 5 + ["maybe"] * 5, "no")]
    assert build_answer_vocab(questions, min_count=5, count="all") == ["no", "yes", "maybe"]
    assert build_answer_vocab(questions, min_count=6, count="all") == ["no", "yes"]
    assert build_answer_vocab(questions, min_count=1) == ["no", "yes"]  # majority: one vote each


def test_build_answer_vocab_without_multiple_choice_answer_and_without_answers() -> None:
    questions = [_q(1, ["b", "a", "a", "b"]), _q(2, ["c"]), _q(3, [])]  # tie: the first most common ("b")
    assert build_answer_vocab(questions, min_count=1) == ["b", "c"]
    with pytest.raises(ValueError, match="min_count"):
        build_answer_vocab(questions, min_count=0)
    with pytest.raises(ValueError, match="count"):
        build_answer_vocab(questions, count="annotators")


# ---- metrics --------------------------------------------------------------------------------------------------------


def test_vqa_metrics_overall_and_per_type() -> None:
    m = VQAMetrics()
    assert m.add("yes", ["yes"] * 10, "yes/no") == 1.0
    assert m.add("no", ["yes"] * 10, "yes/no") == 0.0
    assert m.add("2", ["2", "2"] + ["3"] * 8, "number") == pytest.approx(0.6)
    result = m.result()
    assert list(result) == ["vqa_accuracy", "yes/no", "number"]  # only the types seen
    assert result["vqa_accuracy"] == pytest.approx(1.6 / 3)
    assert result["yes/no"] == 0.5
    assert result["number"] == pytest.approx(0.6)
    assert len(m) == 3


def test_vqa_metrics_empty_and_custom_types() -> None:
    assert math.isnan(VQAMetrics().result()["vqa_accuracy"])
    m = VQAMetrics()
    m.add("x", ["x"] * 4, "zzz")
    m.add("x", ["x"] * 4, "other")
    m.add_score(0.5)  # no type: counts only overall
    assert m.result() == {"vqa_accuracy": pytest.approx(2.5 / 3), "other": 1.0, "zzz": 1.0}


def test_vqa_metrics_sums_round_trip_and_reduce() -> None:
    rng = random.Random(0)
    whole, parts = VQAMetrics(), [VQAMetrics(), VQAMetrics()]
    for i in range(40):
        answers = [rng.choice(["yes", "no", "2", "red"]) for _ in range(10)]
        pred, kind = rng.choice(["yes", "no", "2", "red"]), rng.choice(ANSWER_TYPES)
        whole.add(pred, answers, kind)
        parts[i % 2].add(pred, answers, kind)
    # every accumulator has the fixed keys, so ranks can all-reduce one tensor
    sums = [p.sums() for p in parts]
    assert all(set(VQAMetrics.SUM_KEYS) <= set(s) for s in sums)
    reduced = torch.tensor([[s[k] for k in VQAMetrics.SUM_KEYS] for s in sums], dtype=torch.float64).sum(0)
    total = VQAMetrics.from_sums(dict(zip(VQAMetrics.SUM_KEYS, reduced.tolist())))
    assert total.result() == pytest.approx(whole.result())
    assert VQAMetrics.from_sums(whole.sums()).result() == whole.result()
    merged = VQAMetrics().merge(parts[0]).merge(parts[1])
    assert merged.result() == pytest.approx(whole.result())
    with pytest.raises(ValueError, match="sum key"):
        VQAMetrics.from_sums({"overall": 1.0})


# ---- accuracy tables ------------------------------------------------------------------------------------------------


def _random_questions(n: int, seed: int) -> list[VQAQuestion]:
    rng = random.Random(seed)
    pool = ["yes", "no", "2", "3", "red", "t shirt", "don't", "dog"]
    questions = []
    for i in range(n):
        k = rng.choice([10, 10, 10, 3, 1])
        questions.append(_q(i, [rng.choice(pool[: rng.randint(1, len(pool))]) for _ in range(k)]))
    questions.append(_q(n, []))  # no annotations: an all-zero row
    return questions


def test_accuracy_table_equals_vqa_accuracy_exactly() -> None:
    questions = _random_questions(60, seed=1)
    vocab = ["no", "yes", "2", "Red", "t-shirt", "dont", "cat", "two"]  # some need normalising; "cat" never given
    dense = accuracy_table(questions, vocab)
    assert dense.shape == (len(questions), len(vocab)) and dense.dtype == torch.float64
    for qi, q in enumerate(questions):
        for ai, answer in enumerate(vocab):
            expected = vqa_accuracy(answer, q.answers) if q.answers else 0.0
            assert dense[qi, ai].item() == expected, (q.answers, answer)
    assert dense[-1].abs().sum() == 0


def test_sparse_table_gathers_what_the_dense_one_holds() -> None:
    questions = _random_questions(50, seed=2)
    vocab = ["yes", "no", "2", "3", "red", "t shirt", "don't", "dog", "cat"]
    table = sparse_accuracy_table(questions, vocab)
    dense = accuracy_table(questions, vocab)
    assert len(table) == len(questions) and table.indices.shape[1] <= 10
    assert torch.equal(table.to_dense(), dense)
    g = torch.Generator().manual_seed(0)
    q = torch.randint(0, len(questions), (200,), generator=g)
    a = torch.randint(0, len(vocab), (200,), generator=g)
    assert torch.equal(gather_accuracy(table, q, a), dense[q, a])
    assert torch.equal(gather_accuracy(dense, q, a), dense[q, a])
    # eval = table[q, argmax]
    logits = torch.randn(len(questions), len(vocab), generator=g)
    idx = torch.arange(len(questions))
    assert torch.equal(table.gather(idx, logits.argmax(-1)), dense[idx, logits.argmax(-1)])
    with pytest.raises(ValueError, match="1-D"):
        table.gather(q[:3], a[:4])


def test_accuracy_table_float32_and_empty() -> None:
    questions = _random_questions(10, seed=3)
    t32 = accuracy_table(questions, ["yes", "no"], dtype=torch.float32)
    assert t32.dtype == torch.float32
    assert torch.allclose(t32.double(), accuracy_table(questions, ["yes", "no"]), atol=1e-7)
    empty = sparse_accuracy_table([_q(1, [])], ["yes"])
    assert empty.indices.shape == (1, 0)
    assert empty.gather(torch.tensor([0]), torch.tensor([0])).tolist() == [0.0]


# ---- the reader -----------------------------------------------------------------------------------------------------


def _question(qid: int, image_id: int, text: str = "What is it?") -> dict:
    return {"question_id": qid, "image_id": image_id, "question": text}


def _annotation(qid: int, image_id: int, answers: list[str], answer_type: str = "other") -> dict:
    return {
        "question_id": qid, "image_id": image_id, "answer_type": answer_type, "question_type": "what is",
        "multiple_choice_answer": max(set(answers), key=answers.count),
        "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(answers)],
    }


def _write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _write_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (255, 0, 0)).save(path)


def _make_vqa(root: Path, split: str = "val2014", *, annotations: bool = True, images: bool = True) -> Path:
    questions = [_question(1001, 1), _question(1002, 1, "How many?"), _question(2001, 2, "Is it red?")]
    _write_json(root / questions_file(split), {"info": {}, "data_subtype": split, "questions": questions})
    if annotations:
        anns = [
            _annotation(2001, 2, ["Yes"] * 9 + ["no"], "yes/no"),
            _annotation(1001, 1, ["the dog.", "dog", "Dog", "cat"] + ["dog"] * 6),
            _annotation(1002, 1, ["two"] * 3 + ["2"] * 7, "number"),
        ]
        _write_json(root / annotations_file(split), {"annotations": anns})
    if images:
        image_split = split.replace("test-dev", "test")
        for image_id in (1, 2):
            _write_image(root / image_split / f"COCO_{image_split}_{image_id:012d}.jpg")
    return root


def test_load_vqa_split(tmp_path: Path) -> None:
    root = _make_vqa(tmp_path)
    questions = load_vqa_split(root, "val2014")
    assert [q.question_id for q in questions] == [1001, 1002, 2001]  # questions-file order
    q = questions[0]
    assert q.image_id == 1 and q.question == "What is it?"
    assert q.image_path == root / "val2014" / "COCO_val2014_000000000001.jpg"
    assert q.answers == ("dog", "dog", "dog", "cat") + ("dog",) * 6  # normalised, in file order
    assert (q.answer_type, q.question_type, q.multiple_choice_answer) == ("other", "what is", "dog")
    assert questions[1].answers == ("2",) * 10
    assert questions[2].answers == ("yes",) * 9 + ("no",)
    assert build_answer_vocab(questions, min_count=1) == ["2", "dog", "yes"]
    assert list_vqa_splits(root) == ["val2014"]


def test_split_without_annotations(tmp_path: Path) -> None:
    root = _make_vqa(tmp_path, "test2015", annotations=False)
    with pytest.raises(DatasetError, match=r"v2_mscoco_test2015_annotations\.json.*require_annotations=False"):
        load_vqa_split(root, "test2015")
    questions = load_vqa_split(root, "test2015", require_annotations=False)
    assert [q.answers for q in questions] == [(), (), ()]
    assert questions[0].answer_type is None and questions[0].multiple_choice_answer is None


def test_test_dev_uses_the_test_images(tmp_path: Path) -> None:
    root = _make_vqa(tmp_path, "test-dev2015", annotations=False)
    questions = load_vqa_split(root, "test-dev2015", require_annotations=False)
    assert questions[0].image_path == root / "test2015" / "COCO_test2015_000000000001.jpg"


def test_missing_files_name_the_expected_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="directory not found"):
        load_vqa_split(tmp_path / "nope", "val2014")
    root = _make_vqa(tmp_path)
    with pytest.raises(DatasetError, match=r"v2_OpenEnded_mscoco_train2014_questions\.json.*there: val2014"):
        load_vqa_split(root, "train2014")
    (root / annotations_file("val2014")).unlink()
    with pytest.raises(DatasetError, match=r"expected .*v2_mscoco_val2014_annotations\.json"):
        load_vqa_split(root, "val2014")


def test_missing_images(tmp_path: Path) -> None:
    root = _make_vqa(tmp_path, images=False)
    with pytest.raises(DatasetError, match=r"2 of 2 images .* missing: .*COCO_val2014_000000000001\.jpg"):
        load_vqa_split(root, "val2014")
    assert len(load_vqa_split(root, "val2014", check_images=False)) == 3


def test_question_without_annotation(tmp_path: Path) -> None:
    root = _make_vqa(tmp_path)
    path = root / annotations_file("val2014")
    data = json.loads(path.read_text())
    data["annotations"] = [a for a in data["annotations"] if a["question_id"] != 1002]
    _write_json(path, data)
    with pytest.raises(DatasetError, match=r"v2_mscoco_val2014_annotations\.json: question 1002 has no annotation"):
        load_vqa_split(root, "val2014")


def test_extra_annotations_are_ignored_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _make_vqa(tmp_path)
    path = root / annotations_file("val2014")
    data = json.loads(path.read_text())
    data["annotations"].append(_annotation(9999, 2, ["yes"] * 10))
    _write_json(path, data)
    with caplog.at_level(logging.WARNING, logger="vitkit.data.vqa"):
        assert len(load_vqa_split(root, "val2014")) == 3
    assert "1 annotations are for questions not in" in caplog.text


def _corrupt(root: Path, which: str, edit) -> None:
    path = root / (questions_file("val2014") if which == "q" else annotations_file("val2014"))
    data = json.loads(path.read_text())
    _write_json(path, edit(data))


@pytest.mark.parametrize(
    ("which", "edit", "message"),
    [
        ("q", lambda d: [d], "top level should be a JSON object, got list"),
        ("q", lambda d: {"info": {}}, "no 'questions' list"),
        ("q", lambda d: {"questions": {"a": 1}}, "'questions' should be a JSON list, got dict"),
        ("q", lambda d: {"questions": [1, 2]}, r"questions\[0\] should be a JSON object, got int"),
        ("q", lambda d: {"questions": [{"question_id": 1, "image_id": 1}]}, r"questions\[0\] has no 'question'"),
        ("q", lambda d: {"questions": [_question("7", 1)]}, "'question_id' should be an integer, got str"),
        ("q", lambda d: {"questions": [_question(7, 1.0)]}, "'image_id' should be an integer, got float"),
        ("q", lambda d: {"questions": [_question(7, 1, None)]}, "'question' should be a string, got null"),
        ("q", lambda d: {"questions": [_question(1001, 1)] * 2}, "question 1001 appears more than once"),
        ("a", lambda d: {"annotations": None}, "'annotations' should be a JSON list, got null"),
        ("a", lambda d: {"annotations": [{"question_id": 1001, "image_id": 1}]}, "has no 'answers'"),
        ("a", lambda d: {"annotations": [{**d["annotations"][1], "answers": "dog"}]},
         "'answers' should be a JSON list"),
        ("a", lambda d: {"annotations": [{**d["annotations"][1], "answers": [{"answer": 3}]}]},
         r"answers\[0\]\['answer'\] should be a string, got int"),
        ("a", lambda d: {"annotations": [{**d["annotations"][1], "answers": ["dog"]}]},
         r"answers\[0\] should be a JSON object"),
        ("a", lambda d: {"annotations": [{**d["annotations"][1], "answers": []}]}, "annotation with no answers"),
        ("a", lambda d: {"annotations": [{**d["annotations"][1], "answer_type": 1}]}, "'answer_type' should be a str"),
        ("a", lambda d: {"annotations": d["annotations"] * 2}, "annotated more than once"),
        ("a", lambda d: {"annotations": [{**a, "image_id": 5} for a in d["annotations"]]},
         "annotated for image 5 but asked about image"),
    ],
)
def test_malformed_json_is_a_dataset_error(tmp_path: Path, which: str, edit, message: str) -> None:
    root = _make_vqa(tmp_path)
    _corrupt(root, which, edit)
    with pytest.raises(DatasetError, match=message) as info:
        load_vqa_split(root, "val2014")
    assert isinstance(info.value, VitkitError)
    expected = questions_file("val2014") if which == "q" else annotations_file("val2014")
    assert expected in str(info.value)  # the message names the file


def test_invalid_json_and_bad_split(tmp_path: Path) -> None:
    root = _make_vqa(tmp_path)
    (root / questions_file("val2014")).write_text('{"questions": [')
    with pytest.raises(DatasetError, match=r"questions\.json: not valid JSON"):
        load_vqa_split(root, "val2014")
    with pytest.raises(DatasetError, match="non-empty string"):
        load_vqa_split(root, "")
    with pytest.raises(DatasetError, match="directory not found"):
        list_vqa_splits(tmp_path / "missing")


def test_split_name_cannot_leave_the_root(tmp_path: Path) -> None:
    root = tmp_path / "vqa"
    _make_vqa(root)
    # a split name with '..' builds image paths outside root: refused
    _write_json(root / questions_file("../x"), {"questions": [_question(1, 1)]})
    with pytest.raises(DatasetError, match="leaves the data root"):
        load_vqa_split(root, "../x", require_annotations=False, check_images=False)
