"""Training throughput, vitkit vs timm, side by side in one process (not a test).

Both models get the same sizes, the same random batch and the same plain loop (AdamW step on cross-entropy);
repetitions are interleaved so machine noise hits both alike, and the median is reported.

    python benchmarks/train_throughput.py                     # nano preset at 32 px and ViT-S/16 at 224
    python benchmarks/train_throughput.py --amp bf16 --reps 7
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
import torch.nn.functional as F

import vitkit

WORKLOADS = {
    # name: (vitkit registry name, overrides, timm kwargs, batch)
    "nano_patch4_32": ("vit_nano_patch4_32", {"num_classes": 10},
                       dict(img_size=32, patch_size=4, embed_dim=128, depth=6, num_heads=4, mlp_ratio=2.0,
                            num_classes=10), 64),
    "small_patch16_224": ("vit_small_patch16_224", {}, dict(img_size=224, patch_size=16, embed_dim=384, depth=12,
                                                            num_heads=6, num_classes=1000), 8),
}


def make_step(model: torch.nn.Module, amp: str):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    cast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if amp == "bf16" else contextlib.nullcontext

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with cast():
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def main() -> None:
    import timm

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    p.add_argument("--reps", type=int, default=5, help="interleaved repetitions (median reported)")
    p.add_argument("--steps", type=int, default=5, help="timed optimizer steps per repetition")
    p.add_argument("--amp", choices=["none", "bf16"], default="none")
    args = p.parse_args()
    print(f"torch {torch.__version__}, timm {timm.__version__}, {torch.get_num_threads()} threads, amp {args.amp}")
    print(f"{'workload':<20} {'batch':>5} {'vitkit img/s':>13} {'timm img/s':>11} {'ratio':>7}")
    for name in args.workloads:
        reg, overrides, timm_kwargs, batch = WORKLOADS[name]
        torch.manual_seed(0)
        ours = vitkit.create_model(reg, **overrides).train()
        ref = timm.models.vision_transformer.VisionTransformer(**timm_kwargs).train()
        ref.load_state_dict(ours.state_dict())  # same weights: the same numbers flow through both
        cfg = ours.config
        x = torch.randn(batch, 3, cfg.img_size, cfg.img_size)
        y = torch.randint(0, cfg.num_classes, (batch,))
        steps = {"vitkit": make_step(ours, args.amp), "timm": make_step(ref, args.amp)}
        for fn in steps.values():  # warm-up
            fn(x, y)
        times: dict[str, list[float]] = {k: [] for k in steps}
        for _ in range(args.reps):
            for k, fn in steps.items():
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    fn(x, y)
                times[k].append(time.perf_counter() - t0)
        rate = {k: batch * args.steps / statistics.median(v) for k, v in times.items()}
        ratio = rate["vitkit"] / rate["timm"]
        print(f"{name:<20} {batch:>5} {rate['vitkit']:>13.1f} {rate['timm']:>11.1f} {ratio:>6.2f}x")


if __name__ == "__main__":
    main()
