"""vitkit's own checkpoint format, safe reading of foreign weight files, strict loading, and `hf-hub:`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

import vitkit
from vitkit.checkpoint.io import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    check_state_dict,
    load_weights,
    read_state_dict,
    strip_prefixes,
    unwrap_state_dict,
)
from vitkit.config import config_to_dict
from vitkit.errors import CheckpointError

PICO = "vit_pico_patch2_16"


def pico(**overrides) -> torch.nn.Module:
    model = vitkit.create_model(PICO, **overrides).eval()
    with torch.no_grad():  # non-trivial norms and biases, so any weight not restored shows in the outputs
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def images(n: int = 2, size: int = 16) -> torch.Tensor:
    return torch.randn(n, 3, size, size)


# ---------------------------------------------------------------------------------------- own format
@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({}, id="default"),
        pytest.param({"class_token": False, "global_pool": "avg"}, id="gap"),
        pytest.param({"pos_embed": "sincos"}, id="sincos"),
        pytest.param({"init_values": 0.1, "representation_size": 32}, id="layerscale+pre_logits"),
        pytest.param({"img_size": (16, 24), "labels": tuple("abcdefghij")}, id="non-square+labels"),
    ],
)
def test_save_then_load_gives_identical_outputs(tmp_path, overrides):
    model = pico(**overrides)
    x = images(2) if "img_size" not in overrides else torch.randn(2, 3, 16, 24)
    with torch.no_grad():
        expected = model(x)
    assert model.save_pretrained(tmp_path) == tmp_path
    loaded = vitkit.from_pretrained(tmp_path)
    assert not loaded.training
    assert loaded.config == model.config
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_config_json_content(tmp_path):
    model = pico(labels=tuple("abcdefghij"))
    model.save_pretrained(tmp_path)
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert meta["format"] == "vitkit"
    assert meta["format_version"] == 1
    assert meta["model_type"] == "vit"
    cfg = meta["config"]
    assert cfg == json.loads(json.dumps(config_to_dict(model.config)))  # tuples as lists, nothing else
    assert cfg["embed_dim"] == 64 and cfg["depth"] == 4 and cfg["num_classes"] == 10
    assert cfg["labels"] == list("abcdefghij")
    assert cfg["mean"] == [0.5, 0.5, 0.5]
    assert sorted(p.name for p in tmp_path.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]  # no temp files left


def test_weights_file_is_plain_safetensors(tmp_path):
    from safetensors.torch import load_file

    model = pico()
    model.save_pretrained(tmp_path)
    tensors = load_file(str(tmp_path / WEIGHTS_FILE))
    assert set(tensors) == set(model.state_dict())
    assert "cls_token" in tensors and "blocks.0.attn.qkv.weight" in tensors


def test_extra_files(tmp_path):
    model = pico()
    extra = {"labels.json": ["cat", "dog"], "preprocess.json": {"size": 16, "mean": [0.5, 0.5, 0.5]}}
    model.save_pretrained(tmp_path, extra_files=extra)
    for name, content in extra.items():
        assert json.loads((tmp_path / name).read_text()) == content
    loaded = vitkit.from_pretrained(tmp_path)  # extra files do not disturb loading
    x = images()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_save_overwrites_an_existing_directory(tmp_path):
    pico().save_pretrained(tmp_path)
    second = pico()
    second.save_pretrained(tmp_path)
    x = images()
    with torch.no_grad():
        assert torch.equal(vitkit.from_pretrained(tmp_path)(x), second(x))


def test_num_classes_override_on_own_format(tmp_path):
    model = pico(labels=tuple("abcdefghij"))
    model.save_pretrained(tmp_path)
    loaded = vitkit.from_pretrained(tmp_path, num_classes=3)
    assert loaded.config.num_classes == 3
    assert loaded.config.labels is None  # the class names belonged to the dropped head
    for k, v in model.state_dict().items():
        if not k.startswith("head."):
            assert torch.equal(loaded.state_dict()[k], v), k
    kept = vitkit.from_pretrained(tmp_path, num_classes=10)  # same width: the head is kept
    assert torch.equal(kept.head.weight, model.head.weight)
    assert kept.config.labels == tuple("abcdefghij")


def test_img_size_override_on_own_format_resamples(tmp_path):
    from vitkit.layers import resample_pos_embed

    model = pico()
    model.save_pretrained(tmp_path)
    loaded = vitkit.from_pretrained(tmp_path, img_size=32)
    assert loaded.pos_embed.shape == (1, 1 + 16 * 16, 64)
    assert torch.equal(loaded.pos_embed, resample_pos_embed(model.pos_embed, (16, 16), (8, 8), num_prefix=1))
    # the model at 16x16 resampled on the fly and the 32-px model see the same embedding for a 32-px input
    x = images(1, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


# ----------------------------------------------------------------------------------- broken checkpoints
@pytest.mark.parametrize("keep", [0.5, 0.99, 0.001, 0.0])
def test_truncated_safetensors_is_a_checkpoint_error(tmp_path, keep):
    pico().save_pretrained(tmp_path)
    weights = tmp_path / WEIGHTS_FILE
    data = weights.read_bytes()
    weights.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        vitkit.from_pretrained(tmp_path)


def test_missing_weights_file(tmp_path):
    pico().save_pretrained(tmp_path)
    (tmp_path / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match="not found"):
        vitkit.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        pytest.param(lambda m: "{not json", "cannot read", id="bad-json"),
        pytest.param(lambda m: json.dumps([1, 2]), "JSON object", id="not-an-object"),
        pytest.param(lambda m: json.dumps({**m, "model_type": "gpt"}), "unknown vitkit model_type", id="model-type"),
        pytest.param(lambda m: json.dumps({**m, "config": {**m["config"], "n_layers": 3}}), "n_layers",
                     id="unknown-field"),
        pytest.param(lambda m: json.dumps({**m, "config": {**m["config"], "global_pool": "max"}}), "global_pool",
                     id="invalid-value"),
    ],
)
def test_broken_config_json(tmp_path, edit, match):
    pico().save_pretrained(tmp_path)
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    (tmp_path / CONFIG_FILE).write_text(edit(meta))
    with pytest.raises(CheckpointError, match=match):
        vitkit.from_pretrained(tmp_path)


def test_directory_without_config(tmp_path):
    with pytest.raises(CheckpointError, match=r"has no config\.json"):
        vitkit.from_pretrained(tmp_path)


def test_source_not_found(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        vitkit.from_pretrained(tmp_path / "nothing-here")


def test_bare_weight_file_needs_model_name(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(pico().state_dict(), path)
    with pytest.raises(CheckpointError, match="model="):
        vitkit.from_pretrained(path)
    with pytest.raises(CheckpointError, match="unknown model 'vit_pico'"):
        vitkit.from_pretrained(path, model="vit_pico")


def test_state_dict_of_another_architecture_names_the_keys(tmp_path):
    """A ViT-nano state dict into a ViT-pico: deeper (unexpected), wider (mis-shaped)."""
    other = vitkit.create_model("vit_nano_patch4_32").state_dict()
    path = tmp_path / "nano.pth"
    torch.save(other, path)
    with pytest.raises(CheckpointError) as err:
        vitkit.from_pretrained(path, model=PICO)
    msg = str(err.value)
    assert "does not fit this vit model" in msg
    assert "unexpected keys: blocks.4." in msg
    assert "mis-shaped: " in msg and "vs model" in msg
    assert str(path) in msg


def test_check_state_dict_lists_missing_unexpected_and_misshaped():
    model = pico()
    sd = dict(model.state_dict())
    del sd["norm.weight"]
    sd["blocks.0.attn.qkv.weight"] = torch.zeros(1, 64)
    sd["extra.bias"] = torch.zeros(3)
    with pytest.raises(CheckpointError) as err:
        check_state_dict(model, sd, source="my.pth")
    msg = str(err.value)
    assert msg.startswith("my.pth does not fit")
    assert "missing keys: norm.weight" in msg
    assert "unexpected keys: extra.bias" in msg
    assert "mis-shaped: blocks.0.attn.qkv.weight (1, 64) vs model (192, 64)" in msg


def test_long_key_lists_are_shortened():
    model = pico()
    with pytest.raises(CheckpointError, match=r"missing keys: .*\.\.\. \(\d+ in all\)"):
        check_state_dict(model, {"x": torch.zeros(1)})


def test_load_weights_is_strict_and_follows_model_dtype():
    model = pico()
    sd = {k: v.double() for k, v in pico().state_dict().items()}
    load_weights(model, sd)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    for k, v in sd.items():
        assert torch.equal(model.state_dict()[k], v.float())


# ---------------------------------------------------------------------------------------- pickles
class _RunsCode:
    """A pickle payload that runs a shell command on load, as a malicious checkpoint would."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("nest", [lambda o: o, lambda o: {"state_dict": {"w": torch.zeros(1), "evil": o}}])
def test_pickle_with_code_is_refused_and_not_run(tmp_path, nest):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save(nest(_RunsCode(marker)), path)
    with pytest.raises(CheckpointError, match=r"weights_only=True"):
        vitkit.from_pretrained(path, model=PICO)
    with pytest.raises(CheckpointError):
        read_state_dict(path)
    assert not marker.exists()


def test_truncated_pth_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "w.pth"
    torch.save(pico().state_dict(), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cannot read"):
        read_state_dict(path)


@pytest.mark.parametrize(
    "obj", [[torch.zeros(2)], torch.zeros(2), {}, {"epoch": 3, "lr": 0.1}, {"a": torch.zeros(1), "b": 2}]
)
def test_pth_without_a_state_dict(tmp_path, obj):
    path = tmp_path / "w.pth"
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match="does not hold a state dict"):
        read_state_dict(path)


def test_read_state_dict_unwraps_training_checkpoints(tmp_path):
    sd = {"a.weight": torch.randn(2, 2), "b": torch.randn(3)}
    path = tmp_path / "train.pth"
    torch.save({"epoch": 7, "model": sd, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]}}, path)
    out = read_state_dict(path)
    assert out.keys() == sd.keys()
    assert all(torch.equal(out[k], sd[k]) for k in sd)
    assert unwrap_state_dict({"state_dict": {"model": sd}}, "x").keys() == sd.keys()


def test_strip_prefixes_only_when_every_key_has_it():
    sd = {"module.a": torch.zeros(1), "module.b": torch.zeros(1)}
    assert list(strip_prefixes(sd, ("module.",))) == ["a", "b"]
    mixed = {"module.a": torch.zeros(1), "b": torch.zeros(1)}
    assert list(strip_prefixes(mixed, ("module.",))) == ["module.a", "b"]
    assert list(strip_prefixes({"_orig_mod.module.a": torch.zeros(1)}, ("module.", "_orig_mod."))) == ["a"]


# ------------------------------------------------------------------------------------------ hf-hub
@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """huggingface_hub in offline mode with an empty cache: nothing can be fetched, and nothing is tried."""
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_hf_hub_offline_is_a_clear_checkpoint_error(offline_hub):
    with pytest.raises(CheckpointError) as err:
        vitkit.from_pretrained("hf-hub:vitkit-tests/not-a-real-repo")
    msg = str(err.value)
    assert "could not download hf-hub:vitkit-tests/not-a-real-repo" in msg
    assert "pass the local directory" in msg
    assert "\n" not in msg


def _fake_hub(monkeypatch, files: dict[str, Path | Exception]):
    """Serve hub files from local paths (or raise the given error); record what was asked for."""
    asked = []

    def hf_hub_download(repo_id, filename, **kwargs):
        asked.append((repo_id, filename))
        result = files.get(filename, EntryNotFoundError(f"{filename} not in {repo_id}"))
        if isinstance(result, Exception):
            raise result
        return str(result)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    return asked


def test_hf_hub_downloads_and_loads(monkeypatch, tmp_path):
    model = pico()
    model.save_pretrained(tmp_path)
    asked = _fake_hub(monkeypatch, {CONFIG_FILE: tmp_path / CONFIG_FILE, WEIGHTS_FILE: tmp_path / WEIGHTS_FILE})
    loaded = vitkit.from_pretrained("hf-hub:org/pico")
    assert asked[0] == ("org/pico", CONFIG_FILE)
    assert asked[-1] == ("org/pico", WEIGHTS_FILE)  # the first weight file found ends the search
    x = images()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_hf_hub_repo_without_weights(monkeypatch, tmp_path):
    pico().save_pretrained(tmp_path)
    _fake_hub(monkeypatch, {CONFIG_FILE: tmp_path / CONFIG_FILE})
    with pytest.raises(CheckpointError, match="has no weight file"):
        vitkit.from_pretrained("hf-hub:org/pico")


def test_hf_hub_cached_config_but_offline_weights(monkeypatch, tmp_path):
    """Offline with only config.json cached: the error says it could not download, not that the repo has no
    weights."""
    pico().save_pretrained(tmp_path)
    offline = LocalEntryNotFoundError("cannot find the requested files in the local cache")
    _fake_hub(monkeypatch, {CONFIG_FILE: tmp_path / CONFIG_FILE, WEIGHTS_FILE: offline, "pytorch_model.bin": offline})
    with pytest.raises(CheckpointError, match="could not download hf-hub:org/pico"):
        vitkit.from_pretrained("hf-hub:org/pico")


@pytest.mark.parametrize("source", ["hf-hub:", "hf-hub:vit_base", "hf-hub:a/b/c", "hf-hub:org/", "hf-hub:/name"])
def test_malformed_hf_hub_source(monkeypatch, source):
    asked = _fake_hub(monkeypatch, {})
    with pytest.raises(CheckpointError, match=r"must look like 'hf-hub:<org>/<name>'"):
        vitkit.from_pretrained(source)
    assert asked == []  # rejected before any download is attempted
