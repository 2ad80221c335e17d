"""Small dataclass configs shared by every model family.

`replace_config(cfg, **overrides)` is the one place overrides are applied: an unknown field is rejected with
the list of valid ones, so a typo never silently does nothing.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from .errors import ConfigError, did_you_mean


def config_fields(cfg_or_cls: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(cfg_or_cls)]


def replace_config(cfg: Any, **overrides: Any) -> Any:
    """Return a copy of dataclass `cfg` with `overrides` applied; unknown fields raise ConfigError."""
    valid = config_fields(cfg)
    for key in overrides:
        if key not in valid:
            raise ConfigError(
                f"unknown option {key!r} for {type(cfg).__name__}{did_you_mean(key, valid)}; "
                f"valid fields: {', '.join(valid)}"
            )
    return dataclasses.replace(cfg, **overrides)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-ready dict (tuples become lists)."""
    return dataclasses.asdict(cfg)


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Inverse of config_to_dict; unknown keys raise ConfigError, lists become tuples where the default is.

    Every value is checked against its field's type first (a config.json saying `"embed_dim": "128"` is refused
    with the field's name and the expected type, not left to fail somewhere inside the model's constructor)."""
    valid = config_fields(cls)
    unknown = [k for k in data if k not in valid]
    if unknown:
        raise ConfigError(f"unknown field(s) {unknown} in {cls.__name__} config; valid fields: {', '.join(valid)}")
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        hint = hints.get(key, Any)
        if not _matches(value, hint):
            raise ConfigError(f"{cls.__name__} field {key!r} should be {_expected(hint)}, got {_describe(value)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**kwargs)


def _matches(value: Any, hint: Any) -> bool:
    """Whether a value read from JSON fits a field annotation (int | tuple[int, int], tuple[float, ...], ...)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args))
    if origin is typing.Literal:
        return value in args
    return isinstance(value, hint) if isinstance(hint, type) else True


_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}


def _expected(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_expected(a) for a in args)
    if origin is tuple:
        items = {_expected(a).removeprefix("an ").removeprefix("a ") for a in args if a is not Ellipsis}
        count = "" if Ellipsis in args else f"{len(args)} "
        return f"a list of {count}{' / '.join(sorted(items))}s"
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def _describe(value: Any) -> str:
    kind = {bool: "a boolean", int: "the integer", float: "the number", str: "the string", list: "a list",
            tuple: "a list", dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)
    return kind if value is None else f"{kind} {value!r:.60}"
