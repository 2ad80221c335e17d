"""The training engine end to end through `vitkit train`: outputs, exact resume, DDP equivalence."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import vitkit
from vitkit.cli import main
from vitkit.train.state import STATE_FILE

# A fast, fully deterministic recipe on the 0.14M-parameter preset.
FAST = ["--model", "vit_pico_patch2_16", "--batch-size", "64", "--no-progress", "--workers", "0"]
EXACT = [*FAST, "--deterministic", "--drop-path", "0.1"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vitkit.cli", *args], capture_output=True, text=True, timeout=600)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / STATE_FILE, map_location="cpu", weights_only=True)["model"]


def test_train_writes_everything_and_eval_predict_agree(digits16, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(digits16), "--out", str(out), "--epochs", "2", *FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"val_top1", "val_top5", "val_loss", "epoch", "weights", "val_per_class"} <= set(metrics)
    assert 0.0 <= metrics["val_top1"] <= 1.0
    for name in ("training_curves.png", "confusion_matrix.png", "metrics.jsonl", STATE_FILE):
        assert (out / name).is_file(), name
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in r and "lr" in r for r in lines) and any("val_top1" in r for r in lines)
    clock = [r["elapsed_s"] for r in lines if "val_top1" in r]  # wall time at each epoch's end
    assert len(clock) == 2 and 0 < clock[0] < clock[1]

    model = vitkit.from_pretrained(out / "model")
    assert model.config.labels == tuple(str(i) for i in range(10)) and model.config.in_chans == 1
    capsys.readouterr()
    assert main(["eval", "--model", str(out / "model"), "--data", str(digits16), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["val_top1"] == pytest.approx(metrics["val_top1"], abs=1e-9)
    assert evaluated["val_loss"] == pytest.approx(metrics["val_loss"], rel=1e-5)

    image = next((digits16 / "val" / "3").iterdir())
    assert main(["predict", "--model", str(out / "model"), "--image", str(image), "--top-k", "3", "--json"]) == 0
    preds = json.loads(capsys.readouterr().out)["predictions"]
    assert len(preds) == 3 and [p["score"] for p in preds] == sorted((p["score"] for p in preds), reverse=True)
    assert all(p["label"] in model.config.labels for p in preds)
    assert main(["predict", "--model", str(out / "model"), "--image", str(digits16 / "val" / "3")]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == len(list((digits16 / "val" / "3").iterdir()))


def test_refuses_to_mix_runs(digits16, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", str(digits16), "--out", str(out), "--epochs", "1", *FAST]) == 0
    capsys.readouterr()
    assert main(["train", "--data", str(digits16), "--out", str(out), "--epochs", "1", *FAST]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", "--data", str(digits16), "--out", str(out), "--epochs", "1", "--overwrite", *FAST]) == 0


def test_deterministic_runs_repeat_exactly(digits16, tmp_path):
    for name in ("a", "b"):
        assert main(["train", "--data", str(digits16), "--out", str(tmp_path / name), "--epochs", "1", *EXACT]) == 0
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


def _wait_for(predicate, timeout: float) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


@pytest.mark.parametrize("how", ["sigint-mid-epoch", "kill9-after-epoch-1"])
def test_interrupted_run_resumes_to_the_same_weights(digits16, tmp_path, how):
    args = ["--data", str(digits16), "--epochs", "3", *EXACT, "--log-every", "1"]
    assert cli("train", "--out", str(tmp_path / "straight"), *args).returncode == 0

    out = tmp_path / "interrupted"
    proc = subprocess.Popen([sys.executable, "-m", "vitkit.cli", "train", "--out", str(out), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if how == "sigint-mid-epoch":
            # wait until some steps of epoch 2 are logged, then Ctrl-C: a checkpoint is written mid-epoch
            def in_epoch_2() -> bool:
                path = out / "metrics.jsonl"
                return path.exists() and any('"epoch": 2' in line and '"loss"' in line
                                             for line in path.read_text().splitlines())
            _wait_for(in_epoch_2, 300)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 130, err
            saved = torch.load(out / STATE_FILE, map_location="cpu", weights_only=True)
            assert saved["run"]["epoch"] == 1 and saved["run"]["step_in_epoch"] > 0
            assert saved["run"]["elapsed_s"] > saved["run"]["history"][0]["elapsed_s"] > 0  # part of epoch 2 counted
        else:
            _wait_for(lambda: (out / STATE_FILE).exists(), 300)
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    resumed = cli("train", "--resume", str(out))
    assert resumed.returncode == 0, resumed.stderr
    a, b = weights(tmp_path / "straight"), weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    clock = [r["elapsed_s"] for r in torch.load(out / STATE_FILE, weights_only=True)["run"]["history"]]
    assert clock == sorted(clock) and len(clock) == 3  # the wall clock carries on across the resume


def test_two_gloo_processes_match_one_process(digits16, tmp_path):
    """DDP: 2 processes x 32 samples per step == 1 process x 64 (no per-sample randomness: crops, erasing,
    RandAugment and drop-path off)."""
    args = ["--data", str(digits16), "--epochs", "1", *FAST, "--deterministic", "--drop-path", "0",
            "--randaugment", "none", "--random-erasing", "0", "--crop", "rrc", "--crop-scale", "1", "--no-ema"]
    one = cli("train", "--out", str(tmp_path / "one"), *args)
    assert one.returncode == 0, one.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
         "-m", "vitkit.cli", "train", "--out", str(tmp_path / "two"), *args],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    for k in a:
        x, y = a[k], b[k]
        if k.endswith("attn.qkv.bias"):
            # The key bias adds a per-query constant to every score, which softmax removes: its gradient is
            # zero up to rounding, and Adam turns that rounding noise (which depends on the reduction order,
            # so on the process count) into lr-sized steps. Compare the query and value biases only.
            d = x.shape[0] // 3
            x, y = torch.cat([x[:d], x[2 * d :]]), torch.cat([y[:d], y[2 * d :]])
        torch.testing.assert_close(x, y, rtol=1e-4, atol=2e-5, msg=lambda m, k=k: f"{k}: {m}")


def test_fine_tune_from_pretrained_resets_head_and_resamples(digits16, tmp_path):
    """--model NAME --pretrained SRC: weights come from SRC, the head is reset to the data's 10 classes and the
    position grid is resampled for --img-size."""
    src = vitkit.create_model("vit_pico_patch2_16", num_classes=3, labels=("a", "b", "c"))
    src.save_pretrained(tmp_path / "src")
    out = tmp_path / "ft"
    assert main(["train", "--data", str(digits16), "--out", str(out), "--epochs", "1", "--model",
                 "vit_pico_patch2_16", "--pretrained", str(tmp_path / "src"), "--img-size", "24", *FAST[2:]]) == 0
    model = vitkit.from_pretrained(out / "model")
    assert model.config.num_classes == 10 and model.config.img_size == 24 and model.config.in_chans == 3
    assert model.pos_embed.shape[1] == 1 + 12 * 12


def test_bf16_autocast_trains(digits16, tmp_path):
    out = tmp_path / "bf16"
    assert main(["train", "--data", str(digits16), "--out", str(out), "--epochs", "1", "--amp", "bf16", *FAST]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["loss"] == r["loss"] for r in rows if "loss" in r)  # finite, not NaN
    assert vitkit.from_pretrained(out / "model").pos_embed.dtype == torch.float32


@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")),
                    reason="torch.compile's CPU backend (inductor) needs a C++ compiler")
def test_compile_trains_like_eager(digits16, tmp_path):
    """--compile (torch.compile, inductor on the CPU) trains the same model: after one deterministic epoch its
    weights are those of the eager run up to the float rounding of fused kernels, and the exported model is the
    plain (uncompiled) module."""
    runs = {}
    for name, extra in (("eager", []), ("compiled", ["--compile"])):
        out = tmp_path / name
        assert main(["train", "--data", str(digits16), "--out", str(out), "--epochs", "1", *EXACT, *extra]) == 0
        runs[name] = out
    a, b = weights(runs["eager"]), weights(runs["compiled"])
    assert a.keys() == b.keys() and not any("_orig_mod" in k for k in b)
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=2e-4, rtol=1e-3, msg=k)
    assert vitkit.from_pretrained(runs["compiled"] / "model").config.num_classes == 10


def test_tensorboard_event_files_hold_the_logged_scalars(digits16, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    assert main(["train", "--data", str(digits16), "--out", str(out), "--epochs", "1", "--log-every", "5",
                 "--tensorboard", *FAST]) == 0
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "val/val_top1"} <= tags
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in logged if "val_top1" in r]
    assert [e.value for e in events.Scalars("val/val_top1")] == pytest.approx([r["val_top1"] for r in val])
