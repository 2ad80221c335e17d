"""vitkit.utils.limits (the named bounds on what an input may make vitkit allocate), the torch floor, and the
checks built on them: config field types, text length, JSON depth, VAEs a checkpoint may name."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import torch

import vitkit
from vitkit.config import config_from_dict
from vitkit.diffusion import KNOWN_VAES, config_vae
from vitkit.errors import ConfigError, InputTooLarge, VitkitError
from vitkit.models.vit import ViTConfig
from vitkit.processing.bert import BertTokenizer
from vitkit.utils.limits import (
    MAX_RESIZE_PIXELS,
    MAX_TEXT_CHARS,
    JSONTooDeep,
    check_decompressed,
    check_npz,
    check_resize,
    parse_json,
)
from vitkit.utils.torch_floor import TORCH_FLOOR, check_torch_version, parse_version


def test_limits_are_raised_through_their_environment_variable(monkeypatch):
    with pytest.raises(InputTooLarge, match=r"24,800,000x248.*resize output pixels limit of 33,554,432 \(set "
                                            r"VITKIT_MAX_RESIZE_PIXELS to raise it\)"):
        check_resize((100_000, 1), (24_800_000, 248))
    monkeypatch.setenv("VITKIT_MAX_RESIZE_PIXELS", "8_000_000_000")
    assert MAX_RESIZE_PIXELS.value() == 8_000_000_000
    check_resize((100_000, 1), (24_800_000, 248))
    for bad in ("lots", "0", "-3"):
        monkeypatch.setenv("VITKIT_MAX_RESIZE_PIXELS", bad)
        with pytest.raises(ConfigError, match="VITKIT_MAX_RESIZE_PIXELS"):
            check_resize((1, 1), (1, 1))


def test_decompressed_size_is_bounded_by_deflate_and_by_the_limit(monkeypatch):
    check_decompressed(1032 * 1000, 1000, "x.gz")
    with pytest.raises(InputTooLarge, match="gzip expands at most 1032:1"):
        check_decompressed(2**40, 60, "x.gz")
    monkeypatch.setenv("VITKIT_MAX_DECOMPRESSED_BYTES", "1000")
    with pytest.raises(InputTooLarge, match="VITKIT_MAX_DECOMPRESSED_BYTES"):
        check_decompressed(5000, 1000, "x.gz")


def test_json_nested_too_deep_is_a_value_error_not_a_recursion_error():
    assert parse_json('{"a": [[1]]}') == {"a": [[1]]}
    with pytest.raises(JSONTooDeep, match="nested deeper"):
        parse_json("[" * 200_000 + "]" * 200_000)
    assert issubclass(JSONTooDeep, ValueError)


def test_npz_members_are_checked_against_the_bytes_they_hold(tmp_path):
    np.savez(tmp_path / "ok.npz", a=np.ones((3, 4)), b=np.arange(5))
    np.savez_compressed(tmp_path / "okc.npz", a=np.zeros((100, 100)))
    np.save(tmp_path / "one.npy", np.ones(3))
    for name in ("ok.npz", "okc.npz", "one.npy"):
        check_npz(tmp_path / name)
    raw = io.BytesIO()
    np.save(raw, np.ones(1000, np.float32))
    with zipfile.ZipFile(tmp_path / "cut.npz", "w") as zf:
        zf.writestr("a.npy", raw.getvalue()[:200])  # header for 4000 bytes, 72 of them present
    with pytest.raises(InputTooLarge, match=r"array 'a' declares shape \(1000,\) float32 \(4,000 bytes\)"):
        check_npz(tmp_path / "cut.npz")


def test_text_longer_than_the_limit_is_refused_before_tokenizing(monkeypatch):
    tok = BertTokenizer(max_length=8)
    assert MAX_TEXT_CHARS.value() == 100_000
    with pytest.raises(InputTooLarge, match=r"100,001 characters is over the text characters limit of 100,000 \(set "
                                            "VITKIT_MAX_TEXT_CHARS"):
        tok("a" * 100_001)
    with pytest.raises(InputTooLarge):
        tok("short", text_pair="b" * 100_001)
    monkeypatch.setenv("VITKIT_MAX_TEXT_CHARS", "200000")
    with pytest.warns(UserWarning, match="truncated"):
        assert tok("a " * 50_000)["input_ids"].shape == (1, 8)


def test_config_fields_of_the_wrong_type_are_named():
    fields = vitkit.get_config("vit_pico_patch2_16").__dict__
    good = {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}
    assert config_from_dict(ViTConfig, good) == vitkit.get_config("vit_pico_patch2_16")
    assert config_from_dict(ViTConfig, {**good, "img_size": [32, 48], "mlp_ratio": 4}).img_size == (32, 48)
    cases = {
        "embed_dim": ("128", "should be an integer, got the string '128'"),
        "depth": (2.5, "should be an integer, got the number 2.5"),
        "qkv_bias": (1, "should be true or false, got the integer 1"),
        "img_size": ([32, 48, 64], "should be an integer or a list of 2 integers, got a list [32, 48, 64]"),
        "mean": (["0.5"], "should be a list of numbers, got a list ['0.5']"),
        "labels": ({"a": 1}, "should be a list of strings or null, got an object {'a': 1}"),
        "norm_eps": (None, "should be a number, got null"),
    }
    for key, (value, message) in cases.items():
        with pytest.raises(ConfigError, match=f"ViTConfig field '{key}' {message}".replace("[", r"\[")
                           .replace("(", r"\(").replace(")", r"\)")):
            config_from_dict(ViTConfig, {**good, key: value})


@pytest.mark.parametrize("version, ok", [
    ("2.14.1+cu130", True), ("2.10.0", True), ("2.10.0a0+git1234", True), ("3.0.0", True), ("2.9.1", False),
    ("2.5.1+cpu", False), ("2.4.0", False), ("1.13.1", False),
])
def test_torch_floor(version, ok):
    assert TORCH_FLOOR == (2, 10) and parse_version(version) is not None
    if ok:
        check_torch_version(version)
    else:
        with pytest.raises(ImportError, match=rf"needs torch >= 2\.10, but torch {version.replace('+', '[+]')} is"):
            check_torch_version(version)
    check_torch_version(torch.__version__)  # the installed one passes (vitkit imported)


def test_a_dit_config_names_a_vae_only_from_the_allow_list(tmp_path, monkeypatch):
    latent = vitkit.create_model("dit_nano_patch4_32", in_channels=4, input_size=8, mean=(0.0,) * 4,
                                 std=(1.0,) * 4, vae="someone/other-vae", latent_scale=0.18215)
    assert config_vae(vitkit.create_model("dit_nano_patch4_32").config) is None  # pixel space: nothing to load
    with pytest.raises(VitkitError, match=r"names the VAE 'someone/other-vae'.*--trust-vae"):
        config_vae(latent.config)
    assert KNOWN_VAES == ("stabilityai/sd-vae-ft-mse", "stabilityai/sd-vae-ft-ema")
    # allowed (listed, or vouched for): past the check, on to the loader. Empty local folders of those names
    # stand in for the hub (no network here): the loader's own error shows the check let them through.
    monkeypatch.chdir(tmp_path)
    for name in ("someone/other-vae", "stabilityai/sd-vae-ft-mse"):
        (tmp_path / name).mkdir(parents=True)
    for cfg, trust in ((latent.config, True), (vitkit.get_config("DiT-S/2"), False)):
        with pytest.raises(VitkitError) as info:
            config_vae(cfg, trust_vae=trust)
        assert "could not load the VAE" in str(info.value) or "needs the diffusers package" in str(info.value)


def test_vqa_refuses_an_empty_question():
    model = vitkit.create_model("vilt_b32_vqa", depth=1, embed_dim=32, num_heads=2, img_size=32, patch_size=16,
                                shorter_edge=32, longer_edge=48, size_divisor=16, max_text_len=19, num_answers=3)
    image = np.zeros((30, 40, 3), np.uint8)
    with pytest.raises(VitkitError, match="the question is empty"):
        vitkit.vqa(model, image, "  ")
    with pytest.raises(VitkitError, match=r"question 1 \(of 2\) is empty"):
        vitkit.vqa(model, image, ["what colour?", ""])
    assert len(vitkit.vqa(model, image, "what colour?", top_k=2)) == 2


def test_json_readers_of_untrusted_files_use_the_bounded_parser(tmp_path):
    from vitkit.checkpoint.io import read_json
    from vitkit.data.paths import read_json as read_annotations
    from vitkit.processing.images import DatasetError

    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DatasetError, match=r"deep\.json: JSON nested deeper"):
        read_annotations(deep)
    with pytest.raises(VitkitError, match="nested deeper"):
        read_json(deep)
    (tmp_path / "ok.json").write_text(json.dumps({"a": 1}))
    assert read_json(tmp_path / "ok.json") == {"a": 1}
