"""vitkit.utils.files: atomic whole-file writes with the umask's permissions, log appends that never damage the
lines before them, stale temp files removed, and every failure one WriteError naming the path."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

import vitkit
from vitkit.errors import VitkitError, WriteError
from vitkit.utils.files import (
    append_line,
    atomic_save_image,
    atomic_write_bytes,
    atomic_write_text,
    check_output_dir,
    check_output_file,
    remove_stale_temps,
)

SRC = str(Path(vitkit.__file__).resolve().parents[1])


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_new_files_get_the_umask_permissions_not_0600(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "config.json", "{}")
        atomic_save_image(tmp_path / "x.png", Image.new("L", (2, 2)))
        append_line(tmp_path / "metrics.jsonl", "{}")
    finally:
        os.umask(old)
    for name in ("config.json", "x.png", "metrics.jsonl"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name


def test_atomic_writes_replace_whole_files_and_leave_no_temp(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"one")
    atomic_write_bytes(tmp_path / "a.bin", b"two")
    assert (tmp_path / "a.bin").read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


@pytest.mark.parametrize("case, reason", [
    ("missing folder", "its folder {tmp}/nope does not exist"),
    ("file in the way", "{tmp}/file is a file, not a folder"),
    ("folder in the way", "a folder of that name is in the way"),
])
def test_write_failures_are_one_write_error_naming_the_path(tmp_path, case, reason):
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    target = {"missing folder": tmp_path / "nope" / "a.json", "file in the way": tmp_path / "file" / "a.json",
              "folder in the way": tmp_path / "folder"}[case]
    with pytest.raises(WriteError) as info:
        atomic_write_text(target, "{}")
    assert isinstance(info.value, VitkitError) and isinstance(info.value, OSError)
    assert str(info.value) == f"could not write {target} ({reason.format(tmp=tmp_path)})"
    with pytest.raises(WriteError):
        append_line(target, "{}")


def test_output_paths_are_checked_before_any_work(tmp_path):
    (tmp_path / "file").write_text("x")
    assert check_output_file(tmp_path / "out.png") == tmp_path / "out.png"
    assert check_output_dir(tmp_path / "new") == tmp_path / "new"
    with pytest.raises(WriteError, match="does not exist"):
        check_output_file(tmp_path / "missing" / "out.png")
    with pytest.raises(WriteError, match="a folder of that name is in the way"):
        check_output_file(tmp_path)
    with pytest.raises(WriteError, match="a file of that name is in the way"):
        check_output_dir(tmp_path / "file")
    with pytest.raises(WriteError, match="is a file, not a folder"):
        check_output_dir(tmp_path / "file" / "sub" / "out")


def test_a_failed_append_leaves_the_earlier_lines_intact(tmp_path, monkeypatch):
    """Disk full part way through a line: the part written is cut off again, the file is as before."""
    log = tmp_path / "metrics.jsonl"
    append_line(log, json.dumps({"step": 1}))
    before = log.read_bytes()
    real_write = os.write

    def half_then_full(fd, data):
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(WriteError, match=r"metrics\.jsonl \(No space left on device\)"):
        append_line(log, json.dumps({"step": 2, "loss": 0.5}))
    monkeypatch.undo()
    assert log.read_bytes() == before
    append_line(log, json.dumps({"step": 2}))
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2]


def test_an_append_over_the_file_size_limit_leaves_the_earlier_lines_intact(tmp_path):
    """The real thing: RLIMIT_FSIZE lets the kernel write part of the line, then refuses (EFBIG)."""
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1}\n')
    child = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_FSIZE, (40, 40))
        from vitkit.utils.files import append_line
        try:
            append_line({str(log)!r}, '{{"step": 2, "padding": "' + 'x' * 60 + '"}}')
        except OSError as e:
            print(type(e).__name__, e)
    """)
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": SRC})
    assert out.stdout.startswith("WriteError could not write") and "File too large" in out.stdout, out.stderr
    assert log.read_text() == '{"step": 1}\n'


def test_a_half_line_left_by_a_kill_is_dropped_at_the_next_append(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_bytes(b'{"step": 1}\n{"step": 2, "lo')
    append_line(log, '{"step": 3}')
    assert log.read_text() == '{"step": 1}\n{"step": 3}\n'


def test_stale_temp_files_are_removed_and_nothing_else(tmp_path):
    stale = [".checkpoint.pt.ab12_xyz.tmp", ".model.safetensors.q9w8e7r6.tmp"]
    kept = ["checkpoint.pt", "notes.tmp", ".hidden", ".x.short.tmp", "model.safetensors"]
    for name in stale + kept:
        (tmp_path / name).write_text("x")
    assert sorted(p.name for p in remove_stale_temps(tmp_path)) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
    assert remove_stale_temps(tmp_path / "missing") == []


def test_the_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    """A rename is durable only once its directory is synced: without it a power cut can lose the new file."""
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    atomic_write_text(tmp_path / "metrics.json", "{}")
    assert synced == ["file", "dir"]
    synced.clear()
    atomic_save_image(tmp_path / "x.png", Image.new("L", (2, 2)), durable=False)  # generated data: no syncs
    assert synced == []
