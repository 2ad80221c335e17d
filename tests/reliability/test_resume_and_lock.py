"""`vitkit train --resume RUN` with other options, the run directory's lock, rank 0 alone preparing the folder,
and temp files of killed runs cleaned at the next start (vitkit.train.run_dir)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image

import vitkit
from vitkit.cli import main
from vitkit.errors import VitkitError
from vitkit.train.run_dir import LOCK_FILE, RunDirectory, data_fingerprint, env_rank
from vitkit.train.state import STATE_FILE, load_state

SRC = str(Path(vitkit.__file__).resolve().parents[1])
FAST = ["--model", "vit_pico_patch2_16", "--batch-size", "8", "--no-progress", "--workers", "0", "--no-ema",
        "--epochs", "1"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def image_folder(root: Path, shade: int = 0) -> Path:
    for split, n in (("train", 8), ("val", 2)):
        for c, name in enumerate(("ant", "bee")):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("L", (8, 8), 40 + 100 * c + i + shade).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory) -> tuple[Path, Path]:
    """(data, run): a finished 1-epoch run, copied by the tests that change it."""
    root = tmp_path_factory.mktemp("resume")
    data, run = image_folder(root / "data"), root / "run"
    assert main(["train", "--data", str(data), "--out", str(run), *FAST]) == 0
    return data, run


def copy_run(one_epoch_run, tmp_path) -> tuple[Path, Path]:
    data, run = one_epoch_run
    shutil.copytree(data, tmp_path / "data")
    shutil.copytree(run, tmp_path / "run")
    state = load_state(tmp_path / "run")  # the copy's run_args point at the copied data, as if trained there
    state["run_args"]["data"] = str((tmp_path / "data").resolve())
    torch.save(state, tmp_path / "run" / STATE_FILE)
    return tmp_path / "data", tmp_path / "run"


def last_error(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


# ------------------------------------------------------------------------------------------------ resume options
def test_options_that_cannot_change_are_refused_with_every_difference(one_epoch_run, tmp_path, capsys):
    _, run = copy_run(one_epoch_run, tmp_path)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--lr", "0.5", "--batch-size", "4", "--model", "vit_nano_patch4_32",
                 "--task", "vqa"]) == 2
    line = last_error(capsys)
    for needle in ("cannot change mid-run", "--lr 0.5", "--batch-size 4 (the run's: 8)", "--model vit_nano_patch4_32",
                   "--task vqa (the run's: classification)", "--epochs (to extend the run"):
        assert needle in line, (needle, line)
    assert load_state(run)["run"]["epoch"] == 1  # nothing ran


def test_epochs_extend_a_finished_run(one_epoch_run, tmp_path, capsys):
    _, run = copy_run(one_epoch_run, tmp_path)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2", "--batch-size", "8"]) == 0  # same batch: fine
    err = capsys.readouterr().err
    assert "resuming with --epochs 1 -> 2" in err
    state = load_state(run)
    assert state["run"]["epoch"] == 2 and state["train_config"]["epochs"] == 2
    assert [r["epoch"] for r in state["run"]["history"]] == [1, 2]
    assert main(["train", "--resume", str(run), "--epochs", "1"]) == 2
    assert "already completed 2 epochs" in last_error(capsys)


def test_moved_data_is_followed_when_it_holds_the_same_files(one_epoch_run, tmp_path, capsys):
    data, run = copy_run(one_epoch_run, tmp_path)
    moved = tmp_path / "elsewhere" / "data"
    moved.parent.mkdir()
    shutil.move(data, moved)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    assert "the run's data" in (line := last_error(capsys)) and "is gone" in line and "--data" in line
    other = image_folder(tmp_path / "other", shade=1)  # same names and sizes? no: other pixels, other PNG sizes
    (other / "train" / "ant" / "extra.png").write_bytes((other / "train" / "ant" / "0.png").read_bytes())
    assert main(["train", "--resume", str(run), "--epochs", "2", "--data", str(other)]) == 2
    assert "not the data this run started with" in last_error(capsys)
    assert main(["train", "--resume", str(run), "--epochs", "2", "--data", str(moved)]) == 0
    err = capsys.readouterr().err
    assert f"-> {moved} (the same 20 files" in err
    assert load_state(run)["run_args"]["data"] == str(moved.resolve())


def test_data_fingerprint_is_by_names_and_sizes(tmp_path):
    a = image_folder(tmp_path / "a")
    b = tmp_path / "b"
    shutil.copytree(a, b)
    assert data_fingerprint(a) == data_fingerprint(b) and data_fingerprint(a)["files"] == 20
    (b / "train" / "ant" / "0.png").write_bytes(b"\0" * 3)
    assert data_fingerprint(a) != data_fingerprint(b)
    assert data_fingerprint(tmp_path / "no-such-pattern-*.tar") is None


def test_resume_and_overwrite_together_are_refused(one_epoch_run, tmp_path, capsys):
    _, run = copy_run(one_epoch_run, tmp_path)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--overwrite"]) == 2
    assert "pass one of them" in last_error(capsys)
    assert (run / STATE_FILE).is_file()


# -------------------------------------------------------------------------------------------------------- lock
HOLDER = textwrap.dedent("""
    import sys, time
    from vitkit.train.run_dir import RunDirectory
    with RunDirectory(sys.argv[1], resume=False, overwrite=False):
        print("locked", flush=True)
        time.sleep(120)
""")


def test_a_second_run_on_the_same_folder_fails_fast(tmp_path, capsys):
    data = image_folder(tmp_path / "data")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "run")], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": SRC})
    try:
        assert holder.stdout.readline().strip() == "locked"
        capsys.readouterr()
        assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), *FAST]) == 2
        line = last_error(capsys)
        assert "is in use by another vitkit run" in line and f"pid {holder.pid} on host {platform.node()}" in line
        assert not (tmp_path / "run" / "metrics.jsonl").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder died without unlocking (SIGKILL): its lock file is left, and taken over
    assert json.loads((tmp_path / "run" / LOCK_FILE).read_text())["pid"] == holder.pid
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), *FAST]) == 0
    assert f"the run that held it (pid {holder.pid}" in capsys.readouterr().err
    assert not (tmp_path / "run" / LOCK_FILE).exists()  # released at the end


def test_a_lock_from_another_host_is_not_taken_over(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_FILE).write_text(json.dumps({"pid": 4242, "host": "gpu-node-7", "started": "2026-12-01 10:00:00"}))
    with pytest.raises(VitkitError, match=r"another host \(pid 4242 on host gpu-node-7.*delete .*vitkit-run\.lock"):
        with RunDirectory(run, resume=False, overwrite=False):
            pass
    assert (run / LOCK_FILE).exists()


# --------------------------------------------------------------------------------------- rank 0, stale temp files
def test_only_rank_0_touches_the_run_folder(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text("{}")
    monkeypatch.setenv("RANK", "1")
    assert env_rank() == 1
    with RunDirectory(run, resume=False, overwrite=True, is_main=env_rank() == 0):
        assert (run / "metrics.json").exists() and not (run / LOCK_FILE).exists()  # nothing deleted, no lock
    monkeypatch.setenv("RANK", "0")
    with RunDirectory(run, resume=False, overwrite=True, is_main=env_rank() == 0):
        assert not (run / "metrics.json").exists() and (run / LOCK_FILE).exists()


def test_temp_files_of_a_killed_run_are_removed_at_the_next_start(one_epoch_run, tmp_path, capsys):
    _, run = copy_run(one_epoch_run, tmp_path)
    stale = [run / ".checkpoint.pt.k1ll3d_x.tmp", run / "model" / ".model.safetensors.abcd1234.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    assert not any(p.exists() for p in stale)
    assert "left by an interrupted write" in capsys.readouterr().err
