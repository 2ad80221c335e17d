"""Running the installed `vitkit` console script as a user would, and judging what it prints.

The script is the one in the test interpreter's environment (`bin/vitkit` next to `python`); PYTHONPATH points at
the `vitkit` package under test, so the script imports this tree's code even when the environment holds another
(editable) install. Each call is a fresh process: no warnings filter, no captured logging, exactly what a
terminal would show."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

import vitkit

SRC = Path(vitkit.__file__).resolve().parents[1]
SCRIPT = shutil.which("vitkit", path=str(Path(sys.executable).parent))


def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", **extra}
    env.pop("PYTHONWARNINGS", None)
    return env


@pytest.fixture
def vitkit_cli() -> Callable[..., subprocess.CompletedProcess]:
    """`vitkit_cli("predict", "--model", ...)` -> the finished process (text stdout / stderr); `wrap` is a command
    prefix (e.g. an `unshare` that mounts a small disk first), `preexec_fn` runs in the child (resource limits)."""
    if SCRIPT is None:
        pytest.skip("the vitkit console script is not installed in this environment")

    def run(*args: str | bytes, wrap: Sequence[str] = (), timeout: float = 300, env: dict | None = None,
            **kwargs) -> subprocess.CompletedProcess:
        argv = [*wrap, SCRIPT, *args]
        proc = subprocess.run(argv, capture_output=True, timeout=timeout, env=env or cli_env(), **kwargs)
        proc.stdout = proc.stdout.decode("utf-8", "replace")
        proc.stderr = proc.stderr.decode("utf-8", "replace")
        return proc

    return run


def assert_one_error_line(proc: subprocess.CompletedProcess, *needles: str, after_progress: bool = False) -> str:
    """Exit code 2 and stderr exactly one line, `vitkit CMD: error: ...` (no warning, no traceback, no log line
    before it) containing every needle. `after_progress`: a failure in the middle of training, after the run's own
    progress lines (data summary, epochs); those may precede the error line, nothing else may."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    if after_progress:
        progress = ("data in ", "parameters,", "epoch ")
        assert all(any(p in line for p in progress) for line in lines[:-1]), proc.stderr[-3000:]
        lines = lines[-1:]
    assert len(lines) == 1, proc.stderr[-3000:]
    line = lines[0]
    assert line.startswith("vitkit ") and ": error: " in line, line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def unshare_mount(target: Path, options: str) -> list[str]:
    """A command prefix that runs the command with a fresh tmpfs mounted on `target` (`options`: "ro", or
    "size=64k" for a disk that fills up), in a private user and mount namespace: no root needed, nothing
    outside the command sees the mount. Skips the test where user namespaces are not available."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs util-linux unshare")
    probe = subprocess.run([unshare, "-rm", "sh", "-c", f"mount -t tmpfs -o {options} tmpfs {target}"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a user namespace here: {probe.stderr.decode()[-200:]}")
    return [unshare, "-rm", "sh", "-c", f'mount -t tmpfs -o {options} tmpfs "$0" && exec "$@"', str(target)]


@pytest.fixture
def one_error_line() -> Callable[..., str]:
    """`assert_one_error_line` for test modules (pytest imports them without access to this module's names)."""
    return assert_one_error_line


@pytest.fixture
def mounted() -> Callable[[Path, str], list[str]]:
    """`unshare_mount` for test modules."""
    return unshare_mount
