"""benchmarks/bench.py at tiny sizes: the entry point runs, prints a row for every workload, and every ratio is
finite. This checks the script, not speed: there is no timing assertion."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("timm")
pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench.py"
WORKLOADS = {
    "vit_b16_fp32_b8", "vit_b16_fp32_b1", "vit_b16_bf16_b8", "vit_s16_train_fp32", "vit_s16_train_bf16",
    "vilt_vqa_fp32", "vilt_vqa_bf16", "vilt_mixed_batch", "vilt_retrieval", "vit_nano_train_fp32",
    "vit_nano_cls_train_fp32", "vilt_vqa_fp32_pooled",
}


def test_bench_runs_at_tiny_sizes_and_prints_every_row(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--tiny", "--reps", "1", "--scaling", "--json", str(out)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "matmul peak fp32" in proc.stdout and "matmul peak bf16" in proc.stdout
    table = proc.stdout[proc.stdout.rindex("% peak:"):]  # the final table
    data = json.loads(out.read_text())
    assert all(v > 0 for v in data["peaks"].values()) and set(data["peaks"]) == {"fp32", "bf16"}
    names = {r["name"] for r in data["rows"]}
    assert WORKLOADS <= names and any(n.startswith("scale_res") for n in names)  # every workload, the sweep
    for row in data["rows"]:
        assert row["name"] in table
        assert not row["skipped"], row  # --tiny runs the bf16 rows too, whatever the CPU
        assert row["ours"] > 0 and row["theirs"] > 0, row
        assert math.isfinite(row["ratio"]) and row["ratio"] > 0, row
        assert all(math.isfinite(v) and v > 0 for v in row["peaks"].values()), row
    retrieval = next(r for r in data["rows"] if r["name"] == "vilt_retrieval")
    assert "image encoded once: yes" in retrieval["note"]

