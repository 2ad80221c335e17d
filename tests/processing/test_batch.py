"""BatchFeature: `.to()` moves every tensor and casts only floating ones; keys read as attributes."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

from vitkit.errors import VitkitError
from vitkit.processing import BatchFeature


def make_batch() -> BatchFeature:
    return BatchFeature(
        pixel_values=torch.rand(2, 3, 4, 4),
        input_ids=torch.tensor([[49406, 320, 49407], [49406, 49407, 0]]),
        attention_mask=torch.tensor([[1, 1, 1], [1, 1, 0]]),
        pixel_mask=torch.ones(2, 4, 4, dtype=torch.bool),
        labels=["a", "b"],
    )


def test_dtype_casts_only_floating_tensors() -> None:
    batch = make_batch()
    ids = batch["input_ids"].clone()
    out = batch.to(torch.float16)
    assert out is batch  # in place, as transformers' BatchFeature.to
    assert batch.pixel_values.dtype == torch.float16
    assert batch.input_ids.dtype == torch.int64 and torch.equal(batch.input_ids, ids)  # 49406 survives
    assert batch.attention_mask.dtype == torch.int64 and batch.pixel_mask.dtype == torch.bool
    assert batch.labels == ["a", "b"]
    batch.to(dtype=torch.bfloat16)
    assert batch.pixel_values.dtype == torch.bfloat16 and batch.input_ids.dtype == torch.int64


def test_device_moves_every_tensor() -> None:
    batch = make_batch().to("meta")
    assert all(v.device.type == "meta" for v in batch.values() if isinstance(v, torch.Tensor))
    assert batch.input_ids.dtype == torch.int64 and batch.labels == ["a", "b"]
    both = make_batch().to(torch.device("meta"), torch.float64)
    assert both.pixel_values.device.type == "meta" and both.pixel_values.dtype == torch.float64
    assert both.attention_mask.device.type == "meta" and both.attention_mask.dtype == torch.int64
    kwargs = make_batch().to(device="meta", dtype=torch.float16)
    assert kwargs.pixel_values.dtype == torch.float16 and kwargs.input_ids.device.type == "meta"


def test_bad_arguments() -> None:
    with pytest.raises(VitkitError, match="floating"):
        make_batch().to(torch.int32)
    with pytest.raises(VitkitError, match="two dtypes"):
        make_batch().to(torch.float16, torch.float32)
    with pytest.raises(VitkitError, match="two devices"):
        make_batch().to("cpu", device="meta")


def test_mapping_behaviour() -> None:
    batch = make_batch()
    assert isinstance(batch, dict) and batch.input_ids is batch["input_ids"]
    assert not hasattr(batch, "token_type_ids")
    with pytest.raises(AttributeError, match="token_type_ids"):
        _ = batch.token_type_ids
    assert set(pickle.loads(pickle.dumps(batch))) == set(batch)
    assert torch.equal(copy.deepcopy(batch).pixel_values, batch.pixel_values)
    assert "pixel_values: Tensor[2, 3, 4, 4] float32 cpu" in repr(batch)

    def forward(pixel_values, input_ids, attention_mask, pixel_mask, labels):
        return pixel_values.shape[0] + input_ids.shape[0]

    assert forward(**batch) == 4
