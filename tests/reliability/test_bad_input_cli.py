"""Bad input through the `vitkit` command line: exit code 2, one `vitkit CMD: error: ...` line naming the problem,
no traceback (`--debug` re-raises it). Odd but valid input (grayscale, palette, RGBA, 16-bit, EXIF-rotated,
1-pixel images) just works. Rows of docs/reliability.md not covered by tests/test_cli.py and
tests/train/test_engine.py; run in-process through `vitkit.cli.main`."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vitkit
from vitkit.cli import main
from vitkit.errors import VitkitError

FAST = ["--model", "vit_pico_patch2_16", "--epochs", "1", "--batch-size", "8", "--no-progress", "--workers", "0",
        "--no-ema"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models on a busy 2-core machine run fastest on one intra-op thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run(capsys, *args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `vitkit ARGS`; argparse's own errors exit through SystemExit."""
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(code: int, err: str, *needles: str) -> str:
    """Exit 2, exactly one line saying `error:` (the last one: warnings may precede it), no traceback."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and errors[0] == lines[-1], err
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def write_png(path: Path, value: int = 128, size: tuple[int, int] = (8, 8), mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode in ("L", "I;16", "I") else (value,) * len(mode)).save(path)
    return path


def image_folder(root: Path, classes=("ant", "bee"), n: int = 8) -> Path:
    for split in ("train", "val"):
        for c, name in enumerate(classes):
            for i in range(n if split == "train" else 2):
                write_png(root / split / name / f"{i}.png", 40 + 100 * c + i)
    return root


@pytest.fixture
def model_dir(tmp_path) -> Path:
    model = vitkit.create_model("vit_pico_patch2_16", num_classes=2, labels=("ant", "bee"), in_chans=1,
                                mean=(0.5,), std=(0.5,))
    return model.save_pretrained(tmp_path / "model")


# ------------------------------------------------------------------------------------------------ train
def test_train_missing_data_path(tmp_path, capsys):
    code, _, err = run(capsys, "train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run"), *FAST)
    assert_one_error_line(code, err, "vitkit train: error:", "nope")
    assert not (tmp_path / "run").exists()


def test_train_data_path_is_a_file(tmp_path, capsys):
    (tmp_path / "data.zip").write_bytes(b"PK")
    code, _, err = run(capsys, "train", "--data", str(tmp_path / "data.zip"), "--out", str(tmp_path / "run"), *FAST)
    assert_one_error_line(code, err, "data.zip")


def test_train_empty_data_folder_lists_what_was_looked_for(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    code, _, err = run(capsys, "train", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), *FAST)
    assert code == 2 and "Traceback" not in err
    assert "vitkit train: error: cannot tell what dataset" in err and "ImageFolder" in err  # multi-line hint


def test_train_class_folder_with_no_images(tmp_path, capsys):
    root = image_folder(tmp_path / "data")
    (root / "train" / "cow").mkdir()
    (root / "train" / "cow" / "notes.txt").write_text("photos to come")
    code, _, err = run(capsys, "train", "--data", str(root), "--out", str(tmp_path / "run"), *FAST)
    assert_one_error_line(code, err, "train/cow holds no images", "1 other file(s) (.txt)")


def test_train_one_class_is_refused_with_the_reason(tmp_path, capsys):
    root = image_folder(tmp_path / "data", classes=("ant",))
    code, _, err = run(capsys, "train", "--data", str(root), "--out", str(tmp_path / "run"), *FAST)
    assert_one_error_line(code, err, "single class folder ('ant')", "at least two classes")


def test_train_val_class_unknown_to_train(tmp_path, capsys):
    root = image_folder(tmp_path / "data")
    write_png(root / "val" / "bees" / "0.png")
    code, _, err = run(capsys, "train", "--data", str(root), "--out", str(tmp_path / "run"), *FAST)
    assert code == 2 and "Traceback" not in err and "'bees' (did you mean: bee?)" in err


@pytest.mark.parametrize("name, content", [
    ("truncated.png", None),  # a real PNG cut in half
    ("page.jpg", b"<html><body>403 Forbidden</body></html>"),  # a web page saved as an image
    ("empty.png", b""),
])
def test_train_stops_at_a_bad_image_and_names_it(tmp_path, capsys, name, content):
    root = image_folder(tmp_path / "data")
    bad = root / "train" / "bee" / name
    if content is None:
        good = write_png(tmp_path / "big.png", size=(64, 64), mode="RGB")
        arr = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(arr).save(good)
        content = good.read_bytes()[: len(good.read_bytes()) // 2]
    bad.write_bytes(content)
    code, _, err = run(capsys, "train", "--data", str(root), "--out", str(tmp_path / "run"), *FAST)
    assert_one_error_line(code, err, name)


def test_train_skip_bad_images_skips_counts_and_lists_them(tmp_path, capsys):
    root = image_folder(tmp_path / "data")
    (root / "train" / "ant" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "train" / "bee" / "notes.jpg").write_text("not an image")
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        code, _, err = run(capsys, "train", "--data", str(root), "--out", str(tmp_path / "run"), "--skip-bad-images",
                           *FAST)
    assert code == 0, err
    assert "skipped 2 unreadable image(s)" in err and "broken.png" in err and "notes.jpg" in err


def test_train_corrupt_mnist_file_is_named(tmp_path, capsys):
    def idx(a: np.ndarray) -> bytes:
        return bytes([0, 0, 8, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()

    data = tmp_path / "mnist"
    data.mkdir()
    for split, n in (("train", 16), ("t10k", 4)):
        (data / f"{split}-images-idx3-ubyte").write_bytes(idx(np.zeros((n, 8, 8), np.uint8)))
        (data / f"{split}-labels-idx1-ubyte").write_bytes(idx(np.arange(n, dtype=np.uint8) % 10))
    raw = gzip.compress((data / "train-images-idx3-ubyte").read_bytes())
    (data / "train-images-idx3-ubyte").unlink()
    (data / "train-images-idx3-ubyte.gz").write_bytes(raw[: len(raw) // 2])  # an interrupted download
    code, _, err = run(capsys, "train", "--data", str(data), "--out", str(tmp_path / "run"), *FAST)
    assert_one_error_line(code, err, "train-images-idx3-ubyte.gz")


def test_train_cifar_pickle_with_code_is_refused_and_not_run(tmp_path, capsys):
    class Evil:
        def __reduce__(self):
            return os.mkdir, (str(tmp_path / "pwned"),)

    folder = tmp_path / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a", b"b"], b"x": Evil()}, protocol=2))
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
        (folder / name).write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}))
    code, _, err = run(capsys, "train", "--data", str(tmp_path / "cifar"), "--out", str(tmp_path / "run"), *FAST)
    assert_one_error_line(code, err, "batches.meta", "not allowed")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("args, needle", [
    (["--task", "no-such-task"], "invalid choice"),
    (["--lrr", "0.1"], "unrecognized arguments: --lrr"),
    (["--epochs", "0"], "expected a positive integer, got 0"),
    (["--batch-size", "many"], "expected a positive integer, got 'many'"),
    (["--amp", "fp8"], "invalid choice"),
])
def test_train_unknown_task_or_option(tmp_path, capsys, args, needle):
    root = image_folder(tmp_path / "data")
    code, _, err = run(capsys, "train", "--data", str(root), "--out", str(tmp_path / "run"), *args)
    assert code == 2 and "Traceback" not in err
    assert needle in err.strip().splitlines()[-1]
    assert not (tmp_path / "run").exists()


def test_train_unknown_model_name_suggests_the_closest(tmp_path, capsys):
    root = image_folder(tmp_path / "data")
    code, _, err = run(capsys, "train", "--data", str(root), "--out", str(tmp_path / "run"), "--model",
                       "vit_pico_patch2_61", *FAST[2:])
    assert_one_error_line(code, err, "vit_pico_patch2_61", "did you mean: vit_pico_patch2_16")


def test_train_resume_without_a_checkpoint(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    code, _, err = run(capsys, "train", "--resume", str(tmp_path / "run"))
    assert_one_error_line(code, err, "checkpoint.pt")
    code, _, err = run(capsys, "train", "--resume", str(tmp_path / "never-ran"))
    assert_one_error_line(code, err, "never-ran")


def test_train_without_data_or_out(capsys):
    code, _, err = run(capsys, "train", *FAST)
    assert_one_error_line(code, err, "--data and --out are required")


def test_debug_shows_the_traceback_of_a_data_error(tmp_path):
    with pytest.raises(VitkitError, match="nope"):
        main(["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "run"), "--debug", *FAST])


# ----------------------------------------------------------------------------------------- eval / predict
def test_eval_model_not_found_suggests_a_name(tmp_path, capsys):
    root = image_folder(tmp_path / "data")
    code, _, err = run(capsys, "eval", "--model", "vit_pico_patch2_61", "--data", str(root))
    assert_one_error_line(code, err, "vitkit eval: error: checkpoint not found", "vit_pico_patch2_16")


def test_eval_on_data_with_other_classes(tmp_path, capsys, model_dir):
    root = image_folder(tmp_path / "data", classes=("cat", "dog"))
    code, _, err = run(capsys, "eval", "--model", str(model_dir), "--data", str(root))
    assert_one_error_line(code, err, "trained on classes")


def test_eval_bad_image_then_skip(tmp_path, capsys, model_dir):
    root = image_folder(tmp_path / "data")
    (root / "val" / "ant" / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00")
    code, _, err = run(capsys, "eval", "--model", str(model_dir), "--data", str(root))
    assert_one_error_line(code, err, "x.png")
    with pytest.warns(UserWarning, match="x.png"):
        code, out, err = run(capsys, "eval", "--model", str(model_dir), "--data", str(root), "--skip-bad-images",
                             "--json")
    assert code == 0, err
    assert json.loads(out)["num_samples"] == 4


def test_predict_missing_corrupt_and_non_image_files(tmp_path, capsys, model_dir):
    code, _, err = run(capsys, "predict", "--model", str(model_dir), "--image", str(tmp_path / "nope.jpg"))
    assert_one_error_line(code, err, "vitkit predict: error:", "nope.jpg")
    (tmp_path / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    code, _, err = run(capsys, "predict", "--model", str(model_dir), "--image", str(tmp_path / "cut.png"))
    assert_one_error_line(code, err, "cut.png")
    (tmp_path / "notes.txt").write_text("hello")
    code, _, err = run(capsys, "predict", "--model", str(model_dir), "--image", str(tmp_path / "notes.txt"))
    assert_one_error_line(code, err, "notes.txt")
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "predict", "--model", str(model_dir), "--image", str(tmp_path / "empty"))
    assert_one_error_line(code, err, "holds no images")


def test_predict_odd_but_valid_images_just_work(tmp_path, capsys, model_dir):
    """Grayscale, palette, RGBA, 16-bit, EXIF-rotated, bilevel, CMYK and 1-pixel images all give predictions."""
    folder = tmp_path / "odd"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 30), dtype=np.uint8)).save(folder / "grey.png")
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).convert("P").save(folder / "palette.gif")
    Image.fromarray(rng.integers(0, 256, (20, 30, 4), dtype=np.uint8), "RGBA").save(folder / "alpha.png")
    Image.fromarray(rng.integers(0, 65536, (20, 30), dtype=np.uint16)).save(folder / "deep.png")
    Image.new("1", (9, 9), 1).save(folder / "bilevel.bmp")
    Image.new("CMYK", (12, 7), (0, 50, 100, 0)).save(folder / "print.jpg")
    Image.new("RGB", (1, 1), (255, 0, 0)).save(folder / "dot.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rng.integers(0, 256, (10, 40, 3), dtype=np.uint8)).save(folder / "phone.jpg", exif=exif)
    code, out, err = run(capsys, "predict", "--model", str(model_dir), "--image", str(folder), "--json")
    assert code == 0, err
    results = json.loads(out)["results"]
    assert len(results) == 8 and all(r["predictions"] for r in results)


def test_predict_question_longer_than_the_model_limit_is_truncated_with_a_warning(tmp_path, capsys):
    """A 3000-token question for a ViLT whose text budget is 19 tokens: truncated (a warning says so), answered."""
    model = vitkit.create_model("vilt_b32_vqa", depth=1, embed_dim=32, num_heads=2, img_size=32, patch_size=16,
                                shorter_edge=32, longer_edge=48, size_divisor=16, max_text_len=19, num_answers=3,
                                labels=("yes", "no", "two"))
    model.save_pretrained(tmp_path / "vqa")
    Image.new("RGB", (40, 30), (9, 99, 199)).save(tmp_path / "photo.png")
    question = "is there a cat " * 750 + "?"
    with pytest.warns(UserWarning, match="truncated"):
        code, out, err = run(capsys, "predict", "--model", str(tmp_path / "vqa"), "--image",
                             str(tmp_path / "photo.png"), "--question", question, "--json")
    assert code == 0, err
    assert len(json.loads(out)["predictions"]) == 3


def test_attention_on_a_non_image(tmp_path, capsys, model_dir):
    (tmp_path / "x.png").write_text("<svg/>")
    code, _, err = run(capsys, "attention", "--model", str(model_dir), "--image", str(tmp_path / "x.png"), "--out",
                       str(tmp_path / "att.png"))
    assert_one_error_line(code, err, "vitkit attention: error:", "x.png")
    assert not (tmp_path / "att.png").exists()


# ---------------------------------------------------------------------------------------------- convert
def test_convert_truncated_safetensors(tmp_path, capsys, model_dir):
    data = (model_dir / "model.safetensors").read_bytes()
    (model_dir / "model.safetensors").write_bytes(data[: len(data) // 3])
    code, _, err = run(capsys, "convert", str(model_dir), str(tmp_path / "out"))
    assert_one_error_line(code, err, "not a readable safetensors file")
    assert not (tmp_path / "out").exists()


def test_convert_weights_of_another_architecture(tmp_path, capsys):
    path = tmp_path / "nano.pth"
    torch.save(vitkit.create_model("vit_nano_patch4_32").state_dict(), path)
    code, _, err = run(capsys, "convert", str(path), str(tmp_path / "out"), "--model", "vit_pico_patch2_16")
    assert_one_error_line(code, err, "does not fit this vit model", "mis-shaped")


def test_convert_pickle_with_code_is_refused_and_not_run(tmp_path, capsys):
    class Evil:
        def __reduce__(self):
            return os.mkdir, (str(tmp_path / "pwned"),)

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": Evil()}, path)
    code, _, err = run(capsys, "convert", str(path), str(tmp_path / "out"), "--model", "vit_pico_patch2_16")
    line = assert_one_error_line(code, err, "weights_only=True", "GLOBAL posix.mkdir")
    assert "set to `False`" not in line  # torch's advice to retry unsafely is not passed on
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("edit", [
    lambda meta: [meta],
    lambda meta: {**meta, "config": "vit"},
    lambda meta: {**meta, "config": {**meta["config"], "depth": 10**9}},
    lambda meta: {**meta, "config": {**meta["config"], "embed_dim": "wide"}},
    lambda meta: {**meta, "config": {**meta["config"], "num_heads": 0}},
])
def test_convert_config_json_of_the_wrong_shape(tmp_path, capsys, model_dir, edit):
    meta = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps(edit(meta)))
    code, _, err = run(capsys, "convert", str(model_dir), str(tmp_path / "out"))
    assert_one_error_line(code, err, "config.json" if isinstance(edit(meta), list) else str(model_dir))


def test_models_pattern_without_match(capsys):
    code, _, err = run(capsys, "models", "resnet*")
    assert_one_error_line(code, err, "no registered model matches 'resnet*'")


@pytest.mark.parametrize("argv", [
    ["train", "--data", "", "--out", "run"],
    ["train", "--data", "data", "--out", ""],
    ["predict", "--model", "m", "--image", ""],
    ["eval", "--model", "", "--data", "d"],
])
def test_empty_paths_are_refused_not_read_as_the_current_directory(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "is empty" in err and len(err.strip().splitlines()) == 1
