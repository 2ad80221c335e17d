"""Safe handling of paths and JSON read from dataset annotation files (VQA, captions, NLVR2).

An annotation file is data, not code: a file name in it must not reach outside the data root, whether by an
absolute path, by `..`, or through a symlink. `safe_join` enforces this for every image path the readers build.
`read_json` / `read_json_lines` turn a missing, unreadable or malformed file into one `DatasetError` naming it;
`expect_*` check the shape of what was read, so a malformed file never surfaces as a KeyError or TypeError.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from ..processing.images import DatasetError
from ..utils.limits import JSONTooDeep, parse_json

__all__ = [
    "SafeRoot", "expect_int", "expect_list", "expect_mapping", "expect_str", "read_json", "read_json_lines",
    "safe_join",
]


def safe_join(root: str | os.PathLike, relative: str) -> Path:
    """`root / relative` for a path read from an annotation file, refusing anything that would leave `root`.

    `relative` may use `/` (or `\\`) separators and harmless `.` / `..` parts (`a/../b.jpg` is `b.jpg`).
    DatasetError when it is not a non-empty string, contains a NUL byte, is absolute (`/x`, `\\\\server\\x`,
    `C:x`) or has a `..` that climbs above `root`. Symbolic links the user placed under `root` are followed as
    they are (the common `ln -s /mnt/coco/train2014 data/train2014` set-up): the check is on what the json
    file says, which is the untrusted part. The file need not exist. Returns the joined path (not resolved, so
    a `root` given as a symlink keeps its spelling), with `.`/`..` parts folded away.
    """
    return SafeRoot(root).join(relative)


class SafeRoot:
    """`safe_join` for many paths under one root: the root is resolved once (`SafeRoot(root).join(relative)`)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def join(self, relative: str) -> Path:
        """root / `relative`; DatasetError for a path that is absolute or climbs out of the root."""
        return self.root.joinpath(*_relative_parts(relative, self.root))


def _relative_parts(relative: str, root: Path) -> list[str]:
    """The parts of `relative` with `.`/`..` folded; DatasetError for anything that is not a plain relative path
    staying inside the root."""
    if not isinstance(relative, str):
        raise DatasetError(f"expected a relative path string, got {type(relative).__name__}: {relative!r}")
    if not relative or not relative.strip():
        raise DatasetError("empty path in the annotations")
    if "\0" in relative:
        raise DatasetError(f"path {relative!r} contains a NUL byte")
    posix, windows = PurePosixPath(relative), PureWindowsPath(relative)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or windows.root:
        raise DatasetError(f"path {relative!r} is absolute; annotation paths must be relative to the data root")
    parts: list[str] = []
    for part in windows.parts:  # Windows parsing splits on both '/' and '\\'
        if part == ".":
            continue
        if part == "..":
            if not parts:
                raise DatasetError(f"path {relative!r} leaves the data root {root} (through '..')")
            parts.pop()
        else:
            parts.append(part)
    if not parts:
        raise DatasetError(f"path {relative!r} names the data root itself, not a file under it")
    return parts


def read_json(path: str | os.PathLike, what: str = "annotation file") -> Any:
    """The parsed content of a JSON file; DatasetError (naming the file) when missing, unreadable or invalid."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{what} not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return parse_json(f.read())
    except JSONTooDeep as e:
        raise DatasetError(f"{path}: {e}") from None
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from e
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except OSError as e:
        raise DatasetError(f"{path}: cannot be read ({e.strerror or e})") from e


def read_json_lines(path: str | os.PathLike, what: str = "annotation file") -> list[Any]:
    """One parsed value per non-blank line of a JSON-lines file; DatasetError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{what} not found: {path}")
    values = []
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    values.append(parse_json(line))
                except JSONTooDeep as e:
                    raise DatasetError(f"{path}: line {lineno}: {e}") from None
                except json.JSONDecodeError as e:
                    raise DatasetError(f"{path}: line {lineno} is not valid JSON ({e.msg})") from e
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except OSError as e:
        raise DatasetError(f"{path}: cannot be read ({e.strerror or e})") from e
    return values


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def expect_mapping(value: Any, where: str, keys: Sequence[str] = ()) -> dict:
    """`value` if it is a JSON object holding every one of `keys`; otherwise DatasetError "`where` should be an
    object, got ..." or "`where` has no 'key'"."""
    if not isinstance(value, dict):
        raise DatasetError(f"{where} should be a JSON object, got {_type_name(value)}")
    for key in keys:
        if key not in value:
            raise DatasetError(f"{where} has no {key!r}")
    return value


def expect_list(value: Any, where: str) -> list:
    """`value` if it is a JSON list; otherwise DatasetError "`where` should be a JSON list, got ..."."""
    if not isinstance(value, list):
        raise DatasetError(f"{where} should be a JSON list, got {_type_name(value)}")
    return value


def expect_str(value: Any, where: str) -> str:
    """`value` if it is a string; otherwise DatasetError "`where` should be a string, got ..."."""
    if not isinstance(value, str):
        raise DatasetError(f"{where} should be a string, got {_type_name(value)}: {value!r:.60}")
    return value


def expect_int(value: Any, where: str) -> int:
    """An integer (JSON `12`; not `12.0`, `"12"` or `true`)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise DatasetError(f"{where} should be an integer, got {_type_name(value)}: {value!r:.60}")
    return value
