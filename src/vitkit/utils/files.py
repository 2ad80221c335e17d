"""Every file vitkit writes goes through here, so that a reader never sees half of one and a failure is one clear
error.

- Whole files (`atomic_open`, `atomic_write_bytes` / `_text` / `_with`, `atomic_save_image`): a temp file
  `.NAME.XXXXXXXX.tmp` in the same directory, fsync, rename over the target, fsync the directory. A failed or
  interrupted write (full disk, kill -9, power cut) leaves the previous file intact. The new file gets the
  permissions the user's umask gives any new file (not mkstemp's 0600), so a published model is readable by
  whoever may read the folder.
- Log lines (`append_line`): one `write` of the whole line with O_APPEND, then fsync. If the write fails part
  way (full disk, file size limit) the file is truncated back to its previous length, so the earlier lines stay
  intact and no half line is left; a half line left by a kill is dropped before the next append.
- `remove_stale_temps`: the temp files a killed process left behind, removed at the next start in that folder.
- `check_output_file` / `check_output_dir`: refuse an output path whose folder is missing or which a file or
  folder is in the way of, before any work is done.

Every failure raises `vitkit.errors.WriteError` (a VitkitError and an OSError) naming the path and the reason.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import WriteError

TEMP_SUFFIX = ".tmp"
# `.NAME.` + mkstemp's 8 random characters + `.tmp`: only files of this shape are ever removed as stale.
_TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make a rename in `directory` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_error(path: str | os.PathLike, e: OSError) -> WriteError:
    """A WriteError naming `path`, with the reason said plainly for the common cases."""
    if isinstance(e, WriteError):
        return e
    path = Path(path)
    if e.errno == errno.ENOENT and not path.parent.exists():
        return WriteError(path, f"its folder {path.parent} does not exist")
    if e.errno == errno.ENOTDIR:
        return WriteError(path, f"{_first_non_folder(path.parent)} is a file, not a folder")
    if e.errno == errno.EISDIR or (e.errno == errno.EEXIST and path.is_dir()):
        return WriteError(path, "a folder of that name is in the way")
    if e.errno == errno.EFBIG:
        return WriteError(path, "File too large: the file size limit (ulimit -f) was reached")
    return WriteError(path, e)


def _first_non_folder(path: Path) -> Path:
    for p in reversed([path, *path.parents]):
        if p.exists() and not p.is_dir():
            return p
    return path


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, *, durable: bool = True) -> Iterator[IO[bytes]]:
    """`with atomic_open(path) as f: f.write(...)`: the file appears at `path`, complete, when the block ends
    without an exception; otherwise nothing changes at `path` and the temp file is removed. An OSError (full
    disk, read-only folder, ...) is raised as a WriteError naming `path`. `durable=False` skips the two fsyncs
    (for bulk generated data that is simply regenerated after a power cut; a reader still never sees half a
    file)."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    except OSError as e:
        raise write_error(path, e) from e
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise write_error(path, e) from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (see the module docstring)."""
    with atomic_open(path) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_with(path: str | os.PathLike, write: Callable[[IO[bytes]], object], *, durable: bool = True) -> None:
    """Atomically write what `write(file)` writes, e.g. `atomic_write_with(p, lambda f: torch.save(obj, f))`."""
    with atomic_open(path, durable=durable) as f:
        write(f)


def atomic_save_image(path: str | os.PathLike, image: Any, *, durable: bool = True, **params: Any) -> None:
    """`image.save(path, **params)` for a PIL image, or `figure.savefig(path, **params)` for a matplotlib figure,
    atomically; the format comes from the suffix (.png, .jpg, ...)."""
    path = Path(path)
    if hasattr(image, "savefig"):  # a matplotlib figure
        fmt = path.suffix.lstrip(".").lower() or "png"
        atomic_write_with(path, lambda f: image.savefig(f, format=fmt, **params), durable=durable)
        return
    from PIL import Image

    pil_format = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    atomic_write_with(path, lambda f: image.save(f, format=pil_format, **params), durable=durable)


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append `line` (a newline is added) to a log file such as metrics.jsonl, durably; a failure leaves the
    earlier lines exactly as they were (see the module docstring) and raises WriteError."""
    path = Path(path)
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    except OSError as e:
        raise write_error(path, e) from e
    try:
        size = _drop_torn_line(fd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)  # back to the last complete line
                os.fsync(fd)
            raise write_error(path, e) from e
    finally:
        os.close(fd)
    if size == 0:
        fsync_dir(path.parent)


def _drop_torn_line(fd: int) -> int:
    """Truncate a half-written last line (no newline: the writer was killed mid-line); returns the length."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    start = max(0, size - (1 << 20))  # log lines are short: the last newline is within the last MiB
    newline = os.pread(fd, size - start, start).rfind(b"\n")
    if newline < 0 and start > 0:
        return size  # not a log of short lines; leave it as it is
    keep = start + newline + 1
    os.ftruncate(fd, keep)
    return keep


def remove_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Remove the `.NAME.XXXXXXXX.tmp` files a killed writer left in `directory` (not recursive); returns them.
    Call it only where no other process is writing (e.g. holding the run's lock)."""
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        if _TEMP_NAME.match(entry.name) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def check_output_file(path: str | os.PathLike) -> Path:
    """Refuse, before any work, a file to be written whose folder does not exist or which a folder is in the way
    of (WriteError naming the path)."""
    path = Path(path)
    if path.is_dir():
        raise WriteError(path, "a folder of that name is in the way")
    _check_parent(path)
    return path


def check_output_dir(path: str | os.PathLike) -> Path:
    """Refuse, before any work, an output folder that is a file, or whose parent folder does not exist."""
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise WriteError(path, "a file of that name is in the way, not a folder")
        return path
    _check_parent(path)
    return path


def _check_parent(path: Path) -> None:
    parent = path.parent
    if not parent.exists():
        bad = _first_non_folder(parent)
        if bad.exists():
            raise WriteError(path, f"{bad} is a file, not a folder")
        raise WriteError(path, f"its folder {parent} does not exist")
    if not parent.is_dir():
        raise WriteError(path, f"{parent} is a file, not a folder")
