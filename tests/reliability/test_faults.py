"""Faults injected into training and checkpointing, and what survives them.

kill -9 at several moments (mid-epoch, during a checkpoint write, during the best-model export), a full disk
during a save, a NaN or infinite loss, running out of memory. Nothing that was saved is lost: the previous
checkpoint stays readable, `--resume` finishes with bit-identical weights to an uninterrupted deterministic run,
and a diverged run stops with one error line. (tests/train/test_engine.py covers Ctrl-C mid-epoch and kill -9
after epoch 1; these add the other moments.)
"""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from vitkit.cli import main
from vitkit.errors import VitkitError
from vitkit.models.base import WEIGHTS_FILE
from vitkit.train.state import STATE_FILE, load_state, save_state
from vitkit.utils.files import atomic_write_bytes

# 2 epochs of 5 steps; the learning rate is high enough that val accuracy improves in epoch 2, so the best model
# is exported after both (the export kill point needs a second export).
EXACT = ["--model", "vit_pico_patch2_16", "--batch-size", "32", "--no-progress", "--workers", "0", "--deterministic",
         "--drop-path", "0.1", "--log-every", "1", "--epochs", "2", "--warmup-epochs", "0", "--lr", "0.005"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread here and in the child processes: bit-identical weights need the same reduction
    order in both, and tiny models run fastest on one thread of a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """4 classes x (40 train + 8 val) 16x16 grey images, the class being the mean brightness: 5 steps per epoch."""
    root = tmp_path_factory.mktemp("faults-data")
    rng = np.random.default_rng(0)
    for c in range(4):
        for split, n in (("train", 40), ("val", 8)):
            folder = root / split / f"c{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                img = np.clip(rng.normal(40 + 55 * c, 30, (16, 16)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory) -> Path:
    """The uninterrupted reference run."""
    out = tmp_path_factory.mktemp("straight") / "run"
    assert main(["train", "--data", str(data), "--out", str(out), *EXACT]) == 0
    return out


def exports(run: Path) -> int:
    """How many times the run exported a better model/ (val top-1 of the weights or their EMA went up)."""
    best, n = -1.0, 0
    for record in load_state(run)["run"]["history"]:
        score = max(record["val_top1"], record.get("ema_val_top1", -1.0))
        if score > best:
            best, n = score, n + 1
    return n


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_state(run)["model"]


def assert_same_run(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    ea, eb = load_file(str(a / "model" / WEIGHTS_FILE)), load_file(str(b / "model" / WEIGHTS_FILE))
    assert all(torch.equal(ea[k], eb[k]) for k in ea)  # the exported best model too


# A child `vitkit train` that SIGKILLs itself at a chosen moment: the Nth optimizer step, halfway through writing
# the Nth checkpoint, or halfway through writing the Nth exported model.safetensors.
CHILD = textwrap.dedent("""
    import io, os, signal, sys
    import torch
    torch.set_num_threads(int(os.environ["THREADS"]))
    where, n = os.environ["KILL_AT"], int(os.environ["KILL_N"])
    count = {"n": 0}

    def hit() -> bool:
        count["n"] += 1
        return count["n"] == n

    def die_halfway(f, data: bytes) -> None:
        f.write(data[: len(data) // 2])
        f.flush()
        os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    if where == "step":
        import vitkit.train.engine as engine
        real_set_lr = engine.set_lr
        def set_lr(*args, **kwargs):
            if hit():
                os.kill(os.getpid(), signal.SIGKILL)
            return real_set_lr(*args, **kwargs)
        engine.set_lr = set_lr
    elif where == "checkpoint":
        real_save = torch.save
        def save(obj, f, *args, **kwargs):
            if isinstance(obj, dict) and obj.get("format") == "vitkit-train" and hit():
                buf = io.BytesIO()
                real_save(obj, buf, *args, **kwargs)
                die_halfway(f, buf.getvalue())
            return real_save(obj, f, *args, **kwargs)
        torch.save = save
    elif where == "export":
        import vitkit.models.base as model_base
        real_write = model_base.atomic_write_bytes
        def write(path, data):
            if path.name == "model.safetensors" and hit():
                import tempfile
                fd, _ = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
                with os.fdopen(fd, "wb") as f:
                    die_halfway(f, data)
            return real_write(path, data)
        model_base.atomic_write_bytes = write
    from vitkit.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def killed_run(data: Path, out: Path, where: str, n: int) -> None:
    env = {**os.environ, "KILL_AT": where, "KILL_N": str(n), "THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", CHILD, "train", "--data", str(data), "--out", str(out), *EXACT],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == -9, proc.stderr[-2000:]  # it really died by SIGKILL at that moment


@pytest.mark.parametrize("where, n", [
    ("step", 8),  # mid-epoch 2 (5 steps per epoch), after the epoch-1 checkpoint
    ("checkpoint", 2),  # halfway through writing the last (epoch-2) checkpoint
    ("export", 2),  # halfway through exporting the better model/ of epoch 2
])
def test_kill9_then_resume_gives_the_same_weights(data, straight, tmp_path, capsys, where, n):
    if where == "export":
        assert exports(straight) >= 2, "the reference run must export a better model at least twice"
    out = tmp_path / "run"
    killed_run(data, out, where, n)
    before = load_state(out)  # the previous checkpoint survived the kill intact
    assert before["run"]["epoch"] >= 1
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 0, capsys.readouterr().err
    assert_same_run(straight, out)


@pytest.mark.parametrize("where, n", [("checkpoint", 1)])
def test_kill9_before_the_first_checkpoint_is_a_clear_resume_error(data, tmp_path, capsys, where, n):
    """Checkpoints are written at epoch ends: killed before the first one completes, there is nothing to resume
    (and no half-written checkpoint.pt to trip over); --overwrite starts again."""
    out = tmp_path / "run"
    killed_run(data, out, where, n)
    assert not (out / STATE_FILE).exists()
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "checkpoint.pt" in err.strip().splitlines()[-1]


# ------------------------------------------------------------------------------------------- disk full
def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _disk_full_after(nbytes: int):
    """A torch.save that writes `nbytes`, then fails as a full disk does."""

    def save(obj, f, *args, **kwargs):
        f.write(b"\0" * nbytes)
        raise OSError(errno.ENOSPC, "No space left on device")

    return save


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    save_state({"format": "vitkit-train", "model": {"w": torch.arange(4.0)}, "run": {"epoch": 1}}, tmp_path)
    before = _digest(tmp_path / STATE_FILE)
    monkeypatch.setattr(torch, "save", _disk_full_after(4096))
    with pytest.raises(VitkitError, match=r"No space left on device.*the previous checkpoint is kept"):
        save_state({"format": "vitkit-train", "model": {"w": torch.zeros(4)}, "run": {"epoch": 2}}, tmp_path)
    assert _digest(tmp_path / STATE_FILE) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_FILE]  # the partial temp file is gone
    assert load_state(tmp_path)["run"]["epoch"] == 1


def test_disk_full_while_exporting_keeps_the_previous_model_file(tmp_path, monkeypatch):
    target = tmp_path / WEIGHTS_FILE
    atomic_write_bytes(target, b"previous")

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[:10])
            raise OSError(errno.ENOSPC, "No space left on device")

    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode)))
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new content that does not fit")
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == [WEIGHTS_FILE]


def test_disk_full_during_training_keeps_the_last_good_checkpoint_and_resumes(data, straight, tmp_path,
                                                                               monkeypatch, capsys):
    """The epoch-2 checkpoint write fails with ENOSPC: the run stops, the epoch-1 checkpoint is intact, and once
    there is space again --resume finishes with the uninterrupted run's weights."""
    out = tmp_path / "run"
    real_save, calls = torch.save, {"n": 0}

    def save(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("format") == "vitkit-train":
            calls["n"] += 1
            if calls["n"] == 2:
                return _disk_full_after(1000)(obj, f)
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    capsys.readouterr()
    assert main(["train", "--data", str(data), "--out", str(out), *EXACT]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "the previous checkpoint is kept" in err.strip().splitlines()[-1]
    assert load_state(out)["run"]["epoch"] == 1
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(torch, "save", real_save)
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 0, capsys.readouterr().err
    assert_same_run(straight, out)


class _FullDisk:
    """A file object on a disk that fills up after 10 bytes."""

    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        self.f.write(data[:10])
        raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_while_exporting_mid_run_keeps_the_last_good_checkpoint_and_resumes(data, straight, tmp_path,
                                                                                      monkeypatch, capsys):
    """The epoch-2 best-model export hits a full disk (it used to escape as a traceback): one error line, the
    epoch-1 checkpoint and model/ intact, no temp file left; --resume later ends with the uninterrupted weights."""
    assert exports(straight) >= 2, "the reference run must export a better model at least twice"
    real_mkstemp, real_fdopen = tempfile.mkstemp, os.fdopen
    doomed, count = set(), {"exports": 0}

    def mkstemp(*args, prefix=None, **kwargs):
        fd, name = real_mkstemp(*args, prefix=prefix, **kwargs)
        if prefix == f".{WEIGHTS_FILE}.":
            count["exports"] += 1
            if count["exports"] == 2:
                doomed.add(fd)
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: _FullDisk(real_fdopen(fd, *a, **k)) if fd in doomed
                        else real_fdopen(fd, *a, **k))
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(["train", "--data", str(data), "--out", str(out), *EXACT]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"could not write {out / 'model' / WEIGHTS_FILE} (No space left on device)" in line
    assert "the last good checkpoint is kept" in line
    assert load_state(out)["run"]["epoch"] == 1
    assert not [p for d in (out, out / "model") for p in d.iterdir() if p.name.endswith(".tmp")]
    load_file(str(out / "model" / WEIGHTS_FILE))  # the epoch-1 export, whole
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 0, capsys.readouterr().err
    assert_same_run(straight, out)


# ------------------------------------------------------------------------------------------- bad resume
@pytest.mark.parametrize("damage", ["truncate", "garbage", "short-pickle"])
def test_resume_from_a_damaged_checkpoint_is_a_clear_error(straight, tmp_path, capsys, damage):
    out = tmp_path / "run"
    out.mkdir()
    raw = (straight / STATE_FILE).read_bytes()
    bad = {"truncate": raw[: len(raw) // 2], "garbage": b"\x80\x02" + b"\x00" * 64,
           "short-pickle": b"K\x01K@\x87q\x08."}
    (out / STATE_FILE).write_bytes(bad[damage])
    capsys.readouterr()
    code = main(["train", "--resume", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert "error:" in lines[-1] and "checkpoint.pt" in lines[-1] and len(lines) == 1


def test_resume_from_a_checkpoint_with_code_is_refused(straight, tmp_path, capsys):
    """A checkpoint.pt swapped for a pickle that runs code is refused (weights_only), nothing runs."""
    out = tmp_path / "run"
    out.mkdir()

    class Evil:
        def __reduce__(self):
            return os.mkdir, (str(tmp_path / "pwned"),)

    torch.save({**torch.load(straight / STATE_FILE, weights_only=True), "evil": Evil()}, out / STATE_FILE)
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 2
    assert "checkpoint.pt" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists()


# ------------------------------------------------------------------------------------ NaN / inf / OOM
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch, capsys, bad):
    from vitkit.train.tasks.classification import ClassificationTask

    real_step = ClassificationTask.train_step

    def step(self, model, batch, ctx):
        loss, extras = real_step(self, model, batch, ctx)
        return (loss * bad if ctx.global_step >= 7 else loss), extras  # epoch 2, step 3

    monkeypatch.setattr(ClassificationTask, "train_step", step)
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(["train", "--data", str(data), "--out", str(out), *EXACT]) == 2
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert "Traceback" not in err and f"loss became {bad} at epoch 2, step 3" in line
    assert "the last good checkpoint is kept" in line
    saved = load_state(out)
    assert saved["run"]["epoch"] == 1  # the epoch-1 checkpoint, not one with NaN weights
    assert all(torch.isfinite(v).all() for v in saved["model"].values())


def test_out_of_memory_suggests_a_smaller_batch_or_accumulation(data, tmp_path, monkeypatch, capsys):
    from vitkit.train.tasks.classification import ClassificationTask

    def step(self, model, batch, ctx):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(ClassificationTask, "train_step", step)
    capsys.readouterr()
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "run"), *EXACT])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "--batch-size" in err and "--accum-steps" in err
