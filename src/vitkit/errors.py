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


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str:
    """' (did you mean: a, b?)' for the closest choices, or '' when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.6)
    return f" (did you mean: {', '.join(close)}?)" if close else ""
