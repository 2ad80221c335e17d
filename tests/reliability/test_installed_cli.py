"""Every case of issue 21 through the installed `vitkit` console script, in a fresh process: the input that used to
allocate gigabytes, end in a traceback or print a misleading message now gives exit code 2 and exactly one line on
stderr, `vitkit CMD: error: ...`, naming the file or option and (for the size limits) the limit and the
environment variable that raises it. No warning, log line or traceback precedes it."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import resource
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vitkit

PICO = "vit_pico_patch2_16"
TRAIN = ["--model", PICO, "--epochs", "1", "--batch-size", "8", "--no-progress", "--workers", "0", "--no-ema"]


def write_png(path: Path, size=(8, 8), mode="L", value=128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value,) * 3).save(path)
    return path


def image_folder(root: Path, n: int = 8) -> Path:
    for split in ("train", "val"):
        for c, name in enumerate(("ant", "bee")):
            for i in range(n if split == "train" else 2):
                write_png(root / split / name / f"{i}.png", value=40 + 100 * c + i)
    return root


@pytest.fixture(scope="module")
def pico_dir(tmp_path_factory) -> Path:
    model = vitkit.create_model(PICO, num_classes=2, labels=("ant", "bee"), in_chans=1, mean=(0.5,), std=(0.5,))
    return model.save_pretrained(tmp_path_factory.mktemp("pico") / "model")


@pytest.fixture(scope="module")
def vqa_dir(tmp_path_factory) -> Path:
    model = vitkit.create_model("vilt_b32_vqa", depth=1, embed_dim=32, num_heads=2, img_size=32, patch_size=16,
                                shorter_edge=32, longer_edge=48, size_divisor=16, max_text_len=19, num_answers=3,
                                labels=("yes", "no", "two"))
    return model.save_pretrained(tmp_path_factory.mktemp("vqa") / "model")


# ------------------------------------------------------------------------------------------ bounded allocations
def test_a_177_byte_100000x1_png_is_refused_before_the_resize(tmp_path, vitkit_cli, one_error_line):
    """At 224 px the eval transform would resize it to 24,800,000 x 248 (~25 GB)."""
    model = vitkit.create_model("vit_nano_patch4_32", img_size=224, num_classes=2, labels=("a", "b"))
    model.save_pretrained(tmp_path / "m224")
    Image.new("L", (100_000, 1)).save(tmp_path / "strip.png", optimize=True)
    assert (tmp_path / "strip.png").stat().st_size < 400
    proc = vitkit_cli("predict", "--model", str(tmp_path / "m224"), "--image", str(tmp_path / "strip.png"))
    one_error_line(proc, "100000x1", "resize output pixels", "VITKIT_MAX_RESIZE_PIXELS")


class _Ndarray:
    """Pickles as `numpy.ndarray(shape, 'u1')`: the constructor with a shape of the file's choosing."""

    def __init__(self, shape):
        self.shape = shape

    def __reduce__(self):
        return np.ndarray, (self.shape, "u1")


def test_a_cifar_batch_declaring_200000_images_is_refused(tmp_path, vitkit_cli, one_error_line):
    folder = tmp_path / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a", b"b"]}, protocol=2))
    good = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, protocol=2)
    for name in ["data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
        (folder / name).write_bytes(good)
    forged = pickle.dumps({b"data": _Ndarray((200_000, 3072)), b"labels": []}, protocol=2)
    assert len(forged) < 240
    (folder / "data_batch_1").write_bytes(forged)
    proc = vitkit_cli("train", "--data", str(tmp_path / "cifar"), "--out", str(tmp_path / "run"), *TRAIN)
    one_error_line(proc, "data_batch_1", "(200000, 3072)", "614,400,000 bytes")


def _idx(a: np.ndarray) -> bytes:
    return bytes([0, 0, 8, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


def test_a_gzipped_idx_bomb_is_refused_without_decompressing_it(tmp_path, vitkit_cli, one_error_line):
    """A header for 16 images of 8x8, then 64 MB of zeros: refused after reading 1 KB past the header."""
    data = tmp_path / "mnist"
    data.mkdir()
    for split, n in (("train", 16), ("t10k", 4)):
        (data / f"{split}-labels-idx1-ubyte").write_bytes(_idx(np.arange(n, dtype=np.uint8) % 2))
    (data / "t10k-images-idx3-ubyte").write_bytes(_idx(np.zeros((4, 8, 8), np.uint8)))
    bomb = gzip.compress(_idx(np.zeros((16, 8, 8), np.uint8)) + bytes(64 << 20), compresslevel=9)
    assert len(bomb) < 100_000
    (data / "train-images-idx3-ubyte.gz").write_bytes(bomb)
    proc = vitkit_cli("train", "--data", str(data), "--out", str(tmp_path / "run"), *TRAIN)
    one_error_line(proc, "train-images-idx3-ubyte.gz", "more than 1024")


def _npz_claiming(path: Path, shape: tuple[int, ...]) -> Path:
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    text = repr(header).encode("latin1")
    text += b" " * (63 - (10 + len(text)) % 64) + b"\n"
    member = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("Transformer/encoder_norm/scale.npy", member)
    return path


def test_a_218_byte_npz_claiming_2_33_floats_is_refused(tmp_path, vitkit_cli, one_error_line):
    path = _npz_claiming(tmp_path / "vit.npz", (2**33,))
    assert path.stat().st_size < 400
    proc = vitkit_cli("convert", str(path), str(tmp_path / "out"), "--model", PICO)
    one_error_line(proc, "vit.npz", "(8589934592,)", "truncated or forged")


def test_vqa_questions_nested_200000_deep(tmp_path, vitkit_cli, one_error_line):
    data = tmp_path / "vqa"
    data.mkdir()
    for split in ("train2014", "val2014"):
        (data / f"v2_OpenEnded_mscoco_{split}_questions.json").write_text(
            '{"questions": ' + "[" * 200_000 + "]" * 200_000 + "}")
        (data / f"v2_mscoco_{split}_annotations.json").write_text('{"annotations": []}')
    proc = vitkit_cli("train", "--task", "vqa", "--data", str(data), "--out", str(tmp_path / "run"))
    one_error_line(proc, "questions.json", "nested deeper")


# ------------------------------------------------------------------------------------------------------- writes
def _limit_file_size(nbytes: int):
    def set_limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))

    return set_limit


def test_convert_to_a_file_a_missing_folder_or_over_the_file_size_limit(tmp_path, pico_dir, vitkit_cli,
                                                                        one_error_line):
    (tmp_path / "taken").write_text("a file")
    one_error_line(vitkit_cli("convert", str(pico_dir), str(tmp_path / "taken")), "taken", "in the way")
    one_error_line(vitkit_cli("convert", str(pico_dir), str(tmp_path / "no" / "such" / "out")),
                   "no/such/out", "does not exist")
    proc = vitkit_cli("convert", str(pico_dir), str(tmp_path / "big"), preexec_fn=_limit_file_size(64 << 10))
    one_error_line(proc, "big/model.safetensors", "File too large")
    assert not [p for p in (tmp_path / "big").iterdir() if p.name.endswith(".tmp")]  # no temp file left


def test_convert_into_a_read_only_folder(tmp_path, pico_dir, vitkit_cli, one_error_line, mounted):
    (tmp_path / "ro").mkdir()
    proc = vitkit_cli("convert", str(pico_dir), str(tmp_path / "ro" / "out"), wrap=mounted(tmp_path / "ro", "ro"))
    one_error_line(proc, "ro/out", "Read-only file system")


def test_train_out_naming_an_existing_file(tmp_path, vitkit_cli, one_error_line):
    data = image_folder(tmp_path / "data")
    (tmp_path / "run.txt").write_text("notes")
    proc = vitkit_cli("train", "--data", str(data), "--out", str(tmp_path / "run.txt"), *TRAIN)
    one_error_line(proc, "run.txt", "is a file")
    assert (tmp_path / "run.txt").read_text() == "notes"


def test_attention_into_a_missing_folder_fails_before_anything_is_loaded(tmp_path, vitkit_cli, one_error_line):
    """The model and image do not even exist: the output path is checked first, so no computation is wasted."""
    proc = vitkit_cli("attention", "--model", str(tmp_path / "no-model"), "--image", str(tmp_path / "no.png"),
                      "--out", str(tmp_path / "missing" / "att.png"))
    one_error_line(proc, "missing/att.png", "does not exist")


def test_training_on_a_disk_that_fills_up(tmp_path, vitkit_cli, one_error_line, mounted):
    """64 KB of disk: the lock and the first metrics lines fit, the best-model export does not."""
    data = image_folder(tmp_path / "data")
    (tmp_path / "disk").mkdir()
    proc = vitkit_cli("train", "--data", str(data), "--out", str(tmp_path / "disk" / "run"), *TRAIN,
                      "--log-every", "1", wrap=mounted(tmp_path / "disk", "size=64k"))
    one_error_line(proc, "run/model/model.safetensors", "No space left on device", "last good checkpoint is kept",
                   after_progress=True)


def test_training_into_a_read_only_folder(tmp_path, vitkit_cli, one_error_line, mounted):
    data = image_folder(tmp_path / "data")
    (tmp_path / "ro").mkdir()
    proc = vitkit_cli("train", "--data", str(data), "--out", str(tmp_path / "ro" / "run"), *TRAIN,
                      wrap=mounted(tmp_path / "ro", "ro"))
    one_error_line(proc, "ro/run", "Read-only file system")


def test_a_metrics_line_over_the_file_size_limit_leaves_the_earlier_lines_whole(tmp_path, vitkit_cli,
                                                                                  one_error_line):
    """Under a 160-byte file size limit the lock file fits, metrics.jsonl's first line (~100 bytes) too, its second
    does not: one error line, and the file still holds only complete lines (the half written is cut off)."""
    data = image_folder(tmp_path / "data")
    proc = vitkit_cli("train", "--data", str(data), "--out", str(tmp_path / "run"), *TRAIN, "--log-every", "1",
                      preexec_fn=_limit_file_size(160))
    one_error_line(proc, "run/metrics.jsonl", "File too large", "last good checkpoint is kept", after_progress=True)
    raw = (tmp_path / "run" / "metrics.jsonl").read_bytes()
    assert raw.endswith(b"\n") and all(json.loads(line) for line in raw.splitlines())


# ---------------------------------------------------------------------------------- tracebacks and poor messages
def test_align_text_with_bytes_that_are_not_utf8(tmp_path, vqa_dir, vitkit_cli, one_error_line):
    write_png(tmp_path / "x.png", size=(40, 30), mode="RGB")
    proc = vitkit_cli("align", "--model", str(vqa_dir), "--image", str(tmp_path / "x.png"), "--text",
                      b"is there a \xff\xfe cat", "--out", str(tmp_path / "a.png"))
    one_error_line(proc, "--text is not UTF-8", "0xff")
    assert not (tmp_path / "a.png").exists()


@pytest.mark.parametrize("annotations", ["[1, 2]", None])
def test_scenes_blank_from_with_list_or_missing_annotations(tmp_path, vitkit_cli, one_error_line, annotations):
    src = tmp_path / "vqa"
    write_png(src / "val2014" / "COCO_val2014_000000000001.jpg", mode="RGB")
    (src / "v2_OpenEnded_mscoco_val2014_questions.json").write_text(
        json.dumps({"questions": [{"question_id": 1, "image_id": 1, "question": "what?"}]}))
    if annotations is not None:
        (src / "v2_mscoco_val2014_annotations.json").write_text(annotations)
    proc = vitkit_cli("scenes", str(tmp_path / "out"), "--blank-from", str(src))
    one_error_line(proc, "v2_mscoco_val2014_annotations.json",
                   "not found" if annotations is None else "should be a JSON object, got list")


def test_a_png_given_as_model_says_what_was_expected(tmp_path, vitkit_cli, one_error_line):
    png = write_png(tmp_path / "cat.png")
    line = one_error_line(vitkit_cli("predict", "--model", str(png), "--image", str(png)),
                          "cat.png is an image, not a model", "model directory")
    assert "model=" not in line  # predict has no such option


def test_a_code_carrying_pt_without_model_reports_the_refusal(tmp_path, vitkit_cli, one_error_line):
    class Evil:
        def __reduce__(self):
            return os.mkdir, (str(tmp_path / "pwned"),)

    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": Evil()}, tmp_path / "evil.pt")
    write_png(tmp_path / "x.png")
    line = one_error_line(vitkit_cli("predict", "--model", str(tmp_path / "evil.pt"), "--image",
                                     str(tmp_path / "x.png")), "evil.pt", "weights_only=True", "posix.mkdir")
    assert "bare weight file" not in line
    assert not (tmp_path / "pwned").exists()


def test_a_legacy_pickle_with_code_gives_one_line_without_torch_warnings(tmp_path, vitkit_cli, one_error_line):
    class Evil:
        def __reduce__(self):
            return os.mkdir, (str(tmp_path / "pwned"),)

    (tmp_path / "old.pth").write_bytes(pickle.dumps({"x": Evil()}, protocol=4))  # torch warns about protocol 4
    proc = vitkit_cli("convert", str(tmp_path / "old.pth"), str(tmp_path / "out"), "--model", PICO)
    one_error_line(proc, "old.pth", "was not loaded")
    assert not (tmp_path / "pwned").exists()


def test_config_field_of_the_wrong_type_is_named(tmp_path, pico_dir, vitkit_cli, one_error_line):
    bad = tmp_path / "bad"
    bad.mkdir()
    meta = json.loads((pico_dir / "config.json").read_text())
    meta["config"]["embed_dim"] = "128"
    (bad / "config.json").write_text(json.dumps(meta))
    (bad / "model.safetensors").write_bytes((pico_dir / "model.safetensors").read_bytes())
    one_error_line(vitkit_cli("convert", str(bad), str(tmp_path / "out")),
                   "field 'embed_dim' should be an integer, got the string '128'")


@pytest.mark.parametrize("question", ["", "   "])
def test_an_empty_question_is_an_error_not_an_answer(tmp_path, vqa_dir, vitkit_cli, one_error_line, question):
    write_png(tmp_path / "x.png", size=(40, 30), mode="RGB")
    proc = vitkit_cli("predict", "--model", str(vqa_dir), "--image", str(tmp_path / "x.png"), "--question", question)
    one_error_line(proc, "--question is empty")
    assert proc.stdout == ""


# ------------------------------------------------------------------------------------------- what may be loaded
def test_a_dit_config_cannot_choose_its_vae(tmp_path, vitkit_cli, one_error_line):
    """config.json naming a VAE outside the allow-list: refused before anything is imported or downloaded."""
    model = vitkit.create_model("dit_nano_patch4_32", in_channels=4, input_size=8, mean=(0.0,) * 4, std=(1.0,) * 4,
                                vae="someone/innocent-looking-vae", latent_scale=0.18215)
    model.save_pretrained(tmp_path / "dit")
    proc = vitkit_cli("sample", "--model", str(tmp_path / "dit"), "--class-label", "0", "--num", "1", "--steps",
                      "2", "--out", str(tmp_path / "grid.png"))
    one_error_line(proc, "someone/innocent-looking-vae", "--trust-vae", "--vae")
    assert not (tmp_path / "grid.png").exists()


def test_importing_vitkit_with_a_torch_below_the_floor_names_both_versions():
    code = "import torch; torch.__version__ = '2.9.1'; import vitkit"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(vitkit.__file__).resolve().parents[1])})
    assert proc.returncode != 0
    assert "vitkit needs torch >= 2.10, but torch 2.9.1 is installed" in proc.stderr.splitlines()[-1]
