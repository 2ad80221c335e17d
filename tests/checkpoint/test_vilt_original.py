"""Original ViLT Lightning checkpoints -> vitkit. The test builds original-format state dicts from random
transformers Vilt* models by inverting transformers' published conversion rules
(convert_vilt_original_to_pytorch.py), saves them as Lightning-like .ckpt files, and checks that
`vitkit.from_pretrained(ckpt)` picks the task from the heads present and reproduces the HF outputs."""

from __future__ import annotations

import functools
import logging
import sys
import types

import pytest
import torch

import vitkit
from vitkit.errors import CheckpointError
from vitkit.models import ViLT

transformers = pytest.importorskip("transformers")

ATOL = 1e-4
BASE = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, vocab_size=99,
            image_size=128, patch_size=32, max_position_embeddings=16)
HPARAMS = {"config": {"num_heads": 4, "hidden_size": 64, "max_image_len": -1, "drop_rate": 0.1,
                      "vit": "vit_base_patch32_384"}}  # the original's config keys (a subset)

# transformers' rename table (original -> HF), read backwards; q/k/v are re-fused into the original's qkv.
LAYER_RENAMES = {
    "norm1": "layernorm_before", "attn.proj": "attention.output.dense", "norm2": "layernorm_after",
    "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense",
}
EMBED_RENAMES = {
    "text_embeddings.word_embeddings.weight": "vilt.embeddings.text_embeddings.word_embeddings.weight",
    "text_embeddings.position_embeddings.weight": "vilt.embeddings.text_embeddings.position_embeddings.weight",
    "text_embeddings.token_type_embeddings.weight": "vilt.embeddings.text_embeddings.token_type_embeddings.weight",
    "text_embeddings.LayerNorm.weight": "vilt.embeddings.text_embeddings.LayerNorm.weight",
    "text_embeddings.LayerNorm.bias": "vilt.embeddings.text_embeddings.LayerNorm.bias",
    "transformer.cls_token": "vilt.embeddings.cls_token",
    "transformer.patch_embed.proj.weight": "vilt.embeddings.patch_embeddings.projection.weight",
    "transformer.patch_embed.proj.bias": "vilt.embeddings.patch_embeddings.projection.bias",
    "transformer.pos_embed": "vilt.embeddings.position_embeddings",
    "token_type_embeddings.weight": "vilt.embeddings.token_type_embeddings.weight",
    "transformer.norm.weight": "vilt.layernorm.weight",
    "transformer.norm.bias": "vilt.layernorm.bias",
    "pooler.dense.weight": "vilt.pooler.dense.weight",
    "pooler.dense.bias": "vilt.pooler.dense.bias",
}


def randomize_(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name.lower() and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0, 0.05)
    return model


def to_original(hf: torch.nn.Module) -> dict[str, torch.Tensor]:
    """An HF Vilt* model's weights under the original ViLT's keys (what its Lightning module held)."""
    sd = hf.state_dict()
    out = {orig: sd[key].clone() for orig, key in EMBED_RENAMES.items()}
    out["text_embeddings.position_ids"] = torch.arange(BASE["max_position_embeddings"])[None]  # BERT's buffer
    for i in range(BASE["num_hidden_layers"]):
        hf_l, o_l = f"vilt.encoder.layer.{i}.", f"transformer.blocks.{i}."
        for orig, key in LAYER_RENAMES.items():
            for p in ("weight", "bias"):
                out[f"{o_l}{orig}.{p}"] = sd[f"{hf_l}{key}.{p}"].clone()
        for p in ("weight", "bias"):
            out[f"{o_l}attn.qkv.{p}"] = torch.cat([sd[f"{hf_l}attention.attention.{q}.{p}"]
                                                  for q in ("query", "key", "value")])
    head = {"ViltForQuestionAnswering": "vqa_classifier", "ViltForImagesAndTextClassification": "nlvr2_classifier"}
    for k, v in sd.items():
        if k.startswith("classifier."):
            out[head[type(hf).__name__] + k[len("classifier"):]] = v.clone()
        elif k.startswith("rank_output."):
            out[k] = v.clone()
        elif k.startswith("mlm_score.transform."):
            out[k] = v.clone()
    if isinstance(hf, transformers.ViltForMaskedLM):
        out["mlm_score.decoder.weight"] = hf.mlm_score.decoder.weight.detach().clone()
        out["mlm_score.bias"] = sd["mlm_score.decoder.bias"].clone()
    return out


def save_ckpt(path, state_dict, **extra) -> None:
    torch.save({"epoch": 3, "global_step": 1234, "pytorch-lightning_version": "1.1.4", "state_dict": state_dict,
                "hyper_parameters": HPARAMS, **extra}, path)


def padded_batch(n_images: int = 1):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 99, (2, 9), generator=g)
    am = torch.ones(2, 9, dtype=torch.long)
    am[1, 5:] = 0
    px = torch.randn(2, 3, 192, 160, generator=g)
    pm = torch.ones(2, 192, 160, dtype=torch.long)
    pm[0, 128:, :] = 0
    pm[0, :, 96:] = 0
    px = px * pm[:, None]
    if n_images == 2:
        px, pm = torch.stack([px, px.flip(0)], 1), torch.stack([pm, pm.flip(0)], 1)
    return ids, am, px, pm


# name: (HF class, HF config extras, whether the original also held a (frozen or pretraining) ITM head)
CASES = {
    "vqa": ("ViltForQuestionAnswering", dict(num_labels=5), False),
    "nlvr2": ("ViltForImagesAndTextClassification", dict(num_images=2, modality_type_vocab_size=3), False),
    "irtr": ("ViltForImageAndTextRetrieval", {}, True),
    "mlm_itm": ("ViltForMaskedLM", {}, True),
}


@pytest.fixture(scope="module", params=list(CASES))
def original_case(request, tmp_path_factory):
    cls, extra, with_itm = CASES[request.param]
    torch.manual_seed(0)
    hf = randomize_(getattr(transformers, cls)(transformers.ViltConfig(**BASE, **extra))).eval()
    sd = to_original(hf)
    if with_itm:
        sd["itm_score.fc.weight"], sd["itm_score.fc.bias"] = torch.randn(2, 64) * 0.05, torch.randn(2) * 0.05
    path = tmp_path_factory.mktemp(request.param) / f"vilt_{request.param}.ckpt"
    save_ckpt(path, sd)
    return request.param, hf, sd, path


def test_outputs_match_transformers(original_case):
    name, hf, sd, path = original_case
    model = vitkit.from_pretrained(path)
    assert isinstance(model, ViLT) and not model.training
    n = 2 if name == "nlvr2" else 1
    ids, am, px, pm = padded_batch(n)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=am, pixel_values=px, pixel_mask=pm).logits
        out = model(input_ids=ids, attention_mask=am, pixel_values=px, pixel_mask=pm)
    got = out.extra_logits["mlm"] if name == "mlm_itm" else out.logits
    if name == "mlm_itm":  # MLM logits [B, Lt, V]: inference reads zeros at padding positions, compare the real
        real = am.bool()
        got, ref = got[real], ref[real]
    torch.testing.assert_close(got, ref, rtol=0, atol=ATOL)
    if "itm_score.fc.weight" in sd:  # the ITM head reads the pooled output
        itm = out.logits if name == "mlm_itm" else out.extra_logits["itm"]
        torch.testing.assert_close(itm, out.pooled @ sd["itm_score.fc.weight"].T + sd["itm_score.fc.bias"])


def test_heads_present_decide_the_task(original_case):
    name, _, _, path = original_case
    c = vitkit.from_pretrained(path).config
    want = {"vqa": ("vqa", ()), "nlvr2": ("nlvr2", ()), "irtr": ("retrieval", ("itm",)), "mlm_itm": ("itm", ("mlm",))}
    assert (c.task, c.extra_heads) == want[name]
    assert (c.embed_dim, c.depth, c.num_heads, c.img_size, c.patch_size, c.max_text_len) == (64, 2, 4, 128, 32, 16)
    assert c.norm_eps == 1e-6 and c.text_norm_eps == 1e-12  # the original's two LayerNorm eps
    assert c.drop_rate == 0.1 and c.max_image_len == -1  # from hyper_parameters["config"]
    if name == "nlvr2":
        assert (c.num_images, c.modality_type_vocab_size, c.num_answers, c.labels) == (2, 3, 2, ("False", "True"))
    if name == "vqa":
        assert c.num_answers == 5 and c.labels is None


def test_overrides(original_case, tmp_path):
    name, _, _, path = original_case
    if name == "vqa":
        model = vitkit.from_pretrained(path, labels=tuple("abcde"))
        assert model.config.labels == tuple("abcde")
    if name == "mlm_itm":  # fine-tuning starts from the pretraining checkpoint: new head, others dropped
        model = vitkit.from_pretrained(path, task="vqa", extra_heads=(), num_answers=3)
        assert model.vqa_classifier[3].out_features == 3 and not hasattr(model, "mlm_score")


def test_checkpoint_without_hyperparameters(tmp_path):
    torch.manual_seed(0)
    hf = randomize_(transformers.ViltForQuestionAnswering(transformers.ViltConfig(**BASE, num_labels=3))).eval()
    torch.save({"state_dict": to_original(hf), "epoch": 1}, tmp_path / "bare.ckpt")
    assert vitkit.from_pretrained(tmp_path / "bare.ckpt").config.num_heads == 1  # head width 64 assumed
    model = vitkit.from_pretrained(tmp_path / "bare.ckpt", num_heads=4)
    ids, am, px, pm = padded_batch()
    with torch.no_grad():
        torch.testing.assert_close(model(ids, am, px, pm).logits, hf(input_ids=ids, attention_mask=am,
                                   pixel_values=px, pixel_mask=pm).logits, rtol=0, atol=ATOL)


@functools.cache
def vqa_original() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return to_original(transformers.ViltForQuestionAnswering(transformers.ViltConfig(**BASE, num_labels=3)))


def test_unused_keys_are_dropped_and_unknown_ones_fail(tmp_path, caplog):
    sd = vqa_original()
    caplog.set_level(logging.INFO, logger="vitkit")
    save_ckpt(tmp_path / "mpp.ckpt", {**sd, "transformer.mask_token": torch.zeros(1, 1, 64),
                                      "mpp_score.decoder.weight": torch.zeros(768, 64)})
    vitkit.from_pretrained(tmp_path / "mpp.ckpt")
    assert "mpp_score.decoder.weight" in caplog.text and "transformer.mask_token" in caplog.text
    save_ckpt(tmp_path / "stray.ckpt", {**sd, "gqa_classifier.0.weight": torch.zeros(2, 2)})
    with pytest.raises(CheckpointError, match=r"unexpected keys: gqa_classifier\.0\.weight"):
        vitkit.from_pretrained(tmp_path / "stray.ckpt")
    save_ckpt(tmp_path / "pos.ckpt", {**sd, "text_embeddings.position_ids": torch.zeros(1, 16, dtype=torch.long)})
    with pytest.raises(CheckpointError, match="position_ids"):
        vitkit.from_pretrained(tmp_path / "pos.ckpt")


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_training_metadata_objects_are_inert(tmp_path, monkeypatch):
    """sacred's ReadOnlyDict (the original's config) loads as an inert stand-in; anything else that would run
    code is refused."""
    sd = vqa_original()
    mod = types.ModuleType("sacred.config.custom_containers")

    class ReadOnlyDict(dict):  # sacred's containers carry a `message` attribute besides their items
        def __init__(self, *args, message=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.message = message

    class ReadOnlyList(list):
        def __init__(self, *args, message=None):
            super().__init__(*args)
            self.message = message

    for cls in (ReadOnlyDict, ReadOnlyList):
        cls.__module__, cls.__qualname__ = mod.__name__, cls.__name__
        setattr(mod, cls.__name__, cls)
    for parent in ("sacred", "sacred.config"):
        monkeypatch.setitem(sys.modules, parent, types.ModuleType(parent))
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    path = tmp_path / "sacred.ckpt"
    config = ReadOnlyDict({**HPARAMS["config"], "datasets": ReadOnlyList(["vqa"], message="ro")}, message="ro")
    save_ckpt(path, sd, hyper_parameters={"config": config})
    monkeypatch.delitem(sys.modules, mod.__name__)  # as on a machine without sacred
    assert vitkit.from_pretrained(path).config.drop_rate == 0.1
    torch.save({"state_dict": sd, "callbacks": _Evil()}, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="weights_only"):
        vitkit.from_pretrained(tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="not found"):
        vitkit.from_pretrained(tmp_path / "missing.ckpt")
