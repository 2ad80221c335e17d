"""The `vitkit` command line: help everywhere, one-line errors with exit code 2, convert and demo end to end."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

import vitkit
from vitkit.cli import main

COMMANDS = ["demo", "convert", "models"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vitkit.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"] if command else ["--help"])
    assert exc.value.code == 0
    assert "usage: vitkit" in capsys.readouterr().out


def test_unknown_command_exits_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_models_lists_and_filters(capsys):
    assert main(["models", "vit_tiny*"]) == 0
    out = capsys.readouterr().out
    assert "vit_tiny_patch16_224" in out and "5.7M" in out
    assert "vit_base_patch16_224" not in out


def test_bad_input_is_one_line_exit_2_without_traceback(tmp_path):
    proc = run_cli("convert", str(tmp_path / "missing.pth"), str(tmp_path / "out"), "--model", "vit_tiny_patch16_224")
    assert proc.returncode == 2
    expected = f"vitkit convert: error: checkpoint not found: {tmp_path / 'missing.pth'}"
    assert proc.stderr.strip().splitlines() == [expected]
    assert "Traceback" not in proc.stderr


def test_debug_shows_traceback(tmp_path):
    proc = run_cli("convert", str(tmp_path / "missing.pth"), str(tmp_path / "out"), "--debug")
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "CheckpointError" in proc.stderr


def test_unknown_model_suggests_closest(tmp_path, capsys):
    weights = tmp_path / "w.safetensors"
    save_file({"x": torch.zeros(1)}, str(weights))
    assert main(["convert", str(weights), str(tmp_path / "out"), "--model", "vit_tiny_patch16_244"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'vit_tiny_patch16_244'" in err and "vit_tiny_patch16_224" in err


def test_convert_timm_file_to_vitkit_format(tmp_path, capsys):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    ref = timm.create_model("vit_tiny_patch16_224", num_classes=7).eval()
    src = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(src))
    assert main(["convert", str(src), str(tmp_path / "converted"), "--model", "vit_tiny_patch16_224"]) == 0
    assert "converted" in capsys.readouterr().out
    model = vitkit.from_pretrained(tmp_path / "converted")
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert (model(x) - ref(x)).abs().max().item() <= 1e-4
    assert model.config.num_classes == 7


def test_demo_short_run_writes_model_pictures_and_summary(tmp_path):
    from vitkit.demo import run_demo

    result = run_demo(out_dir=tmp_path / "demo", epochs=1, vilt_epochs=1, scenes=(40, 12, 3), dit_epochs=1)
    assert 0.0 <= result["val_top1"] <= 1.0
    run = tmp_path / "demo" / "run"
    for name in ("training_curves.png", "confusion_matrix.png", "attention.png", "metrics.json"):
        assert (run / name).is_file(), name
    model = vitkit.from_pretrained(run / "model")
    assert model.config.labels == tuple(str(i) for i in range(10))
    # part 2: a ViLT trained on generated scenes, with its VQA accuracy and a word-patch alignment picture
    assert 0.0 <= result["vilt"]["val_vqa_accuracy"] <= 1.0
    vqa_run = tmp_path / "demo" / "vqa-run"
    assert (vqa_run / "align.png").is_file() and (vqa_run / "training_curves.png").is_file()
    assert vitkit.from_pretrained(vqa_run / "model").config.task == "vqa"
    # part 3: a DiT trained on the digits, its samples judged by the part-1 ViT, a grid of them
    assert 0.0 <= result["dit"]["sample_accuracy"] <= 1.0
    dit_run = tmp_path / "demo" / "dit-run"
    assert (dit_run / "digits_grid.png").is_file() and (dit_run / "samples.png").is_file()
    assert type(vitkit.from_pretrained(dit_run / "model")).__name__ == "DiT"


@pytest.mark.slow
def test_demo_learns_digits(tmp_path):
    from vitkit.demo import run_demo

    assert run_demo(out_dir=tmp_path / "demo", vilt_epochs=0, dit_epochs=0)["val_top1"] >= 0.98
