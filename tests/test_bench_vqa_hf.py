"""benchmarks/vqa_hf.py in --quick mode on a tiny generated scene set: both sides train the same number of steps,
report accuracies in [0, 1] and positive times, and the JSON says so. This checks the script, not the claim:
there is no timing or accuracy comparison."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "vqa_hf.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("bench_vqa_hf", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vqa_hf_quick_runs_both_sides_alike(tmp_path, capsys):
    bench = _load_script()
    out = tmp_path / "vqa_hf.json"
    data = tmp_path / "scenes"  # absent: the script generates it
    returned = bench.main(["--quick", "--data", str(data), "--num-train", "96", "--num-val", "24",
                           "--batch-size", "32", "--threads", "1", "--run-dir", str(tmp_path / "run"),
                           "--json", str(out)])
    printed = capsys.readouterr().out
    assert (data / "v2_OpenEnded_mscoco_train2014_questions.json").is_file()
    assert "vitkit time / HF time" in printed and "vitkit then hf" in printed

    result = json.loads(out.read_text())
    assert result["ratios"] == pytest.approx(json.loads(json.dumps(returned["ratios"])))
    assert result["config"]["quick"] and result["config"]["generated"] and result["config"]["epochs"] == 1
    sides = [result["vitkit"], result["hf"]]
    for side in sides:
        for key in ("val_vqa_accuracy", "val_vqa_yes_no", "val_vqa_number", "val_vqa_other"):
            assert 0.0 <= side[key] <= 1.0, (side["side"], key, side[key])
        assert side["wall_s"] > 0 and side["samples_per_s"] > 0 and side["params"] > 0
        assert 0 <= side["eval_s"] < side["wall_s"] and side["io_s"] >= 0
        assert side["steps"] == side["planned_steps"] > 0 and side["batch_size"] == result["config"]["batch_size"]
        assert side["rescore_matches"], side["rescored"]  # the string-based official scorer agrees
    cfg = result["config"]
    assert cfg["batch_questions"] == 32 and cfg["train_questions"] == 7 * cfg["train_items"] == 7 * 96
    assert cfg["batch_size"] == round(32 / 7)  # one-way fusion: whole images of 7 questions per step
    assert sides[0]["steps"] == sides[1]["steps"] == cfg["train_items"] // cfg["batch_size"]
    # the same sizes; vitkit's preset embeds each 8x8 patch from a 16x16 window (3 x 128 x (256 - 64) more
    # weights) plus a conv branch (ConvStem 3 -> 32 -> 64 -> 128 channels, 1x1 to 128)
    from vitkit.layers import ConvStem

    conv = sum(p.numel() for p in ConvStem(img_size=64, patch_size=8, in_chans=3, embed_dim=128).parameters())
    assert sides[0]["params"] - sides[1]["params"] == 3 * 128 * (16 * 16 - 8 * 8) + conv
    hf = result["hf"]["hf_config"]
    assert (hf["hidden_size"], hf["num_hidden_layers"], hf["num_attention_heads"], hf["intermediate_size"],
            hf["image_size"], hf["patch_size"], hf["max_position_embeddings"]) == (128, 4, 4, 512, 64, 8, 40)
    assert hf["num_labels"] == result["config"]["answers"]
    assert math.isfinite(result["ratios"]["time_vitkit_over_hf"]) and result["ratios"]["time_vitkit_over_hf"] > 0
    assert (tmp_path / "run" / "model").is_dir() and (tmp_path / "run" / "metrics.json").is_file()
