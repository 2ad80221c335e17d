"""The oldest torch vitkit runs on, checked when vitkit is imported.

vitkit's safety with untrusted checkpoints rests on `torch.load(weights_only=True)` refusing code. Published
advisories show that promise broken on older releases:

- CVE-2025-32434 (GHSA-53q9-r3pm-6pq6): `weights_only=True` could still run code; fixed in torch 2.6.0.
- CVE-2026-24747 (GHSA-63cw-57p8-fm3p): the weights_only unpickler could corrupt memory (SETITEM on non-dicts,
  storages of another size than declared), potentially running code; fixed in torch 2.10.0.

So the floor is 2.10, the oldest release with no known advisory against weights_only loading; pyproject.toml
says the same (and sets no upper bound: no incompatibility with a newer torch is known).
"""

from __future__ import annotations

import re

TORCH_FLOOR = (2, 10)
ADVISORIES = "CVE-2025-32434, fixed in 2.6; CVE-2026-24747, fixed in 2.10"


def parse_version(version: str) -> tuple[int, int] | None:
    """(major, minor) of a torch version string ("2.14.1+cu130", "2.10.0a0+git1234"), or None if unreadable."""
    m = re.match(r"\s*(\d+)\.(\d+)", str(version))
    return (int(m[1]), int(m[2])) if m else None


def check_torch_version(version: str) -> None:
    """ImportError (naming the installed and the required version) when `version` is below TORCH_FLOOR."""
    found = parse_version(version)
    if found is not None and found < TORCH_FLOOR:
        need = ".".join(map(str, TORCH_FLOOR))
        raise ImportError(
            f"vitkit needs torch >= {need}, but torch {version} is installed: on older releases "
            f"torch.load(weights_only=True), which vitkit relies on to refuse code in checkpoints, can be made to "
            f"run code ({ADVISORIES}). Upgrade it: pip install -U 'torch>={need}'")


def require_torch() -> None:
    """Check the installed torch (imported here, as vitkit needs it anyway)."""
    import torch

    check_torch_version(torch.__version__)
