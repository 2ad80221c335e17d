"""Text retrieval for one image: cached image embeddings (`vitkit.rank_texts`) against full forwards.

Ranks N captions for one image three ways with the same random-init ViLT and reports wall time and the speed-up
of the cached path:

  per-pair  `vitkit.itm_score(model, image, caption)` once per caption: preprocess + full forward each time
  batched   `vitkit.itm_score(model, image, captions)`: image preprocessed once, but embedded again for every
            pair inside each full forward
  cached    `vitkit.rank_texts(model, image, captions)`: image preprocessed and embedded once, then only the
            text look-up + joint transformer per pair

    python benchmarks/vilt_retrieval.py                         # 1 image x 200 captions, small ViLT, CPU
    python benchmarks/vilt_retrieval.py --depth 12 --embed-dim 768 --num-heads 12 --device cuda  # ViLT-B/32

The joint transformer runs over [text | image] tokens, so it dominates every path; what caching saves is the
image preprocessing (PIL resize + normalise), the patch embedding and the position-grid resampling per pair.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image

import vitkit

WORDS = "a the dog cat man woman red blue small large sitting running on in near park street table grass".split()


def captions(n: int, rng: np.random.Generator) -> list[str]:
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(4, 14)))) for _ in range(n)]


def timed(fn, device: torch.device, repeats: int) -> tuple[float, object]:
    """Best of `repeats` wall-clock runs (after one warm-up), synchronising CUDA around each."""
    result = fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num-texts", "-n", type=int, default=200, help="captions to rank (default: %(default)s)")
    p.add_argument("--depth", type=int, default=4, help="encoder blocks (default: %(default)s; ViLT-B/32: 12)")
    p.add_argument("--embed-dim", type=int, default=256, help="width (default: %(default)s; ViLT-B/32: 768)")
    p.add_argument("--num-heads", type=int, default=4, help="attention heads (default: %(default)s)")
    p.add_argument("--image-size", default="480x640", help="HxW of the input image (default: %(default)s, "
                   "resized by ViLT's rule to 384x512 = 192 patches)")
    p.add_argument("--batch-size", type=int, default=50, help="pairs per forward (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=2, help="timed runs per path, best kept (default: %(default)s)")
    p.add_argument("--skip-per-pair", action="store_true", help="skip the slow one-forward-per-caption path")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... (default: %(default)s)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    device = torch.device(args.device)
    model = vitkit.create_model("vilt_b32", depth=args.depth, embed_dim=args.embed_dim,
                                num_heads=args.num_heads).to(device).eval()
    h, w = (int(v) for v in args.image_size.lower().split("x"))
    image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    texts = captions(args.num_texts, rng)
    print(f"ViLT depth {args.depth} dim {args.embed_dim} ({model.num_params / 1e6:.1f}M params) on {device}, "
          f"{torch.get_num_threads()} threads; 1 image {h}x{w} x {len(texts)} captions, batch {args.batch_size}")

    bs = args.batch_size
    t_cached, ranked = timed(lambda: vitkit.rank_texts(model, image, texts, batch_size=bs), device, args.repeats)
    t_batched, batched = timed(lambda: vitkit.itm_score(model, image, texts, batch_size=bs), device, args.repeats)
    cached = torch.empty(len(texts))
    for r in ranked:
        cached[r["index"]] = r["score"]
    diff = (cached - torch.tensor(batched)).abs().max().item()
    rows = [("cached (rank_texts)", t_cached), ("batched full forwards", t_batched)]
    if not args.skip_per_pair:
        t_pair, _ = timed(lambda: [vitkit.itm_score(model, image, t) for t in texts], device, 1)
        rows.append(("per-pair full forwards", t_pair))
    for name, t in rows:
        print(f"  {name:<24} {t:8.3f} s  {1e3 * t / len(texts):7.2f} ms/caption  "
              f"cached is {t / t_cached:5.2f}x faster")
    print(f"  max |score difference| cached vs batched: {diff:.2e}")


if __name__ == "__main__":
    main()
