"""The helpers the key-table converters share (q/k/v fusion, key reports) and HF's id2label reading."""

from __future__ import annotations

import logging

import pytest
import torch

from vitkit.checkpoint.converters.hf import hf_labels
from vitkit.checkpoint.converters.keys import fuse_qkv, key_problems

NAMES = ("q", "k", "v")


def _layer(bias: bool = True) -> dict[str, torch.Tensor]:
    sd = {f"l.{n}.weight": torch.full((2, 2), float(i)) for i, n in enumerate(NAMES)}
    if bias:
        sd.update({f"l.{n}.bias": torch.full((2,), float(i)) for i, n in enumerate(NAMES)})
    return sd


def test_fuse_qkv_concatenates_in_qkv_order():
    used: set[str] = set()
    missing: list[str] = []
    fused = fuse_qkv(_layer(), "l.", NAMES, used=used, missing=missing)
    assert fused["weight"].shape == (6, 2) and fused["bias"].tolist() == [0, 0, 1, 1, 2, 2]
    assert fused["weight"][:, 0].tolist() == [0, 0, 1, 1, 2, 2]
    assert used == set(_layer()) and missing == []


def test_fuse_qkv_without_biases_is_qkv_bias_false():
    used: set[str] = set()
    missing: list[str] = []
    fused = fuse_qkv(_layer(bias=False), "l.", NAMES, used=used, missing=missing)
    assert set(fused) == {"weight"} and missing == []


def test_fuse_qkv_reports_a_partial_set():
    sd = _layer()
    del sd["l.k.bias"], sd["l.v.weight"]
    used: set[str] = set()
    missing: list[str] = []
    assert fuse_qkv(sd, "l.", NAMES, used=used, missing=missing) == {}
    assert missing == ["l.v.weight", "l.k.bias"] and not used


def test_key_problems():
    assert key_problems([], []) == []
    assert key_problems(["a"], ["b", "c"], unexpected_hint=" (hint)") == [
        "missing keys: a", "unexpected keys: b, c (hint)"]


@pytest.mark.parametrize("meta, n, expected", [
    ({"id2label": {"1": "b", "0": "a"}}, 2, ("a", "b")),
    ({"id2label": {0: "LABEL_0", 1: "LABEL_1"}}, 2, None),  # transformers' placeholders name nothing
    ({"id2label": {0: "a", 1: "b"}}, 0, None),  # no classifier
    ({}, 3, None),
])
def test_hf_labels(meta, n, expected):
    assert hf_labels(meta, n) == expected


@pytest.mark.parametrize("id2label", [{"0": "a"}, {"zero": "a", "one": "b"}, ["a", "b"]])
def test_hf_labels_that_do_not_fit_are_dropped_and_logged(id2label, caplog):
    with caplog.at_level(logging.WARNING, logger="vitkit"):
        assert hf_labels({"id2label": id2label}, 2) is None
    assert "labels dropped" in caplog.text
