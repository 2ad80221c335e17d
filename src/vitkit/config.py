"""Small dataclass configs shared by every model family.

`replace_config(cfg, **overrides)` is the one place overrides are applied: an unknown field is rejected with
the list of valid ones, so a typo never silently does nothing.
"""

from __future__ import annotations

import dataclasses
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
    """Inverse of config_to_dict; unknown keys raise ConfigError, lists become tuples where the default is."""
    valid = config_fields(cls)
    unknown = [k for k in data if k not in valid]
    if unknown:
        raise ConfigError(f"unknown field(s) {unknown} in {cls.__name__} config; valid fields: {', '.join(valid)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**kwargs)
