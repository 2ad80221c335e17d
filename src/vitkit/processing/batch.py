"""`BatchFeature`: a processor's output, a dict of tensors that moves and casts as a unit.

    batch = processor(images=..., text=...)
    batch = batch.to("cuda")              # every tensor moved
    batch = batch.to(torch.float16)       # floating tensors cast (pixel_values); ids and masks stay int64
    model(**batch); batch.pixel_values    # a plain dict to unpack, keys also readable as attributes

As transformers' `BatchFeature.to`, `.to()` changes the batch in place and returns it, and a dtype applies only
to floating-point tensors: casting `input_ids` to float16 would corrupt ids above 2048.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import VitkitError


class BatchFeature(dict):
    """A dict of model inputs (tensors, and whatever else a processor returns) with `.to()` and attribute access."""

    def __getattr__(self, name: str) -> Any:
        # Only called when normal attribute lookup fails; a missing key must raise AttributeError (not KeyError)
        # so that copy, pickle and hasattr behave.
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__} has no key or attribute {name!r}") from None

    def to(
        self,
        device_or_dtype: torch.device | str | int | torch.dtype | None = None,
        dtype: torch.dtype | None = None,
        *,
        device: torch.device | str | int | None = None,
        non_blocking: bool = False,
    ) -> BatchFeature:
        """Move every tensor to a device and/or cast the floating-point ones to a dtype, in place; returns self.

        Called like `Tensor.to`: `.to("cuda")`, `.to(torch.bfloat16)`, `.to("cuda", torch.bfloat16)`,
        `.to(device=..., dtype=...)`. Integer and boolean tensors (ids, masks) keep their dtype; values that
        are not tensors are left as they are.
        """
        if isinstance(device_or_dtype, torch.dtype):
            if dtype is not None:
                raise VitkitError("BatchFeature.to got two dtypes")
            dtype = device_or_dtype
        elif device_or_dtype is not None:
            if device is not None:
                raise VitkitError("BatchFeature.to got two devices")
            device = device_or_dtype
        if dtype is not None and not dtype.is_floating_point:
            raise VitkitError(f"BatchFeature.to casts floating-point tensors only; {dtype} is not a floating dtype")
        for key, value in list(self.items()):
            if not isinstance(value, torch.Tensor):
                continue
            cast = dtype if dtype is not None and value.is_floating_point() else None
            self[key] = value.to(device=device, dtype=cast, non_blocking=non_blocking)
        return self

    def __repr__(self) -> str:
        def describe(value: Any) -> str:
            if isinstance(value, torch.Tensor):
                return f"Tensor{list(value.shape)} {str(value.dtype).removeprefix('torch.')} {value.device}"
            return type(value).__name__

        return "BatchFeature(" + ", ".join(f"{k}: {describe(v)}" for k, v in self.items()) + ")"
