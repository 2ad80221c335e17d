"""vitkit's own exceptions. The CLI turns any of these into one `error: ...` line and exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class VitkitError(Exception):
    """Base class for every error vitkit raises on purpose (bad input, bad checkpoint, bad config)."""


class ConfigError(VitkitError, ValueError):
    """An unknown model name, an unknown config field, or a value that does not fit."""


class CheckpointError(VitkitError):
    """A checkpoint that cannot be read, or whose weights do not fit the model."""


class InputTooLarge(VitkitError):
    """An input whose header or size would make vitkit allocate more than a named limit allows (see
    `vitkit.utils.limits`); raised before the allocation happens."""


class WriteError(VitkitError, OSError):
    """A file vitkit could not write (full disk, read-only or missing folder, a file in the way, the file size
    limit). Also an OSError with the original errno, so code that catches OSError keeps working."""

    def __init__(self, path: object, error: OSError | str) -> None:
        reason = error if isinstance(error, str) else (error.strerror or str(error))
        errno = None if isinstance(error, str) else error.errno
        super().__init__(errno, f"could not write {path} ({reason})")
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return str(self.strerror)


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str:
    """' (did you mean: a, b?)' for the closest choices, or '' when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.6)
    return f" (did you mean: {', '.join(close)}?)" if close else ""
