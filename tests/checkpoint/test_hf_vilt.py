"""Hugging Face transformers ViLT directories -> vitkit: logit parity for every Vilt* head class on a padded
batch (two text lengths, two image sizes via pixel_mask), with the HF config honoured, and strict errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import vitkit
from vitkit.checkpoint.converters.hf_vilt import convert_hf_vilt, hf_vilt_task
from vitkit.errors import CheckpointError
from vitkit.models import ViLT

transformers = pytest.importorskip("transformers")

ATOL = 1e-4  # fp32 logits
BASE = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, vocab_size=99,
            image_size=128, patch_size=32, max_position_embeddings=16)
CASES = {
    "ViltModel": dict(layer_norm_eps=1e-5),
    "ViltForQuestionAnswering": dict(layer_norm_eps=1e-3, id2label={i: f"answer {i}" for i in range(7)},
                                     max_image_length=200, hidden_act="gelu_new"),
    "ViltForMaskedLM": dict(),
    "ViltForImageAndTextRetrieval": dict(layer_norm_eps=1e-6),
    "ViltForImagesAndTextClassification": dict(num_images=2, modality_type_vocab_size=3,
                                               id2label={0: "False", 1: "True"}),
}


def randomize_(model: torch.nn.Module) -> torch.nn.Module:
    """Every parameter random (LayerNorm weights near 1), so a weight loaded into the wrong place shows."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name.lower() and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0, 0.05)
    return model


def padded_batch(n_images: int = 1):
    """Texts of 9 and 6 tokens; a full 160 x 192 image and a 100 x 130 one padded to it (partial patches)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 99, (2, 9), generator=g)
    am = torch.ones(2, 9, dtype=torch.long)
    am[1, 6:] = 0
    px = torch.randn(2, 3, 160, 192, generator=g)
    pm = torch.ones(2, 160, 192, dtype=torch.long)
    pm[1, 100:, :] = 0
    pm[1, :, 130:] = 0
    px = px * pm[:, None]
    if n_images == 2:  # the second image: the first one's padding pattern swapped between the examples
        px = torch.stack([px, px.flip(0)], dim=1)
        pm = torch.stack([pm, pm.flip(0)], dim=1)
    return ids, am, px, pm


@pytest.fixture(scope="module", params=list(CASES))
def hf_case(request, tmp_path_factory):
    name = request.param
    torch.manual_seed(0)
    hf = randomize_(getattr(transformers, name)(transformers.ViltConfig(**BASE, **CASES[name]))).eval()
    directory = tmp_path_factory.mktemp(name)
    hf.save_pretrained(directory)
    return name, hf, directory


def test_logit_parity_on_a_padded_batch(hf_case):
    name, hf, directory = hf_case
    model = vitkit.from_pretrained(directory)
    assert isinstance(model, ViLT) and not model.training
    n = 2 if name == "ViltForImagesAndTextClassification" else 1
    ids, am, px, pm = padded_batch(n)
    real = am.bool()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=am, pixel_values=px, pixel_mask=pm)
        out = model(input_ids=ids, attention_mask=am, pixel_values=px, pixel_mask=pm)
    with torch.enable_grad():  # gradients on: the same fields and values
        graded = model(input_ids=ids, attention_mask=am, pixel_values=px, pixel_mask=pm)
    if name == "ViltModel":
        assert out.logits is None
        for o in (out, graded):
            torch.testing.assert_close(o.pooler_output, ref.pooler_output, rtol=0, atol=ATOL)
            torch.testing.assert_close(o.image_feats[:, 0], ref.last_hidden_state[:, 9], rtol=0, atol=ATOL)
            # text positions, padding included, are comparable one to one (HF reorders image patches at random)
            torch.testing.assert_close(o.text_feats.detach(), ref.last_hidden_state[:, :9], rtol=0, atol=ATOL)
            torch.testing.assert_close(o.last_hidden_state[:, :9].detach(), ref.last_hidden_state[:, :9], rtol=0,
                                       atol=ATOL)
        assert not real.all()  # the batch had text padding, compared above
    else:
        assert out.logits.shape == ref.logits.shape
        for o in (out, graded):  # every position, padding included (MLM logits [B, Lt, V] too)
            torch.testing.assert_close(o.logits.detach(), ref.logits, rtol=0, atol=ATOL)


def test_config_is_honoured(hf_case):
    name, hf, directory = hf_case
    c, h = vitkit.from_pretrained(directory).config, hf.config
    assert (c.embed_dim, c.depth, c.num_heads, c.mlp_ratio) == (64, 2, 4, 2.0)
    assert (c.vocab_size, c.max_text_len, c.img_size, c.patch_size) == (99, 16, 128, 32)
    assert c.norm_eps == c.text_norm_eps == h.layer_norm_eps  # HF: one eps for every LayerNorm
    assert c.modality_type_vocab_size == h.modality_type_vocab_size
    assert c.max_image_len == (h.max_image_length if h.max_image_length > 0 else -1)
    expected_task = {"ViltModel": "backbone", "ViltForQuestionAnswering": "vqa", "ViltForMaskedLM": "mlm",
                     "ViltForImageAndTextRetrieval": "retrieval", "ViltForImagesAndTextClassification": "nlvr2"}
    assert c.task == expected_task[name]
    if name == "ViltForQuestionAnswering":
        assert c.labels == tuple(f"answer {i}" for i in range(7)) and c.num_answers == 7
        assert c.act == "gelu_tanh"
    if name == "ViltForImagesAndTextClassification":
        assert c.num_images == 2 and c.labels == ("False", "True")


def test_round_trip_through_vitkit_format(hf_case, tmp_path):
    name, _, directory = hf_case
    model = vitkit.from_pretrained(directory)
    model.save_pretrained(tmp_path)
    again = vitkit.from_pretrained(tmp_path)
    n = 2 if name == "ViltForImagesAndTextClassification" else 1
    ids, am, px, pm = padded_batch(n)
    with torch.no_grad():
        a, b = model(ids, am, px, pm), again(ids, am, px, pm)
    assert again.config == model.config and torch.equal(a.pooled, b.pooled)


def test_mlm_decoder_tied_by_transformers_is_copied_untied(tmp_path):
    torch.manual_seed(0)
    hf = randomize_(transformers.ViltForMaskedLM(transformers.ViltConfig(**BASE))).eval()
    hf.save_pretrained(tmp_path)
    assert "mlm_score.decoder.weight" not in load_file(str(tmp_path / "model.safetensors"))  # tied: not saved
    model = vitkit.from_pretrained(tmp_path)
    words = model.text_embeddings.word_embeddings.weight
    assert torch.equal(model.mlm_score.decoder.weight, words)
    assert model.mlm_score.decoder.weight.data_ptr() != words.data_ptr()  # vitkit never ties


def test_untied_mlm_decoder_and_legacy_bias_are_read(tmp_path):
    """Checkpoints converted with tie_word_embeddings=False (as the original, untied) carry their own decoder;
    transformers 4 saved the bias twice (mlm_score.bias and the shared mlm_score.decoder.bias)."""
    torch.manual_seed(0)
    hf = randomize_(transformers.ViltForMaskedLM(transformers.ViltConfig(**BASE))).eval()
    sd = {k: v.contiguous() for k, v in hf.state_dict().items()}
    decoder = torch.randn(99, 64)
    sd["mlm_score.decoder.weight"] = decoder
    sd["mlm_score.bias"] = sd["mlm_score.decoder.bias"].clone()
    sd["vilt.embeddings.text_embeddings.position_ids"] = torch.arange(16)[None]  # transformers 4's buffer
    out = convert_hf_vilt(sd, hf_vilt_task(sd, ["ViltForMaskedLM"]))
    assert torch.equal(out["mlm_score.decoder.weight"], decoder)
    assert torch.equal(out["mlm_score.bias"], sd["mlm_score.decoder.bias"])
    assert not any("position_ids" in k for k in out)
    sd["vilt.embeddings.text_embeddings.position_ids"] = torch.arange(16).flip(0)[None]
    with pytest.raises(CheckpointError, match="position_ids"):
        convert_hf_vilt(sd, "mlm")


def test_preprocessor_config_is_read(hf_case, tmp_path):
    _, hf, _ = hf_case
    hf.save_pretrained(tmp_path)
    transformers.ViltImageProcessor(size={"shortest_edge": 288}, image_mean=[0.4, 0.4, 0.4],
                                    image_std=[0.2, 0.25, 0.3]).save_pretrained(tmp_path)
    c = vitkit.from_pretrained(tmp_path).config
    assert c.shorter_edge == 288 and c.longer_edge == int(1333 / 800 * 288) and c.size_divisor == 32
    assert c.mean == (0.4, 0.4, 0.4) and c.std == (0.2, 0.25, 0.3) and c.interpolation == "bicubic"


def test_strict_errors(hf_case, tmp_path):
    _, hf, directory = hf_case
    sd = load_file(str(Path(directory) / "model.safetensors"))
    task = hf_vilt_task(sd, hf.config.architectures)
    with pytest.raises(CheckpointError, match=r"unexpected keys: .*extra\.weight"):
        convert_hf_vilt({**sd, "extra.weight": torch.zeros(1)}, task)
    dropped = next(k for k in sd if "encoder.layer.1.attention.attention.key.weight" in k)
    with pytest.raises(CheckpointError, match=r"missing keys: .*layer\.1\.attention\.attention\.key\.weight"):
        convert_hf_vilt({k: v for k, v in sd.items() if k != dropped}, task)
    # a damaged directory fails through from_pretrained with the path in the message
    (tmp_path / "config.json").write_text((Path(directory) / "config.json").read_text())
    save_file({k: v for k, v in sd.items() if k != dropped}, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointError, match=str(tmp_path)):
        vitkit.from_pretrained(tmp_path)


def test_token_classification_is_refused(tmp_path):
    hf = transformers.ViltForTokenClassification(transformers.ViltConfig(**BASE))
    hf.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="ViltForTokenClassification has no vitkit equivalent"):
        vitkit.from_pretrained(tmp_path)


def test_vitkit_convert_cli(hf_case, tmp_path):
    from vitkit.cli import main

    name, _, directory = hf_case
    assert main(["convert", str(directory), str(tmp_path / "converted")]) == 0
    model = vitkit.from_pretrained(tmp_path / "converted")
    n = 2 if name == "ViltForImagesAndTextClassification" else 1
    ids, am, px, pm = padded_batch(n)
    with torch.no_grad():
        a, b = vitkit.from_pretrained(directory)(ids, am, px, pm), model(ids, am, px, pm)
    assert torch.equal(a.pooled, b.pooled)
