"""The run directory of `vitkit train --out RUN`: one run at a time, prepared by one process, and resumed only as
it was started.

- `RunDirectory` (a context manager) holds RUN/.vitkit-run.lock for the whole run: a second `vitkit train` on the
  same folder fails fast, naming the pid and host that hold it. The lock is an `flock` on that file, which the
  kernel releases when the process dies, so a lock left by a killed run is simply taken over (and logged). A lock
  naming another host is not taken over (on a shared filesystem that run may still be alive): the error says to
  delete the file if that run has ended. On entry it also refuses to mix two runs in one folder, deletes the old
  run's files with `--overwrite`, and removes temp files a killed run left behind. Under torchrun only rank 0
  does any of this; the other ranks never write to the folder.
- `data_fingerprint` describes the training data by content (file list and sizes) when a run starts, so that a
  resumed run can follow its data to a new place and know it is the same data.
- `reconcile_resume` compares the options given with `--resume` to the run's: the few that may change mid-run
  (`RESUMABLE`) are applied and logged, anything else is refused with the list of differences.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..errors import VitkitError
from ..utils.files import remove_stale_temps, write_error
from .config import TrainConfig
from .state import STATE_FILE

try:  # POSIX; elsewhere the lock falls back to checking whether the recorded pid still runs
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("vitkit")

LOCK_FILE = ".vitkit-run.lock"
RUN_FILES = (STATE_FILE, "metrics.json", "metrics.jsonl", "training_curves.png", "confusion_matrix.png",
             "samples.png")
#: Options a resumed run may change; every other one is fixed when the run starts.
RESUMABLE = {
    "epochs": "to extend the run (the learning-rate schedule then spans the new length)",
    "data": "a moved copy of the same data (checked by its file list and sizes)",
    "workers": "data-loading processes", "device": "where to compute", "progress": "progress bars",
    "log_every": "steps between metrics.jsonl lines",
}


def env_rank() -> int:
    """This process's rank under torchrun (RANK), 0 otherwise; known before the process group exists."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


# ------------------------------------------------------------------------------------------------- the lock
class RunDirectory:
    """`with RunDirectory(out, resume=..., overwrite=...):` the run folder, locked and prepared (module docstring).
    `is_main=False` (torchrun ranks above 0) makes it a no-op."""

    def __init__(self, out: str | Path, *, resume: bool, overwrite: bool, is_main: bool = True) -> None:
        self.out, self.resume, self.overwrite, self.is_main = Path(out), resume, overwrite, is_main
        self._fd: int | None = None

    def __enter__(self) -> RunDirectory:
        if not self.is_main:
            return self
        refuse_file_in_the_way(self.out)
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise write_error(self.out, e) from e
        self._lock()
        try:
            prepare_run_dir(self.out, resume=self.resume, overwrite=self.overwrite)
            for folder in (self.out, self.out / "model"):
                for p in remove_stale_temps(folder):
                    log.info("removed %s, left by an interrupted write", p)
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self._unlock()

    def _lock(self) -> None:
        path = self.out / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise write_error(path, e) from e
        try:
            previous = _read_holder(fd)
            if not _try_lock(fd, previous):
                raise VitkitError(f"{self.out} is in use by another vitkit run ({_describe(previous)}); wait for "
                                  "it to finish or give another --out")
            if previous and previous.get("host") != platform.node():
                raise VitkitError(
                    f"{self.out} was locked by a run on another host ({_describe(previous)}), which this host cannot "
                    f"check; if that run has ended, delete {path} and start again")
            if previous:
                log.warning("taking over %s: the run that held it (%s) is no longer running", path,
                            _describe(previous))
            holder = {"pid": os.getpid(), "host": platform.node(),
                      "started": time.strftime("%Y-%m-%d %H:%M:%S")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
            os.fsync(fd)
        except OSError as e:
            os.close(fd)
            raise write_error(path, e) from e
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _unlock(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            (self.out / LOCK_FILE).unlink()  # before closing: nobody can take the lock in between
        os.close(self._fd)  # releases the flock
        self._fd = None


def _read_holder(fd: int) -> dict[str, Any] | None:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"null")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _try_lock(fd: int, previous: dict[str, Any] | None) -> bool:
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    if previous and previous.get("host") == platform.node():  # no flock: is the recorded pid alive?
        with contextlib.suppress(ProcessLookupError, PermissionError, OSError, TypeError, ValueError):
            os.kill(int(previous["pid"]), 0)
            return False
    return True


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "details unknown"
    return f"pid {holder.get('pid')} on host {holder.get('host')}, started {holder.get('started')}"


def refuse_file_in_the_way(out: Path) -> None:
    """--out naming a file (or a path through one) is refused before anything runs."""
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                what = "is a file" if p == out else f"lies under {p}, which is a file"
                raise VitkitError(f"--out {out} {what}, not a folder for the run")
            return


def prepare_run_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to mix two runs in one directory unless told to resume or overwrite (which deletes the old run)."""
    taken = [name for name in (*RUN_FILES, "model") if (out / name).exists()]
    if resume:
        if not (out / STATE_FILE).is_file():
            raise VitkitError(f"{out} holds no {STATE_FILE} to resume from")
        return
    if taken and not overwrite:
        raise VitkitError(f"{out} already holds a run ({', '.join(taken)}); pass --resume {out} to continue it or "
                          "--overwrite to start over")
    for name in taken:
        path = out / name
        try:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        except OSError as e:
            raise VitkitError(f"--overwrite: could not delete {path} ({e.strerror or e})") from e


# ------------------------------------------------------------------------------------------ the data, by content
def data_fingerprint(data: str | Path) -> dict[str, Any] | None:
    """{"files", "bytes", "sha256"} of the data: every non-hidden file under `data` (or `data` itself, a file),
    by path relative to it and size. Symbolic links are followed, each real folder once. None when `data` is not
    a path on disk (e.g. a shard pattern)."""
    root = Path(data)
    if root.is_file():
        entries = [(root.name, root.stat().st_size)]
    elif root.is_dir():
        entries = []
        seen: set[tuple[int, int]] = set()
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            st = os.stat(dirpath)
            if (st.st_dev, st.st_ino) in seen:
                dirnames[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = Path(dirpath).relative_to(root)
            for name in filenames:
                if not name.startswith("."):
                    with contextlib.suppress(OSError):
                        entries.append(((rel / name).as_posix(), os.stat(Path(dirpath, name)).st_size))
    else:
        return None
    entries.sort()
    digest = hashlib.sha256("".join(f"{p}\0{n}\n" for p, n in entries).encode("utf-8", "surrogateescape"))
    return {"files": len(entries), "bytes": sum(n for _, n in entries), "sha256": digest.hexdigest()}


def _fingerprint_text(fp: dict[str, Any]) -> str:
    return f"{fp['files']:,} files, {fp['bytes']:,} bytes"


# ---------------------------------------------------------------------------------------------- resuming
@dataclass
class Resumed:
    """What a resumed run goes on with: the run's task, data and recipe with the allowed changes applied."""

    task: str
    data: Path
    skip_bad_images: bool
    cfg: TrainConfig
    run_args: dict[str, Any]


def reconcile_resume(saved: dict[str, Any], changes: dict[str, Any], out: Path) -> Resumed:
    """Apply the options given with `--resume` (`changes`: option name -> value, only those the user gave) to the
    run in `saved`: RESUMABLE ones are checked, applied and logged; any other that differs from the run's is
    refused, all differences listed in one error."""
    args = dict(saved["run_args"])
    known = {f.name for f in fields(TrainConfig)}
    recipe = {k: v for k, v in saved["train_config"].items() if k in known}
    run_values = {**recipe, "task": args.get("task"), "data": args.get("data"),
                  "skip_bad_images": args.get("skip_bad_images", False),
                  **{k: args.get(k) for k in ("model", "pretrained", "img_size", "init_from")}}
    refused, applied = [], []
    for name, value in changes.items():
        if value is None or (name not in run_values and name not in known):
            continue
        old = run_values.get(name)
        if name == "data":
            moved = _moved_data(args, Path(value), out)
            if moved is not None:
                applied.append(moved)
                args["data"] = str(Path(value).resolve())
            continue
        if value == old:
            continue
        if name not in RESUMABLE:
            refused.append(f"{_flag(name)} {value} (the run's: {'default' if old is None else old})")
            continue
        if name == "epochs":
            done = int(saved["run"]["epoch"])
            if value < done:
                refused.append(f"--epochs {value} (the run has already completed {done} epochs)")
                continue
        recipe[name] = value
        applied.append(f"{_flag(name)} {'auto' if old is None else old} -> {value}")
    if refused:
        allowed = ", ".join(f"{_flag(k)} ({why})" for k, why in RESUMABLE.items())
        raise VitkitError(f"--resume {out}: these options differ from the run's and cannot change mid-run: "
                          f"{'; '.join(refused)}. Start a new run (--out) to change them; a resumed run may change "
                          f"only {allowed}")
    data = Path(args["data"])
    if "data" not in changes and not data.exists():
        raise VitkitError(f"--resume {out}: the run's data {data} is gone; if it moved, pass --data NEW_PLACE (it "
                          "is checked to hold the same files)")
    for line in applied:
        log.info("resuming with %s", line)
    return Resumed(task=args["task"], data=data, skip_bad_images=bool(args.get("skip_bad_images", False)),
                   cfg=TrainConfig(**recipe), run_args=args)


def _moved_data(args: dict[str, Any], new: Path, out: Path) -> str | None:
    """'--data OLD -> NEW (...)' when NEW holds what the run started with; None when it is the same place."""
    old = args.get("data")
    if old is not None and new.exists() and Path(old).exists() and Path(old).resolve() == new.resolve():
        return None
    recorded = args.get("data_fingerprint")
    if recorded is None:
        raise VitkitError(f"--resume {out} --data {new}: this run recorded no fingerprint of its data ({old}), so a "
                          "moved copy cannot be checked; put the data back at its old place")
    found = data_fingerprint(new)
    if found is None:
        raise VitkitError(f"--resume {out} --data {new}: not found")
    if found["sha256"] != recorded["sha256"]:
        raise VitkitError(f"--resume {out} --data {new}: not the data this run started with: it holds "
                          f"{_fingerprint_text(found)}, the run's data ({old}) held {_fingerprint_text(recorded)}"
                          f"{'' if found['files'] != recorded['files'] else ' (other names or sizes)'}")
    return f"--data {old} -> {new} (the same {_fingerprint_text(found)})"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")
