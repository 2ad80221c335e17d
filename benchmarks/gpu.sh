#!/usr/bin/env bash
# vitkit vs timm / Hugging Face transformers on one NVIDIA H100 or H200, in one short run (< 8 minutes).
#
# Prepared, NOT YET RUN: no GPU was available when it was written (see docs/benchmarks.md).
#
#   bash benchmarks/gpu.sh            # writes $OUT (default benchmarks/out-gpu) and prints the table
#
# 1. the card, torch and which SDPA kernels the two attention shapes get (flash for ViT's unmasked attention,
#    memory-efficient for ViLT's key-padding mask; the math kernel would mean a materialised attention matrix);
# 2. benchmarks/bench.py --device cuda: the matmul peaks (fp32 without TF32, and bf16, 8192^3) and every workload
#    side by side (GPU batch sizes: ViT-B/16 256, ViT-S/16 train 128, ViLT 64), bf16 rows included, plus the
#    opt-in torch.compile row. "% peak" of a bf16 row is its MFU against the card's measured bf16 matmul rate.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/out-gpu}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv 2>&1 | tee "$OUT/gpu.txt" || true

timeout 60 python - <<'EOF' 2>&1 | tee "$OUT/sdpa.txt"
import time
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
dev, dt = "cuda", torch.bfloat16
# ViT-B/16 at 224: 197 tokens, no mask; ViLT-B/32 VQA: 40 text + 1 + 216 patches, key-padding mask
for name, B, N, masked in (("vit_b16 b256", 256, 197, False), ("vilt_b32 b64", 64, 257, True)):
    q, k, v = (torch.randn(B, 12, N, 64, device=dev, dtype=dt) for _ in range(3))
    mask = None
    if masked:
        keep = torch.ones(B, N, dtype=torch.bool, device=dev)
        keep[:, 20:40] = False  # half the text is padding
        mask = keep[:, None, None, :]
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION,
                    SDPBackend.MATH):
        try:
            with sdpa_kernel([backend]):
                F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                for _ in range(10):
                    F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
                torch.cuda.synchronize()
            ms = (time.perf_counter() - t0) * 100
            tflops = 4 * B * 12 * N * N * 64 / (ms / 1e3) / 1e12
            print(f"{name:<14} {backend.name:<20} {ms:7.3f} ms  {tflops:6.1f} TFLOP/s")
        except Exception as e:  # a kernel that does not take this shape, mask or dtype
            print(f"{name:<14} {backend.name:<20} unavailable ({str(e).splitlines()[0][:80]})")
EOF

# The whole comparison; timeout keeps the run under the 8-minute budget even if compilation is slow.
timeout 420 python benchmarks/bench.py --device cuda --quick --bf16 on --compile --markdown \
    --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt"
