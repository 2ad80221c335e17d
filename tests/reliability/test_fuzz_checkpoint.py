"""Property-based fuzzing of the checkpoint readers: `vitkit.from_pretrained` and
`vitkit.checkpoint.io.read_state_dict` on malformed input.

Inputs: random bytes under every weight-file suffix (.safetensors, .pth, .bin, .pt, .ckpt, .npz); real checkpoints
truncated, bit-flipped or spliced; safetensors files whose JSON header lies (offsets, dtypes, shapes); torch pickles
of random plain data, of tensors of every dtype and shape, and of objects that would run code; vitkit, Hugging Face
and timm directories whose config.json is of the wrong shape (any JSON value, fields of the wrong type, sizes that
would need terabytes). Each load either returns a model or raises a `VitkitError` (almost always a
`CheckpointError`); nothing else escapes, no planted code runs, and no implausible config is allocated.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import struct
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as st_save

import vitkit
from vitkit.checkpoint.converters.hf import CLASSIFIER_TABLE, EMBED_TABLE, HUB_BLOCK
from vitkit.checkpoint.io import CONFIG_FILE, WEIGHTS_FILE, read_state_dict
from vitkit.errors import CheckpointError, VitkitError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

PICO = "vit_pico_patch2_16"
torch.manual_seed(0)
_MODEL = vitkit.create_model(PICO, num_classes=3, labels=("a", "b", "c"))
DEPTH = _MODEL.config.depth
STATE = {k: v.detach().clone().contiguous() for k, v in _MODEL.state_dict().items()}
SAFETENSORS = st_save(STATE)
_buf = io.BytesIO()
torch.save(STATE, _buf)
PTH = _buf.getvalue()


@contextmanager
def scratch():
    with tempfile.TemporaryDirectory(prefix="vitkit-fuzz-") as d:
        yield Path(d)


def load(source, **kwargs):
    """from_pretrained; the only exceptions allowed out are vitkit's own."""
    try:
        model = vitkit.from_pretrained(source, **kwargs)
    except VitkitError as e:
        assert str(e)
        event(f"refused ({type(e).__name__}{': ' + str(e)[:60] if not isinstance(e, CheckpointError) else ''})")
        return None
    event("loaded")
    assert isinstance(model, torch.nn.Module) and not model.training
    return model


@st.composite
def damaged(draw, data: bytes) -> bytes:
    how = draw(st.sampled_from(["truncate", "flip", "delete", "insert", "random"]))
    n = len(data)
    if how == "truncate":
        return data[: draw(st.integers(0, n - 1))]
    if how == "flip":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            out[draw(st.integers(0, n - 1))] = draw(st.integers(0, 255))
        return bytes(out)
    if how == "delete":
        i = draw(st.integers(0, n - 1))
        return data[:i] + data[i + draw(st.integers(1, 256)):]
    if how == "insert":
        i = draw(st.integers(0, n))
        return data[:i] + draw(st.binary(min_size=1, max_size=64)) + data[i:]
    return draw(st.binary(max_size=512))


SUFFIXES = [".safetensors", ".pth", ".bin", ".pt", ".ckpt", ".npz"]


# ------------------------------------------------------------------------------------------ weight files
@FUZZ
@given(data=st.data(), suffix=st.sampled_from(SUFFIXES), base=st.sampled_from(["safetensors", "pth", "npz"]))
def test_damaged_weight_files_are_checkpoint_errors(data, suffix, base):
    if base == "npz":
        buf = io.BytesIO()
        np.savez(buf, **{"Transformer/encoder_norm/scale": np.ones(4, np.float32), "embedding/bias": np.ones(4)})
        raw = buf.getvalue()
    else:
        raw = SAFETENSORS if base == "safetensors" else PTH
    blob = data.draw(damaged(raw))
    with scratch() as d:
        path = d / f"weights{suffix}"
        path.write_bytes(blob)
        if suffix not in (".npz", ".ckpt"):
            try:
                sd = read_state_dict(path)
            except CheckpointError as e:
                assert "weights" in str(e)  # names the file
            else:
                assert all(isinstance(v, torch.Tensor) for v in sd.values())
        load(path, model=PICO)


@st.composite
def safetensors_headers(draw) -> bytes:
    """A safetensors file whose JSON header describes tensors the data does not hold (or holds differently)."""
    header = {}
    for i in range(draw(st.integers(0, 3))):
        dtype = draw(st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "BOOL", "F64", "I8", "F8_E4M3", "C64", "XX"]))
        shape = draw(st.lists(st.integers(0, 2**40) | st.integers(0, 8), max_size=4))
        start = draw(st.integers(0, 64) | st.integers(-5, 2**63))
        end = draw(st.integers(0, 128) | st.integers(-5, 2**63))
        entry: object = {"dtype": dtype, "shape": shape, "data_offsets": [start, end]}
        if draw(st.integers(0, 5)) == 0:
            entry = draw(JSON)
        header[draw(st.sampled_from(["pos_embed", f"t{i}", "__metadata__"]))] = entry
    text = json.dumps(header).encode()
    length = len(text) if draw(st.integers(0, 4)) else draw(st.integers(0, 2**64 - 1))
    return struct.pack("<Q", length) + text + draw(st.binary(max_size=128))


@FUZZ
@given(raw=safetensors_headers())
def test_safetensors_with_lying_headers(raw):
    with scratch() as d:
        path = d / "w.safetensors"
        path.write_bytes(raw)
        try:
            read_state_dict(path)
        except CheckpointError:
            pass
        load(path, model=PICO)


TENSOR_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int8, torch.uint8,
                 torch.bool, torch.complex64]


@st.composite
def tensors(draw) -> torch.Tensor:
    dtype = draw(st.sampled_from(TENSOR_DTYPES))
    shape = draw(st.lists(st.integers(0, 4), max_size=3))
    t = torch.zeros(shape, dtype=dtype)
    kind = draw(st.sampled_from(["plain", "plain", "noncontig", "sparse", "meta-like", "nan"]))
    if kind == "noncontig" and t.ndim >= 2:
        t = t.transpose(0, 1)
    elif kind == "sparse" and t.ndim >= 1 and dtype not in (torch.bool, torch.complex64):
        t = t.to_sparse()
    elif kind == "nan" and dtype.is_floating_point and t.numel():
        t.view(-1)[0] = float("nan")
    return t


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
PICKLABLE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6) | st.binary(max_size=6) | tensors(),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=6) | st.integers(), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def state_dicts(draw) -> object:
    """The real state dict with a few entries changed, wrapped as training checkpoints are, or any pickle-able
    plain value."""
    if draw(st.integers(0, 4)) == 0:
        return draw(PICKLABLE)
    sd = dict(STATE)
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(sorted(sd)) | st.text(max_size=6))
        how = draw(st.sampled_from(["drop", "replace", "replace"]))
        if how == "drop":
            sd.pop(key, None)
        else:
            sd[key] = draw(tensors() | PICKLABLE)
    wrap = draw(st.sampled_from([None, "state_dict", "model", "module"]))
    return {wrap: sd, "epoch": 3} if wrap else sd


@settings(FUZZ, max_examples=40)
@given(obj=state_dicts(), suffix=st.sampled_from([".pth", ".bin", ".pt"]))
def test_pickles_of_plain_data_and_odd_tensors(obj, suffix):
    with scratch() as d:
        path = d / f"w{suffix}"
        torch.save(obj, path)
        try:
            read_state_dict(path)
        except CheckpointError:
            pass
        model = load(path, model=PICO)
        if model is not None:
            with torch.no_grad():
                model(torch.zeros(1, 3, 16, 16))


# ------------------------------------------------------------------------------------- pickles with code
class _Call:
    """Pickles as a call of `fn(*args)`: what a malicious checkpoint plants."""

    def __init__(self, fn, *args) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


@FUZZ
@given(target=st.sampled_from(["os.system", "os.mkdir", "builtins.exec", "builtins.eval", "subprocess.call",
                               "posix.system", "builtins.getattr", "torch.load", "pathlib.Path.touch"]),
       nest=st.sampled_from(["top", "in state_dict", "as a tensor's neighbour", "in a list"]),
       suffix=st.sampled_from([".pth", ".bin", ".ckpt", ".pt"]), protocol=st.sampled_from([2, 4]))
def test_pickles_that_would_run_code_are_refused_and_nothing_runs(target, nest, suffix, protocol):
    with scratch() as d:
        marker = d / "pwned"
        calls = {
            "os.system": _Call(os.system, f"touch {marker}"), "posix.system": _Call(os.system, f"touch {marker}"),
            "os.mkdir": _Call(os.mkdir, str(marker)), "builtins.exec": _Call(exec, f"open({str(marker)!r}, 'w')"),
            "builtins.eval": _Call(eval, f"open({str(marker)!r}, 'w')"),
            "subprocess.call": _Call(__import__("subprocess").call, ["touch", str(marker)]),
            "builtins.getattr": _Call(getattr, marker, "touch"), "torch.load": _Call(torch.load, str(marker)),
            "pathlib.Path.touch": _Call(Path.touch, marker),
        }
        payload = calls[target]
        obj = {"top": payload, "in state_dict": {"state_dict": {**STATE, "evil": payload}},
               "as a tensor's neighbour": {"w": torch.zeros(1), "x": payload}, "in a list": [STATE, payload]}[nest]
        path = d / f"evil{suffix}"
        with open(path, "wb") as f:
            torch.save(obj, f, pickle_protocol=protocol)
        assert load(path, model=PICO) is None
        if suffix != ".ckpt":
            with pytest.raises(CheckpointError):
                read_state_dict(path)
        assert not marker.exists()


def test_raw_pickle_with_code_outside_a_torch_zip_is_refused(tmp_path):
    """A legacy (non-zip) torch file that is a bare pickle whose REDUCE would run os.system."""
    marker = tmp_path / "pwned"
    path = tmp_path / "legacy.pth"
    path.write_bytes(pickle.dumps(_Call(os.system, f"touch {marker}"), protocol=2))
    with pytest.raises(CheckpointError, match="weights_only"):
        vitkit.from_pretrained(path, model=PICO)
    assert not marker.exists()


def test_zip_with_a_code_pickle_inside_is_refused(tmp_path):
    """torch's zip container, its data.pkl replaced by a pickle with code."""
    marker = tmp_path / "pwned"
    src = tmp_path / "good.pth"
    torch.save({"w": torch.zeros(1)}, src)
    bad = tmp_path / "bad.pth"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(bad, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename.endswith("data.pkl"):
                data = pickle.dumps(_Call(os.system, f"touch {marker}"), protocol=2)
            zout.writestr(item, data)
    with pytest.raises(CheckpointError):
        read_state_dict(bad)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------ config.json
def pico_dir(d: Path) -> Path:
    _MODEL.save_pretrained(d / "m")
    return d / "m"


IMPLAUSIBLE = st.sampled_from([0, -1, -(2**40), 2**40, 10**7, 2**63, 1e308, float("inf"), float("nan"), 0.5, True,
                               "12", None, [], {}, [16, 16], [0, 0], ["a"]])


@FUZZ
@given(data=st.data())
def test_vitkit_config_json_of_any_shape(data):
    with scratch() as d:
        path = pico_dir(d)
        meta = json.loads((path / CONFIG_FILE).read_text())
        how = data.draw(st.sampled_from(["any json", "any config", "field", "field", "fields"]))
        if how == "any json":
            meta = data.draw(JSON)
        elif how == "any config":
            meta["config"] = data.draw(JSON)
        else:
            for _ in range(1 if how == "field" else data.draw(st.integers(2, 4))):
                key = data.draw(st.sampled_from(sorted(meta["config"])))
                meta["config"][key] = data.draw(IMPLAUSIBLE | JSON)
        (path / CONFIG_FILE).write_text(json.dumps(meta))
        load(path)


def hf_state_dict() -> dict[str, torch.Tensor]:
    """The pico ViT under transformers' ViTForImageClassification names (q, k, v split)."""
    inverse = {v: k for k, v in EMBED_TABLE.items()}
    out = {"vit." + inverse[k]: v for k, v in STATE.items() if k in inverse}
    out.update({k: STATE[v] for k, v in CLASSIFIER_TABLE.items()})
    for i in range(DEPTH):
        block = {v: k for k, v in HUB_BLOCK.table.items()}
        prefix = "vit." + HUB_BLOCK.prefix.format(i=i)
        for k, v in block.items():
            out[prefix + v] = STATE[f"blocks.{i}.{k}"]
        for param in ("weight", "bias"):
            for name, part in zip(HUB_BLOCK.qkv, STATE[f"blocks.{i}.attn.qkv.{param}"].chunk(3)):
                out[f"{prefix}{name}.{param}"] = part.contiguous()
    return out


HF_CONFIG = {"model_type": "vit", "hidden_size": 64, "num_hidden_layers": DEPTH, "num_attention_heads": 4,
             "intermediate_size": 128, "image_size": 16, "patch_size": 2, "num_channels": 3, "qkv_bias": True,
             "hidden_act": "gelu", "layer_norm_eps": 1e-6, "id2label": {"0": "a", "1": "b", "2": "c"}}


def test_hf_fixture_loads():
    with tempfile.TemporaryDirectory() as d:
        Path(d, "config.json").write_text(json.dumps(HF_CONFIG))
        Path(d, "model.safetensors").write_bytes(st_save(hf_state_dict()))
        model = vitkit.from_pretrained(d)
        assert model.config.labels == ("a", "b", "c")


@FUZZ
@given(data=st.data())
def test_hugging_face_config_json_of_any_shape(data):
    meta = dict(HF_CONFIG)
    how = data.draw(st.sampled_from(["field", "field", "fields", "vilt", "preprocessor", "index"]))
    files: dict[str, bytes] = {"model.safetensors": st_save(hf_state_dict())}
    if how == "vilt":
        meta = {"model_type": "vilt", **data.draw(st.dictionaries(st.sampled_from(
            ["hidden_size", "num_hidden_layers", "image_size", "patch_size", "architectures", "id2label",
             "max_position_embeddings", "layer_norm_eps", "hidden_act"]), IMPLAUSIBLE | JSON, max_size=4))}
    elif how == "preprocessor":
        files["preprocessor_config.json"] = json.dumps(data.draw(st.dictionaries(st.sampled_from(
            ["image_mean", "image_std", "resample", "do_normalize", "size", "crop_size", "do_center_crop"]),
            IMPLAUSIBLE | JSON, max_size=4) | JSON)).encode()
    elif how == "index":  # a sharded checkpoint whose index is odd or names files outside the directory
        del files["model.safetensors"]
        files["model.safetensors.index.json"] = json.dumps({"weight_map": data.draw(
            st.dictionaries(st.text(max_size=5), st.sampled_from(["../../etc/passwd", "/etc/passwd", "a.safetensors",
                                                                  "", ".."]) | JSON, max_size=3) | JSON)}).encode()
    else:
        for _ in range(1 if how == "field" else data.draw(st.integers(2, 4))):
            key = data.draw(st.sampled_from(sorted(HF_CONFIG)))
            meta[key] = data.draw(IMPLAUSIBLE | JSON)
    with scratch() as d:
        (d / "config.json").write_text(json.dumps(meta))
        for name, raw in files.items():
            (d / name).write_bytes(raw)
        load(d)


@FUZZ
@given(data=st.data())
def test_timm_hub_config_json_of_any_shape(data):
    meta = {"architecture": PICO, "num_classes": 3, "pretrained_cfg": {"mean": [0.5] * 3}, "model_args": {}}
    key = data.draw(st.sampled_from(sorted(meta)))
    meta[key] = data.draw(IMPLAUSIBLE | JSON | st.just({"depth": 2, "img_size": 10**6}))
    with scratch() as d:
        (d / "config.json").write_text(json.dumps(meta))
        (d / "model.safetensors").write_bytes(SAFETENSORS)
        load(d)


# ---------------------------------------------------------------------------- regressions found by fuzzing
@pytest.mark.parametrize("field, value", [("depth", 10**7), ("embed_dim", 2**40), ("num_heads", 0),
                                          ("patch_size", 0), ("img_size", -5), ("mlp_ratio", 1e300)])
def test_config_that_would_need_terabytes_is_refused_before_allocating(tmp_path, field, value):
    """A config.json claiming depth 10^7 or width 2^40 next to a 100 kB weight file used to be built as given
    (hours, then out of memory) or crash in the model's constructor; it is refused with a CheckpointError."""
    path = pico_dir(tmp_path)
    meta = json.loads((path / CONFIG_FILE).read_text())
    meta["config"][field] = value
    if field == "embed_dim":
        meta["config"]["num_heads"] = 1
    (path / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError):
        vitkit.from_pretrained(path)


@pytest.mark.parametrize("pos_embed", ["learn", "sincos"])
def test_config_image_size_of_40000_is_refused_before_allocating(tmp_path, pos_embed):
    """img_size 40000 next to a 16-pixel checkpoint: a 20000 x 20000 position grid (100 GB). The learned table
    used to be resampled to it, the fixed sin-cos table computed for it; both are refused first."""
    model = vitkit.create_model(PICO, pos_embed=pos_embed)
    path = model.save_pretrained(tmp_path / "m")
    meta = json.loads((path / CONFIG_FILE).read_text())
    meta["config"]["img_size"] = 40_000
    (path / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="img_size"):
        vitkit.from_pretrained(path)
    resized = vitkit.from_pretrained(model.save_pretrained(tmp_path / "ok"), img_size=24)  # an override still works
    assert resized.pos_embed.shape[1] == 1 + 12 * 12


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/tmp/x.safetensors", "sub/../../outside.safetensors"])
def test_sharded_index_naming_a_file_outside_the_directory_is_refused(tmp_path, shard):
    """A Hugging Face `*.index.json` whose weight_map names a file outside the model directory (a path that tries
    to leave it) is refused, and that file is not read."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(HF_CONFIG))
    (tmp_path / "outside.safetensors").write_bytes(st_save(hf_state_dict()))
    (model / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"vit.layernorm.weight": shard}}))
    with pytest.raises(CheckpointError, match="outside the directory"):
        vitkit.from_pretrained(model)


def test_weights_file_of_the_wrong_format_behind_the_right_name(tmp_path):
    path = pico_dir(tmp_path)
    (path / WEIGHTS_FILE).write_bytes(PTH)
    with pytest.raises(CheckpointError, match="safetensors"):
        vitkit.from_pretrained(path)


# ------------------------------------------------------------------------------------------ source audit
SRC = Path(vitkit.__file__).parent


def _sources() -> dict[str, str]:
    return {str(p.relative_to(SRC)): p.read_text(encoding="utf-8") for p in sorted(SRC.rglob("*.py"))}


def test_every_pickle_read_in_vitkit_is_restricted():
    """torch.load only with weights_only=True, numpy never with allow_pickle=True, pickle only through the
    numpy-only CIFAR unpickler: no code path reads a pickle that could run code."""
    import re

    for name, text in _sources().items():
        for call in re.finditer(r"torch\.load\(([^()]|\([^()]*\))*\)", text):
            assert "weights_only=True" in call.group(0), f"{name}: {call.group(0)}"
        assert "allow_pickle=True" not in text, name
        for call in re.finditer(r"\bpickle\.(loads?|Unpickler)\b", text):
            assert name == "data/cifar.py" and call.group(1) == "Unpickler", f"{name}: pickle.{call.group(1)}"
        assert "weights_only=False" not in text, name


def test_downloads_only_through_huggingface_hub():
    """No module of vitkit opens network connections itself; hf-hub: sources go through huggingface_hub."""
    network = re.compile(r"^\s*(import|from)\s+(urllib|requests|http|httpx|aiohttp|socket|ftplib)\b|torch\.hub|"
                         r"download_url|urlretrieve", re.M)
    for name, text in _sources().items():
        assert not network.search(text), name
    downloaders = [name for name, text in _sources().items()
                   if "hf_hub_download" in text or "snapshot_download" in text]
    assert downloaders == ["checkpoint/hub.py"]
