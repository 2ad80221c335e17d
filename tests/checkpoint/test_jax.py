"""Google JAX .npz ViT checkpoints load into vitkit with timm's outputs.

No real checkpoint is downloaded: a randomly initialised timm ViT (every parameter perturbed) is written out
in the official .npz naming by the inverse of the published conversion rules (`to_npz` below, this test's own
code), then loaded with `vitkit.from_pretrained(npz, model=...)` and compared with the timm model.
"""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch

import vitkit
from vitkit import CheckpointError

timm = pytest.importorskip("timm")
from timm.models import vision_transformer as timm_vit  # noqa: E402

ORIGINAL_NAMES = ("LayerNorm_0", "LayerNorm_2", "MultiHeadDotProductAttention_1", "MlpBlock_3")
BIG_VISION_NAMES = ("LayerNorm_0", "LayerNorm_1", "MultiHeadDotProductAttention_0", "MlpBlock_0")


def _timm_vit(name: str = "vit_tiny_patch16_224", *, seed: int = 0, **kwargs):
    """A 2-block timm ViT with every parameter moved off its init, in eval mode."""
    torch.manual_seed(seed)
    model = timm.create_model(name, pretrained=False, depth=2, **kwargs)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def to_npz(
    model, *, big_vision: bool = False, prefix: str = "", scanned: bool = False
) -> dict[str, np.ndarray]:
    """timm ViT weights in the JAX release naming (the inverse of the torch <- Flax layout rules)."""
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    dim = sd["patch_embed.proj.weight"].shape[0]
    heads = model.blocks[0].attn.num_heads
    hd = dim // heads
    ln1, ln2, mha, mlp = BIG_VISION_NAMES if big_vision else ORIGINAL_NAMES
    out = {
        "embedding/kernel": sd["patch_embed.proj.weight"].transpose(2, 3, 1, 0),  # -> [kh, kw, in, out]
        "embedding/bias": sd["patch_embed.proj.bias"],
        ("pos_embedding" if big_vision else "Transformer/posembed_input/pos_embedding"): sd["pos_embed"],
        "Transformer/encoder_norm/scale": sd["norm.weight"],
        "Transformer/encoder_norm/bias": sd["norm.bias"],
    }
    if "cls_token" in sd:
        out["cls"] = sd["cls_token"]
    if "head.weight" in sd:
        out["head/kernel"], out["head/bias"] = sd["head.weight"].T, sd["head.bias"]
    blocks = []
    for i in range(len(model.blocks)):
        b = f"blocks.{i}."
        blk = {
            f"{ln1}/scale": sd[b + "norm1.weight"], f"{ln1}/bias": sd[b + "norm1.bias"],
            f"{ln2}/scale": sd[b + "norm2.weight"], f"{ln2}/bias": sd[b + "norm2.bias"],
            f"{mha}/out/kernel": sd[b + "attn.proj.weight"].T.reshape(heads, hd, dim),
            f"{mha}/out/bias": sd[b + "attn.proj.bias"],
            f"{mlp}/Dense_0/kernel": sd[b + "mlp.fc1.weight"].T,
            f"{mlp}/Dense_0/bias": sd[b + "mlp.fc1.bias"],
            f"{mlp}/Dense_1/kernel": sd[b + "mlp.fc2.weight"].T,
            f"{mlp}/Dense_1/bias": sd[b + "mlp.fc2.bias"],
        }
        weights = sd[b + "attn.qkv.weight"].reshape(3, dim, dim)  # [q|k|v, out, in]
        biases = sd[b + "attn.qkv.bias"].reshape(3, heads, hd)
        for j, name in enumerate(("query", "key", "value")):
            blk[f"{mha}/{name}/kernel"] = weights[j].T.reshape(dim, heads, hd)
            blk[f"{mha}/{name}/bias"] = biases[j]
        blocks.append(blk)
    if scanned:  # big_vision's nn.scan: one array per parameter with a leading layer axis
        out.update({f"Transformer/encoderblock/{k}": np.stack([blk[k] for blk in blocks]) for k in blocks[0]})
    else:
        for i, blk in enumerate(blocks):
            out.update({f"Transformer/encoderblock_{i}/{k}": v for k, v in blk.items()})
    return {prefix + k: np.ascontiguousarray(v) for k, v in out.items()}


def _save(path, arrays) -> str:
    np.savez(path, **arrays)
    return str(path)


def _pixels(size: int = 224, n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(7))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize(("big_vision", "scanned", "kwargs"), [
    (False, False, {}), (True, False, {"no_embed_class": True}), (True, True, {"no_embed_class": True}),
    (True, False, {"class_token": False, "global_pool": "avg", "fc_norm": False}),
])
def test_to_npz_is_the_inverse_of_timms_npz_loader(tmp_path, big_vision, scanned, kwargs):
    """Guards the test's own writer: timm's JAX loader reads what it writes back to the same weights."""
    load_npz = getattr(timm_vit, "_load_weights", None)  # timm's private JAX loader
    if load_npz is None:
        pytest.skip("this timm has no vision_transformer._load_weights")
    ref = _timm_vit(**kwargs)
    npz = _save(tmp_path / "w.npz", to_npz(ref, big_vision=big_vision, prefix="params/" if big_vision else "",
                                           scanned=scanned))
    fresh = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=2, **kwargs)
    load_npz(fresh, npz)
    for key, value in ref.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


# ------------------------------------------------------------------------------------ original release
@pytest.mark.parametrize("prefix", ["", "opt/target/"])
def test_original_naming_matches_timm(tmp_path, prefix):
    ref = _timm_vit()
    arrays = to_npz(ref, prefix=prefix)
    if prefix:  # such files also carry optimizer state beside the parameters; it is ignored
        arrays["opt/state/step"] = np.array(1000, dtype=np.int64)
    net = vitkit.from_pretrained(_save(tmp_path / "vit.npz", arrays), model="vit_tiny_patch16_224")
    x = _pixels()
    with torch.no_grad():
        assert _max_diff(ref(x), net(x)) <= 1e-4
        assert _max_diff(ref.forward_features(x), net.forward_features(x)) <= 1e-4
    c = net.config
    assert (c.depth, c.embed_dim, c.num_heads, c.num_classes) == (2, 192, 3, 1000)  # depth from the file
    assert c.class_token and c.global_pool == "token" and not c.no_embed_class
    assert c.representation_size is None


def test_in21k_pre_logits_layer(tmp_path):
    """in21k releases: [CLS] -> Linear + tanh (pre_logits) -> head; checked against a hand computation."""
    ref = _timm_vit(num_classes=0)
    g = torch.Generator().manual_seed(11)
    rep, classes = 96, 11  # a representation width unlike D so a transposed kernel cannot pass
    w1, b1 = 0.1 * torch.randn(rep, 192, generator=g), 0.1 * torch.randn(rep, generator=g)
    w2, b2 = 0.1 * torch.randn(classes, rep, generator=g), 0.1 * torch.randn(classes, generator=g)
    arrays = to_npz(ref)
    arrays.update({"pre_logits/kernel": w1.numpy().T, "pre_logits/bias": b1.numpy(),
                   "head/kernel": w2.numpy().T, "head/bias": b2.numpy()})
    net = vitkit.from_pretrained(_save(tmp_path / "in21k.npz", arrays), model="vit_tiny_patch16_224")
    assert (net.config.representation_size, net.config.num_classes) == (rep, classes)
    x = _pixels()
    with torch.no_grad():
        expected = torch.tanh(ref(x) @ w1.T + b1) @ w2.T + b2  # ref(x): the pooled [CLS] features
        assert _max_diff(expected, net(x)) <= 1e-4


def test_checkpoint_without_head(tmp_path):
    ref = _timm_vit(num_classes=0)
    net = vitkit.from_pretrained(_save(tmp_path / "nohead.npz", to_npz(ref)), model="vit_tiny_patch16_224")
    assert net.config.num_classes == 0
    x = _pixels()
    with torch.no_grad():
        assert _max_diff(ref(x), net(x)) <= 1e-4


# --------------------------------------------------------------------------------------------- big_vision
@pytest.mark.parametrize("scanned", [False, True])
def test_big_vision_with_cls_token(tmp_path, scanned):
    """big_vision adds positions to the patches, then prepends [CLS]: timm's no_embed_class=True."""
    ref = _timm_vit(no_embed_class=True, num_classes=10)
    arrays = to_npz(ref, big_vision=True, prefix="params/", scanned=scanned)
    net = vitkit.from_pretrained(_save(tmp_path / "bv.npz", arrays), model="vit_tiny_patch16_224")
    assert net.config.no_embed_class and net.config.class_token and net.config.num_classes == 10
    x = _pixels()
    with torch.no_grad():
        assert _max_diff(ref(x), net(x)) <= 1e-4


def test_big_vision_gap_without_cls_token(tmp_path):
    ref = _timm_vit(class_token=False, global_pool="avg", fc_norm=False, num_classes=10)
    arrays = to_npz(ref, big_vision=True, prefix="params/")
    assert "params/cls" not in arrays
    net = vitkit.from_pretrained(_save(tmp_path / "gap.npz", arrays), model="vit_tiny_patch16_224")
    c = net.config
    assert not c.class_token and c.global_pool == "avg" and c.fc_norm is False
    x = _pixels()
    with torch.no_grad():
        assert _max_diff(ref(x), net(x)) <= 1e-4


# ------------------------------------------------------------------------------------------- resolution
def test_224_checkpoint_in_a_384_model(tmp_path):
    """The 14x14 position grid is resampled to 24x24 exactly as timm's checkpoint filter does."""
    ref224 = _timm_vit()
    ref384 = timm.create_model("vit_tiny_patch16_384", pretrained=False, depth=2).eval()
    ref384.load_state_dict(timm_vit.checkpoint_filter_fn(ref224.state_dict(), ref384))
    npz = _save(tmp_path / "vit224.npz", to_npz(ref224))
    x = _pixels(384, n=1)
    with torch.no_grad():
        expected = ref384(x)
        for net in (vitkit.from_pretrained(npz, model="vit_tiny_patch16_384"),
                    vitkit.from_pretrained(npz, model="vit_tiny_patch16_224", img_size=384)):
            assert net.pos_embed.shape == (1, 1 + 24 * 24, 192)
            assert _max_diff(expected, net(x)) <= 1e-4


# ------------------------------------------------------------------------------------------------ errors
def test_garbage_file_is_refused(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"this is not a zip archive" * 10)
    with pytest.raises(CheckpointError, match=r"not a readable \.npz"):
        vitkit.from_pretrained(path, model="vit_tiny_patch16_224")


def test_truncated_file_is_refused(tmp_path):
    good = _save(tmp_path / "good.npz", to_npz(_timm_vit()))
    data = open(good, "rb").read()
    path = tmp_path / "cut.npz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"\.npz"):
        vitkit.from_pretrained(path, model="vit_tiny_patch16_224")


def test_pickled_arrays_are_never_loaded(tmp_path):
    path = tmp_path / "pickle.npz"
    np.savez(path, **{"embedding/kernel": np.array([{"code": 1}], dtype=object)})
    with pytest.raises(CheckpointError):
        vitkit.from_pretrained(path, model="vit_tiny_patch16_224")


def test_single_array_file_is_refused(tmp_path):
    path = tmp_path / "one.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(3, dtype=np.float32))
    assert not zipfile.is_zipfile(path)
    with pytest.raises(CheckpointError, match="single array"):
        vitkit.from_pretrained(path, model="vit_tiny_patch16_224")


def test_missing_and_unexpected_keys_are_named(tmp_path):
    arrays = to_npz(_timm_vit())
    del arrays["Transformer/encoderblock_1/MlpBlock_3/Dense_0/bias"]
    arrays["Transformer/encoderblock_0/Extra_0/kernel"] = np.zeros((2, 2), dtype=np.float32)
    expected = (r"missing keys: Transformer/encoderblock_1/MlpBlock_3/Dense_0/bias; "
                r"unexpected keys: Transformer/encoderblock_0/Extra_0/kernel")
    with pytest.raises(CheckpointError, match=expected):
        vitkit.from_pretrained(_save(tmp_path / "keys.npz", arrays), model="vit_tiny_patch16_224")


def test_not_a_vit_checkpoint(tmp_path):
    path = _save(tmp_path / "other.npz", {"conv1/kernel": np.zeros((3, 3, 3, 8), dtype=np.float32)})
    with pytest.raises(CheckpointError, match="embedding/kernel"):
        vitkit.from_pretrained(path, model="vit_tiny_patch16_224")


def test_npz_needs_a_model_name(tmp_path):
    path = _save(tmp_path / "vit.npz", to_npz(_timm_vit()))
    with pytest.raises(CheckpointError, match="does not say which architecture"):
        vitkit.from_pretrained(path)
