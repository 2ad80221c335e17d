"""Property-based fuzzing of the vision-language readers (VQAv2, COCO / Karpathy captions, NLVR2): json of any
shape (random nesting of dicts, lists, strings, numbers, booleans, nulls, with and without the expected keys),
random bytes and truncated text. Each reader returns records, every image path of which lies inside the data
root, or raises a `DatasetError`; nothing else escapes.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vitkit.data.captions import find_caption_files, load_coco_captions, load_karpathy
from vitkit.data.nlvr2 import load_nlvr2
from vitkit.data.vqa import load_vqa_split
from vitkit.processing.images import DatasetError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NAMES = ["../x.jpg", "/etc/passwd", "a.jpg", "True", "dev-1-0-0", "sub/../../x.jpg", "sub/../a.jpg", "..\\x.jpg",
         "C:x.jpg"]  # file names that try to leave the data root, and harmless ones
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(NAMES))
KEYS = ["questions", "annotations", "images", "question_id", "image_id", "question", "answers", "answer",
        "answer_type", "multiple_choice_answer", "id", "file_name", "caption", "filepath", "filename", "split",
        "sentences", "raw", "cocoid", "identifier", "sentence", "label", "directory"]
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), inner, max_size=5)),
    max_leaves=20,
)
# the expected top level, with random inner content (reaches deeper than a random top level would)
shaped = st.one_of(
    json_values,
    st.fixed_dictionaries({"questions": st.lists(json_values, max_size=3)}),
    st.fixed_dictionaries({"annotations": st.lists(json_values, max_size=3)}),
    st.fixed_dictionaries({"images": st.lists(json_values, max_size=3), "annotations": st.lists(json_values,
                                                                                                 max_size=3)}),
    st.fixed_dictionaries({"questions": st.lists(st.fixed_dictionaries(
        {"image_id": scalars, "question": scalars, "question_id": scalars}), max_size=3)}),
)
payload = st.one_of(shaped.map(lambda v: json.dumps(v).encode()), st.binary(max_size=64),
                    shaped.map(lambda v: json.dumps(v).encode()[:-3]))


def _inside(root: Path, paths) -> None:
    """Every path a reader returned lies under `root`, with no `..` part (annotation files are data: a name in
    them must not reach outside the data folder)."""
    for path in paths:
        rel = Path(path).relative_to(root)  # ValueError (a failure) if it does not start with root
        assert ".." not in rel.parts and not rel.is_absolute(), path


def _image_paths(records) -> list[Path]:
    out = []
    for r in records:
        out += [getattr(r, k) for k in ("image_path", "left_path", "right_path") if hasattr(r, k)]
    return out


def _only_dataset_errors(fn, root: Path | None = None) -> None:
    """fn() returns records (their image paths inside `root`) or raises a DatasetError; nothing else."""
    try:
        records = fn()
    except DatasetError:
        return
    if root is not None:
        if hasattr(records, "train"):  # CaptionSplits
            records = [*records.train, *records.val]
        _inside(root, _image_paths(records))


@FUZZ
@given(questions=payload, annotations=payload)
def test_vqa_reader_raises_only_dataset_errors(questions, annotations):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "v2_OpenEnded_mscoco_val2014_questions.json").write_bytes(questions)
        (root / "v2_mscoco_val2014_annotations.json").write_bytes(annotations)
        _only_dataset_errors(lambda: load_vqa_split(root, "val2014", check_images=False), root)
        _only_dataset_errors(lambda: load_vqa_split(root, "val2014"), root)


@FUZZ
@given(coco=payload, karpathy=payload)
def test_caption_readers_raise_only_dataset_errors(coco, karpathy):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "captions_val2014.json").write_bytes(coco)
        (root / "dataset_coco.json").write_bytes(karpathy)
        _only_dataset_errors(lambda: load_coco_captions(root / "captions_val2014.json", root, check_images=False),
                             root)
        _only_dataset_errors(lambda: load_karpathy(root / "dataset_coco.json", root, check_images=False), root)
        _only_dataset_errors(lambda: find_caption_files(root, check_images=False), root)


@FUZZ
@given(lines=st.lists(payload, max_size=4))
def test_nlvr2_reader_raises_only_dataset_errors(lines):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "dev.json").write_bytes(b"\n".join(lines))
        _only_dataset_errors(lambda: load_nlvr2(root, "dev", check_images=False), root)
        _only_dataset_errors(lambda: load_nlvr2(root, "dev"), root)
