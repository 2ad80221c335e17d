"""`--task diffusion` on the training engine, `vitkit sample`, `vitkit eval` for DiT models and the sample judge
(classifier accuracy, Frechet distance), end to end on a tiny generated ImageFolder."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vitkit.cli import main
from vitkit.inference.dit import frechet_distance, judge_samples
from vitkit.registry import create_model, from_pretrained
from vitkit.train.config import TrainConfig, resolve_diffusion_recipe
from vitkit.train.launch import run_train

CLASSES = ("bar", "dot", "ring")
TINY = TrainConfig(epochs=1, batch_size=8, progress=False, log_every=1, seed=0)


def _draw(kind: str, rng: np.random.Generator) -> np.ndarray:
    im = np.zeros((16, 16), np.uint8)
    cy, cx = rng.integers(5, 11, size=2)
    yy, xx = np.mgrid[:16, :16]
    r = np.hypot(yy - cy, xx - cx)
    if kind == "bar":
        im[max(cy - 1, 0):cy + 2, 2:14] = 255
    elif kind == "dot":
        im[r < 3] = 255
    else:
        im[(r > 2.5) & (r < 4.5)] = 255
    return im


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """3 classes of 16x16 grey shapes, 12 train / 4 val images each."""
    root = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("val", 4)):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(_draw(c, rng)).save(root / split / c / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def trained(shapes, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("dit-run")
    run_train(task="diffusion", data=shapes, out=run, img_size=16, cfg=replace(TINY, epochs=2), overwrite=True)
    return run


def _jsonl(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_diffusion_run_exports_model_metrics_curves_and_samples(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert np.isfinite(metrics["val_loss"]) and metrics["val_loss"] > 0
    assert {"val_mse", "val_vb", "epoch", "weights"} <= set(metrics)
    rows = _jsonl(trained)
    steps = [r for r in rows if "loss" in r and "lr" in r]
    assert steps and all({"mse", "vb"} <= set(r) for r in steps)  # both loss terms are logged per window
    assert all(abs(r["loss"] - r["mse"] - r["vb"]) < 1e-4 * max(1.0, r["loss"]) for r in steps)
    for name in ("training_curves.png", "samples.png"):
        assert (trained / name).stat().st_size > 0
    with Image.open(trained / "samples.png") as im:  # one row per class of 16x16 samples, enlarged
        assert im.height >= 3 * 16
    model = from_pretrained(trained / "model")
    assert type(model).__name__ == "DiT"
    c = model.config
    assert (c.input_size, c.in_channels, c.num_classes, tuple(c.labels)) == (16, 1, 3, CLASSES)


def test_best_weights_are_the_lowest_val_loss(trained):
    evals = [r for r in _jsonl(trained) if "val_loss" in r]
    best = json.loads((trained / "metrics.json").read_text())
    candidates = [r["val_loss"] for r in evals] + [r["ema_val_loss"] for r in evals if "ema_val_loss" in r]
    assert best["val_loss"] == min(candidates)


def test_eval_reproduces_metrics_json_whatever_the_batch_size(trained, shapes, capsys):
    best = json.loads((trained / "metrics.json").read_text())
    for bs in ("5", "128"):
        assert main(["eval", "--model", str(trained / "model"), "--data", str(shapes), "--json",
                     "--batch-size", bs]) == 0
        ev = json.loads(capsys.readouterr().out)
        assert ev["val_loss"] == pytest.approx(best["val_loss"], rel=1e-5)
        assert ev["num_samples"] == 12


def test_sample_cli_grid_and_per_image_files(trained, tmp_path, capsys):
    model = str(trained / "model")
    assert main(["sample", "--model", model, "--class-label", "dot", "ring", "--num", "3", "--steps", "5",
                 "--out", str(tmp_path / "grid.png")]) == 0
    with Image.open(tmp_path / "grid.png") as im:
        assert im.mode == "RGB" and im.height > 2 * 16
    assert main(["sample", "--model", model, "--class-label", "0", "--num", "2", "--steps", "4", "--method", "ddim",
                 "--out-dir", str(tmp_path / "each")]) == 0
    files = sorted((tmp_path / "each").glob("*.png"))
    assert [f.name.split("_")[0] for f in files] == ["bar", "bar"]
    with Image.open(files[0]) as im:
        assert im.size == (16, 16) and im.mode == "L"
    capsys.readouterr()
    # same seed, same samples; another seed, others
    a, b, c = (tmp_path / f"{n}.png" for n in "abc")
    for path, seed in ((a, "1"), (b, "1"), (c, "2")):
        assert main(["sample", "--model", model, "--class-label", "ring", "--num", "2", "--steps", "3",
                     "--seed", seed, "--out", str(path)]) == 0
    arr = [np.asarray(Image.open(p)) for p in (a, b, c)]
    assert np.array_equal(arr[0], arr[1]) and not np.array_equal(arr[0], arr[2])


def test_sample_cli_errors(trained, tmp_path, capsys):
    model = str(trained / "model")
    assert main(["sample", "--model", model, "--class-label", "cat", "--out", str(tmp_path / "g.png")]) == 2
    assert "not one of the model's classes" in capsys.readouterr().err
    assert main(["sample", "--model", model, "--class-label", "dot"]) == 2
    assert "exactly one of --out" in capsys.readouterr().err


def test_ctrl_c_mid_epoch_then_resume_gives_identical_weights(shapes, tmp_path, monkeypatch):
    import os
    import signal

    from vitkit.train.tasks.diffusion import DiffusionTask

    cfg = replace(TINY, epochs=2, deterministic=True)
    whole = tmp_path / "whole"
    run_train(task="diffusion", data=shapes, out=whole, img_size=16, cfg=cfg)
    calls = {"n": 0}
    step = DiffusionTask.train_step

    def interrupted_step(self, model, batch, ctx):
        calls["n"] += 1
        if calls["n"] == 6:  # epoch 2 (4 steps per epoch): Ctrl-C, as a user would
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, model, batch, ctx)

    monkeypatch.setattr(DiffusionTask, "train_step", interrupted_step)
    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        run_train(task="diffusion", data=shapes, out=part, img_size=16, cfg=cfg)
    saved = torch.load(part / "checkpoint.pt", weights_only=True)
    assert saved["run"]["epoch"] == 1 and saved["run"]["step_in_epoch"] == 2
    monkeypatch.setattr(DiffusionTask, "train_step", step)
    run_train(task="diffusion", data=None, out=part, resume=True)
    a = torch.load(whole / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(part / "checkpoint.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_recipe_defaults():
    cfg = resolve_diffusion_recipe(TrainConfig(), num_train=1438, in_chans=1, pretrained=False)
    assert (cfg.weight_decay, cfg.hflip, cfg.randaugment, cfg.crop, cfg.mixup, cfg.lr) == (0.0, 0.0, "none", "none",
                                                                                           0.0, 2e-3)
    assert cfg.epochs == 70  # about 100k images seen
    assert resolve_diffusion_recipe(TrainConfig(), num_train=50_000, in_chans=3, pretrained=False).epochs == 20
    assert resolve_diffusion_recipe(TrainConfig(), num_train=10, in_chans=3, pretrained=True).lr == 1e-4
    assert resolve_diffusion_recipe(TrainConfig(), num_train=10, in_chans=3, pretrained=False).hflip == 0.5
    assert resolve_diffusion_recipe(TrainConfig(weight_decay=0.1), num_train=10, in_chans=3,
                                    pretrained=False).weight_decay == 0.1


def test_training_a_vit_as_diffusion_is_refused(shapes, tmp_path, capsys):
    assert main(["train", "--task", "diffusion", "--data", str(shapes), "--out", str(tmp_path / "r"),
                 "--model", "vit_nano_patch4_32", "--epochs", "1"]) == 2
    assert "trains a DiT" in capsys.readouterr().err


# ---- judging samples ----------------------------------------------------------------------------------------------


def test_frechet_distance_closed_forms():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 3, generator=g, dtype=torch.float64)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    shift = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift.square().sum()), rel=1e-9)
    # N(0, I) vs N(0, 4I): per dimension 1 + 4 - 2 * 2 = 1, against the scipy sqrtm formula on the sample covs
    scipy_linalg = pytest.importorskip("scipy.linalg")
    b = 2 * torch.randn(4000, 3, generator=g, dtype=torch.float64)
    ca, cb = np.cov(a.numpy().T), np.cov(b.numpy().T)
    ref = (np.sum((a.numpy().mean(0) - b.numpy().mean(0)) ** 2) + np.trace(ca + cb)
           - 2 * np.trace(scipy_linalg.sqrtm(ca @ cb).real))
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-8)
    assert frechet_distance(a, b) == pytest.approx(3.0, rel=0.1)


def test_judge_samples_counts_what_the_classifier_says(trained, shapes):
    dit = from_pretrained(trained / "model")
    # a "classifier" that calls everything "ring": accuracy is exactly the ring share
    clf = create_model("vit_nano_patch4_32", img_size=16, in_chans=1, mean=(0.5,), std=(0.5,), num_classes=3,
                       labels=CLASSES).eval()
    with torch.no_grad():
        clf.head.weight.zero_()
        clf.head.bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
    out = judge_samples(dit, clf, per_class=2, steps=3, data_dir=shapes, batch_size=4)
    assert out["sample_accuracy"] == pytest.approx(1 / 3)
    assert out["sample_accuracy_per_class"] == {"bar": 0.0, "dot": 0.0, "ring": 1.0}
    assert out["samples"].shape == (6, 16, 16, 1) and out["samples"].dtype == np.uint8
    assert out["sample_labels"] == ["bar", "bar", "dot", "dot", "ring", "ring"]
    assert out["frechet_distance"] >= 0 and out["frechet_distance_train_val"] >= 0 and out["num_real_val"] == 12
    assert out["num_generated"] == 6
    other = create_model("vit_nano_patch4_32", img_size=16, in_chans=1, num_classes=2, labels=("bar", "cat"))
    with pytest.raises(Exception, match="no class 'dot'"):
        judge_samples(dit, other, per_class=1, steps=2)


# ---- latent space (a VAE) -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory) -> Path:
    """A diffusers AutoencoderKL with two down blocks (factor 2, 4 latent channels), saved as a directory."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4, norm_num_groups=4,
        layers_per_block=1, sample_size=16)
    out = tmp_path_factory.mktemp("vae")
    vae.save_pretrained(out)
    return out


def test_latent_diffusion_with_a_vae_trains_samples_and_evaluates(shapes, tiny_vae, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--task", "diffusion", "--data", str(shapes), "--out", str(run), "--vae", str(tiny_vae),
                 "--img-size", "16", "--epochs", "1", "--batch-size", "8", "--no-progress"]) == 0
    capsys.readouterr()
    model = from_pretrained(run / "model")
    c = model.config
    assert (c.in_channels, c.input_size, c.vae, c.latent_scale) == (4, 8, str(tiny_vae), 0.18215)
    assert model.out_channels == 8 and (run / "samples.png").is_file()
    best = json.loads((run / "metrics.json").read_text())
    # config.vae names a local folder, not one of the official DiT VAEs: loaded only when the user says so
    assert main(["eval", "--model", str(run / "model"), "--data", str(shapes), "--json", "--batch-size", "7"]) == 2
    assert "--trust-vae" in capsys.readouterr().err
    assert main(["eval", "--model", str(run / "model"), "--data", str(shapes), "--json", "--batch-size", "7",
                 "--trust-vae"]) == 0
    assert json.loads(capsys.readouterr().out)["val_loss"] == pytest.approx(best["val_loss"], rel=1e-5)
    # samples are decoded by the VAE to images of the data's size, in colour (the VAE's channels)
    assert main(["sample", "--model", str(run / "model"), "--class-label", "dot", "--num", "2", "--steps", "3",
                 "--out-dir", str(tmp_path / "s"), "--vae", str(tiny_vae)]) == 0
    with Image.open(next((tmp_path / "s").glob("*.png"))) as im:
        assert im.size == (16, 16) and im.mode == "RGB"
    # what training diffused: the VAE's latents of the images, times latent_scale
    from vitkit.diffusion.sampling import load_vae
    from vitkit.train.tasks.diffusion import DiffusionTask

    vae = load_vae(str(tiny_vae))
    task = DiffusionTask(classes=list(CLASSES), diffusion=None, vae=vae, latent_scale=0.18215)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        expected = vae.encode(x).latent_dist.mean * 0.18215
    assert torch.allclose(task.to_model_space(x, sample=False), expected)


def test_vae_option_errors(shapes, tiny_vae, tmp_path, capsys):
    assert main(["train", "--task", "diffusion", "--data", str(shapes), "--out", str(tmp_path / "r"), "--vae",
                 str(tmp_path / "no-such-vae"), "--epochs", "1"]) == 2
    assert "could not load the VAE" in capsys.readouterr().err
    assert main(["train", "--task", "diffusion", "--data", str(shapes), "--out", str(tmp_path / "r2"), "--vae",
                 str(tiny_vae), "--img-size", "15", "--epochs", "1"]) == 2
    assert "not a multiple of the VAE's downsampling factor 2" in capsys.readouterr().err


def test_two_gloo_processes_train_and_validate_like_one(shapes, tmp_path, capsys):
    """DDP under torchrun: 2 processes train a DiT; the validation loss they all-reduce (each image at its own
    fixed timestep and noise, split over the ranks) equals one process evaluating the exported weights."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = tmp_path / "two"
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29547",
         "-m", "vitkit.cli", "train", "--task", "diffusion", "--data", str(shapes), "--out", str(run),
         "--img-size", "16", "--epochs", "1", "--batch-size", "8", "--no-progress", "--workers", "0"],
        capture_output=True, text=True, timeout=600, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    best = json.loads((run / "metrics.json").read_text())
    assert main(["eval", "--model", str(run / "model"), "--data", str(shapes), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["val_loss"] == pytest.approx(best["val_loss"], rel=1e-5)
