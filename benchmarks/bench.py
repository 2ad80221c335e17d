"""vitkit against timm and Hugging Face transformers, side by side in one process: the one benchmark entry point.

It first measures the device's matmul peak (fp32 and bf16), then runs each workload for vitkit and its
competitor with the same weights and the same inputs, repetitions interleaved (A B, B A, A B, ...) so machine
noise hits both alike, and prints one table: throughput (median), ratio vitkit / competitor, the issue's goal,
and % of the measured matmul peak, FLOPs counted analytically from each model's shapes (matmuls only: 2 per
multiply-add; training = 3x the forward). Every model is used the way a user would: eval mode, `model.to(dtype)`
for bf16 inference, `torch.autocast` for bf16 training, no special flags.

    python benchmarks/bench.py                       # everything, CPU (20-40 minutes on the 2 shared cores)
    python benchmarks/bench.py --quick               # fewer repetitions, smaller retrieval set
    python benchmarks/bench.py --only vit_b16_fp32_b8 --only vilt   # workloads by name or prefix
    python benchmarks/bench.py --scaling             # + ViT-B/16 time vs resolution (224/384/512) and batch
    python benchmarks/bench.py --compile             # + opt-in torch.compile rows, reported separately
    python benchmarks/bench.py --device cuda         # GPU sizes (see benchmarks/gpu.sh)
    python benchmarks/bench.py --tiny                # tiny models: checks the script itself (the smoke test)

bf16 on a CPU without native bf16 matmul (no AVX512-BF16 / AMX) runs at a tiny fraction of fp32; with
`--bf16 auto` (the default) the bf16 rows are then reported as skipped, with the measured bf16 rate as the reason
(`--bf16 on` runs them anyway, at the cost of minutes per row).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fnmatch
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import vitkit
from vitkit.inference.vilt import processor_for

# ---- timing ----------------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    fns: dict[str, Callable[[], Any]], reps: int, device: torch.device, warmup: int = 1,
    raw: dict[str, list[float]] | None = None,
) -> dict[str, float]:
    """Median seconds per call of each fn; repetitions interleaved, the order reversed every other round. The
    per-round times are left in `raw` when given."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    _sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(reps):
        for k in names if r % 2 == 0 else names[::-1]:
            _sync(device)
            t0 = time.perf_counter()
            fns[k]()
            _sync(device)
            times[k].append(time.perf_counter() - t0)
    if raw is not None:
        raw.update(times)
    return {k: statistics.median(v) for k, v in times.items()}


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, reps: int) -> tuple[float, int, Callable[[], Any]]:
    """Median FLOP/s of an n^3 matmul in `dtype` -> (FLOP/s, n used). Where `dtype` is slow on this device (bf16
    on a CPU without bf16 instructions runs ~1000x below fp32) n shrinks so one product takes about a second."""
    probe = min(n, 512)
    a = torch.randn(probe, probe, device=device).to(dtype)
    a @ a
    _sync(device)
    t0 = time.perf_counter()
    a @ a
    _sync(device)
    estimate = (time.perf_counter() - t0) * (n / probe) ** 3  # seconds for one n^3 product
    if estimate > 3.0:  # only a dtype without hardware support gets here (fp32 2048^3 takes ~0.1 s)
        n = max(256, int(n / estimate ** (1 / 3)) // 64 * 64)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    t = interleaved({"mm": lambda: a @ b}, reps, device)["mm"]
    return 2 * n**3 / t, n, lambda: a @ b


# ---- analytic FLOPs (matmuls only, 2 FLOPs per multiply-add) ----------------------------------------------------


def encoder_flops(tokens: int, dim: int, depth: int, mlp_hidden: int) -> float:
    """One sample through `depth` pre-norm blocks over `tokens` tokens: qkv + proj + MLP, and QK^T + PV."""
    linear = 2 * tokens * (4 * dim * dim + 2 * dim * mlp_hidden)
    attention = 4 * tokens * tokens * dim
    return depth * (linear + attention)


def vit_flops(cfg: Any, h: int, w: int) -> float:
    """One image through a ViT (patch embedding, encoder, head)."""
    p = cfg.patch_size
    patches = (h // p) * (w // p)
    flops = 2 * patches * cfg.in_chans * p * p * cfg.embed_dim
    flops += encoder_flops(patches + (1 if cfg.class_token else 0), cfg.embed_dim, cfg.depth, cfg.mlp_hidden)
    return flops + 2 * cfg.embed_dim * cfg.num_classes


def vilt_flops(cfg: Any, text_tokens: int, patches: int, head: str = "vqa", cls_only_last: bool = False) -> float:
    """One image-text pair through ViLT: patch embedding, the encoder over text + [CLS] + patches, pooler, head.
    cls_only_last: the last block computes keys and values of every token but the rest for the [CLS] row only."""
    D, p, H = cfg.embed_dim, cfg.patch_size, int(cfg.embed_dim * cfg.mlp_ratio)
    n = text_tokens + 1 + patches
    flops = 2 * patches * cfg.in_chans * p * p * D
    if cls_only_last:
        flops += encoder_flops(n, D, cfg.depth - 1, H) + 2 * n * 2 * D * D + encoder_flops(1, D, 1, H) - 2 * 2 * D * D
        flops += 4 * n * D - 4 * D  # one query against n keys (encoder_flops(1, ...) counted 1 key)
    else:
        flops += encoder_flops(n, D, cfg.depth, H)
    flops += 2 * D * D  # pooler
    if head == "vqa":
        flops += 2 * (D * 2 * D + 2 * D * cfg.num_answers)
    else:
        flops += 2 * D * 2
    return flops


# ---- results ---------------------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    what: str
    batch: int | str
    unit: str
    ours: float = math.nan  # throughput, unit/s
    theirs: float = math.nan
    competitor: str = ""
    goal: float | None = None  # ratio goal
    flops_ours: float = 0.0  # FLOPs per unit
    flops_theirs: float = 0.0
    peak_ours: str = "fp32"  # which measured peak the % refers to
    peak_theirs: str = "fp32"
    goal_peak: float | None = None  # fraction of peak the issue asks for (vitkit)
    note: str = ""
    skipped: str = ""
    section: str = "main"
    peaks: dict[str, float] = field(default_factory=dict)  # FLOP/s of the matmul peak timed alongside

    @property
    def ratio(self) -> float:
        return self.ours / self.theirs if self.theirs else math.nan


class Ctx:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device(args.device)
        self.tiny = args.tiny
        self.quick = args.quick or args.tiny
        self.cuda = self.device.type == "cuda"
        self.reps = args.reps or (3 if self.quick else 5)
        self.peaks: dict[str, float] = {}  # measured at start
        self.local_peaks: dict[str, float] = {}  # measured alongside the last workload
        self.mm: dict[str, Callable[[], Any]] = {}
        self.mm_n: dict[str, int] = {}
        self.bf16_ok = True
        self.bf16_reason = ""

    def timed(self, fns: dict[str, Callable[[], Any]], kinds: tuple[str, ...] = ("fp32",), reps: int = 0,
              warmup: int = 1) -> dict[str, float]:
        """`interleaved` with the matmul peak of each dtype in `kinds` timed in the same rounds: the machine's
        rate while this workload ran (on a shared machine it moves) is left in `self.local_peaks`."""
        mms = {f"peak_{k}": self.mm[k] for k in kinds if k in self.mm}
        self.raw: dict[str, list[float]] = {}
        warmup = 0 if self.tiny else warmup  # tiny checks the script, not speed
        t = interleaved({**fns, **mms}, reps or self.reps, self.device, warmup, self.raw)
        self.local_peaks = {k: 2 * self.mm_n[k] ** 3 / t.pop(f"peak_{k}") for k in kinds if k in self.mm}
        return t

    def spread(self, ours: str, theirs: str, scale: float = 1.0) -> str:
        """Range of the per-round speed ratios (theirs / ours time x scale, the two timed back to back): the
        noise. `scale`: work of ours / work of theirs, when the two do different amounts."""
        r = [scale * b / a for a, b in zip(self.raw[ours], self.raw[theirs])]
        return f"rounds {min(r):.2f}-{max(r):.2f}x"

    def batch(self, cpu: int, cuda: int, tiny: int | None = None) -> int:
        if self.args.batch:
            return self.args.batch
        if self.tiny:
            return tiny if tiny is not None else min(cpu, 2)
        return cuda if self.cuda else cpu

    def peak(self, kind: str, row: Row | None = None) -> float:
        if row is not None and kind in row.peaks:
            return row.peaks[kind]
        return self.peaks.get(kind, math.nan)


# ---- model builders (same weights on both sides) ---------------------------------------------------------------


def vit_pair(ctx: Ctx, name: str, img_size: int = 224) -> tuple[torch.nn.Module, torch.nn.Module, Any]:
    """(vitkit ViT, timm ViT) with identical random weights."""
    import timm

    torch.manual_seed(0)
    if ctx.tiny:
        kw = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, num_classes=10)
        ours = vitkit.create_model("vit_base_patch16_224", **kw)
        ref = timm.models.vision_transformer.VisionTransformer(**kw)
    else:
        ours = vitkit.create_model(name, img_size=img_size)
        ref = timm.create_model(name, pretrained=False, weight_init="skip", img_size=img_size)
    ref.load_state_dict(ours.state_dict())
    return ours.to(ctx.device).eval(), ref.to(ctx.device).eval(), ours.config


def vilt_pair(ctx: Ctx) -> tuple[torch.nn.Module, torch.nn.Module, Any]:
    """(vitkit ViLT, transformers ViltForQuestionAnswering) with identical random weights (ViLT-B/32 VQA)."""
    import transformers

    from vitkit.checkpoint.converters.hf_vilt import convert_hf_vilt, hf_vilt_config
    from vitkit.models import ViLT

    torch.manual_seed(0)
    kw: dict[str, Any] = dict(num_labels=3129)
    if ctx.tiny:
        kw = dict(num_labels=10, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256,
                  image_size=64, patch_size=32)
    hf_cfg = transformers.ViltConfig(**kw)
    hf = transformers.ViltForQuestionAnswering(hf_cfg).eval()
    sd = convert_hf_vilt(hf.state_dict(), "vqa")
    small_images = {"size": {"shortest_edge": 64}} if ctx.tiny else None  # tiny: 64-pixel shorter side
    ours = ViLT(hf_vilt_config(hf_cfg.to_dict(), sd, "vqa", small_images)).eval()
    ours.load_state_dict(sd)
    return ours.to(ctx.device), hf.to(ctx.device), ours.config


def _inference(model: torch.nn.Module, *args: Any, **kwargs: Any) -> Callable[[], Any]:
    def run() -> Any:
        with torch.inference_mode():
            return model(*args, **kwargs)

    return run


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


# ---- workloads -------------------------------------------------------------------------------------------------


def vit_inference(ctx: Ctx, name: str, batch: int, bf16: bool) -> list[Row]:
    dtype = torch.bfloat16 if bf16 else torch.float32
    ours, ref, cfg = vit_pair(ctx, "vit_base_patch16_224")
    size = cfg.img_size if isinstance(cfg.img_size, int) else cfg.img_size[0]
    x32 = torch.randn(batch, 3, size, size, device=ctx.device)
    with torch.inference_mode():
        diff = _max_diff(ours(x32), ref(x32))  # fp32 first: the same model on both sides
    ours, ref, x = ours.to(dtype), ref.to(dtype), x32.to(dtype)
    kind = "bf16" if bf16 else "fp32"
    t = ctx.timed({"ours": _inference(ours, x), "theirs": _inference(ref, x)}, (kind,))
    flops = vit_flops(cfg, size, size)
    return [Row(name, f"ViT-B/16 {size}px inference {kind}", batch, "img", batch / t["ours"], batch / t["theirs"],
                f"timm {kind}", 1.3 if bf16 else 1.0, flops, flops, kind, kind,
                0.75 if bf16 else (0.9 if batch >= 8 else None), peaks=ctx.local_peaks,
                note=f"{ctx.spread('ours', 'theirs')}; fp32 max abs diff {diff:.1e}")]


def _nano_pair(ctx: Ctx, pool: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The classification default `vit_nano_patch4_32` as the digits run trains it (1 grey channel; mean-pooled,
    sin-cos positions), or its [CLS]-pooled variant (learned positions), and timm's VisionTransformer of the same
    size and layout with the same weights (the fixed sin-cos table copied into timm's position parameter)."""
    import timm

    torch.manual_seed(0)
    kw: dict[str, Any] = dict(in_chans=1, num_classes=10)
    if pool == "token":
        kw.update(class_token=True, global_pool="token", pos_embed="learn")
    if ctx.tiny:
        kw.update(depth=2)
    ours = vitkit.create_model("vit_nano_patch4_32", **kw)
    c = ours.config
    ref = timm.models.vision_transformer.VisionTransformer(
        img_size=c.img_size, patch_size=c.patch_size, in_chans=1, num_classes=10, embed_dim=c.embed_dim,
        depth=c.depth, num_heads=c.num_heads, mlp_ratio=c.mlp_ratio, class_token=c.class_token,
        global_pool=c.global_pool)
    state = ours.state_dict()
    state.setdefault("pos_embed", ours.pos_embed.detach().clone())
    ref.load_state_dict(state)
    return ours, ref


def vit_training(ctx: Ctx, name: str, batch: int, amp: bool, nano: str | None = None) -> list[Row]:
    import timm

    torch.manual_seed(0)
    if nano is not None:
        ours, ref = _nano_pair(ctx, nano)
    elif ctx.tiny:
        kw = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, num_classes=10)
        ours = vitkit.create_model("vit_small_patch16_224", **kw)
        ref = timm.models.vision_transformer.VisionTransformer(**kw)
        ref.load_state_dict(ours.state_dict())
    else:
        ours = vitkit.create_model("vit_small_patch16_224")
        ref = timm.create_model("vit_small_patch16_224", pretrained=False, weight_init="skip")
        ref.load_state_dict(ours.state_dict())
    cfg = ours.config
    size = cfg.img_size if isinstance(cfg.img_size, int) else cfg.img_size[0]
    x = torch.randn(batch, cfg.in_chans, size, size, device=ctx.device)
    y = torch.randint(0, cfg.num_classes, (batch,), device=ctx.device)
    ours.eval(), ref.eval()
    with torch.no_grad():
        diff = _max_diff(ours(x), ref(x))

    def make_step(model: torch.nn.Module) -> Callable[[], None]:
        model.to(ctx.device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)  # the same optimizer, default settings, both sides
        cast = (lambda: torch.autocast(ctx.device.type, dtype=torch.bfloat16)) if amp else contextlib.nullcontext

        def step() -> None:
            with cast():
                loss = F.cross_entropy(model(x).float(), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    kind = "bf16" if amp else "fp32"
    t = ctx.timed({"ours": make_step(ours), "theirs": make_step(ref)}, (kind,))
    flops = 3 * vit_flops(cfg, size, size)
    if nano is None:
        what = f"ViT-S/16 {size}px train step (AdamW) {'bf16 autocast' if amp else 'fp32'}"
    else:
        what = (f"vit_nano_patch4_32 {size}px grey train step (AdamW) fp32, "
                + ("mean-pooled (the default)" if nano == "avg" else "[CLS]-pooled"))
    return [Row(name, what, batch, "img", batch / t["ours"], batch / t["theirs"], f"timm {kind}", 1.0,
                flops, flops, kind, kind, peaks=ctx.local_peaks,
                note=f"{ctx.spread('ours', 'theirs')}; fp32 max abs diff {diff:.1e}")]


def _vilt_inputs(ctx: Ctx, cfg: Any, batch: int) -> tuple[torch.Tensor, ...]:
    """ViLT-B/32 VQA inputs: 384x576 images (12x18 patches), 40 text tokens of which the last 20 are padding."""
    g = torch.Generator().manual_seed(0)
    L, real = (cfg.max_text_len, cfg.max_text_len // 2)
    h, w = (64, 96) if ctx.tiny else (384, 576)
    ids = torch.randint(1000, 2000, (batch, L), generator=g)
    am = torch.zeros(batch, L, dtype=torch.long)
    am[:, :real] = 1
    ids = ids * am
    px = torch.randn(batch, 3, h, w, generator=g)
    pm = torch.ones(batch, h, w, dtype=torch.long)
    return tuple(t.to(ctx.device) for t in (ids, am, px, pm))


def vilt_vqa(ctx: Ctx, name: str, batch: int, bf16: bool) -> list[Row]:
    ours, hf, cfg = vilt_pair(ctx)
    ids, am, px, pm = _vilt_inputs(ctx, cfg, batch)
    with torch.inference_mode():
        diff = _max_diff(ours(ids, am, px, pm).logits,
                         hf(input_ids=ids, attention_mask=am, pixel_values=px, pixel_mask=pm).logits)
    if bf16:
        ours = ours.to(torch.bfloat16)
    opx = px.to(torch.bfloat16) if bf16 else px
    fns = {"ours": _inference(ours, ids, am, opx, pm),
           "theirs": _inference(hf, input_ids=ids, attention_mask=am, pixel_values=px, pixel_mask=pm)}
    if not bf16:  # the pooled output alone (what vitkit.vqa runs): model()'s path without the output object
        from vitkit.models.vilt.model import HEAD_ATTRS

        head = getattr(ours, HEAD_ATTRS["vqa"])
        with torch.inference_mode():
            pooled_diff = _max_diff(head(ours.pooled_output(ids, am, px, pm)), ours(ids, am, px, pm).logits)
        fns["pooled"] = _inference(lambda *a: head(ours.pooled_output(*a)), ids, am, px, pm)
    t = ctx.timed(fns, ("fp32", "bf16") if bf16 else ("fp32",))
    patches = (px.shape[-2] // cfg.patch_size) * (px.shape[-1] // cfg.patch_size)
    flops = vilt_flops(cfg, ids.shape[1], patches)  # HF: all 40 text positions, every last-block row
    # vitkit's inference: the real tokens only, the last block's [CLS] row (what it computes, for its % of peak)
    done = vilt_flops(cfg, int(am[0].sum()), patches, cls_only_last=True)
    skipped = f"vitkit skips {1 - done / flops:.0%} of HF's FLOPs (padding, last-block rows)"
    kind = "bf16" if bf16 else "fp32"
    what = f"ViLT-B/32 VQA {px.shape[-2]}x{px.shape[-1]} + {ids.shape[1]} tokens (half padding) {kind}"
    rows = [Row(name, what, batch, "pair", batch / t["ours"], batch / t["theirs"], "HF transformers fp32",
                4.0 if bf16 else 1.2, done, flops, kind, "fp32", 0.75 if bf16 else None,
                note=f"{ctx.spread('ours', 'theirs')}; fp32 max abs diff {diff:.1e}; {skipped}", peaks=ctx.local_peaks)]
    if "pooled" in t:
        rows.append(Row(name + "_pooled", "  same, ViLT.pooled_output + head", batch,
                        "pair", batch / t["pooled"], batch / t["theirs"], "HF transformers fp32", None, done, flops,
                        kind, "fp32", peaks=ctx.local_peaks,
                        note=f"{ctx.spread('pooled', 'theirs')}; max abs diff vs model() {pooled_diff:.1e}"))
    return rows


WORDS = ("what is the color of small large dog cat man woman red blue sitting running on in near park street "
         "table grass how many are there left right picture wearing holding").split()


def _mixed_set(ctx: Ctx, n: int, uniform: bool) -> tuple[list[Any], list[str]]:
    """n (image, question) pairs: mixed image sizes and question lengths, or all alike (the unpadded reference)."""
    from PIL import Image

    rng = np.random.default_rng(1)
    sizes = [(480, 640), (640, 480), (384, 384), (500, 333), (600, 800), (300, 900), (768, 1024), (360, 480)]
    words = [3, 14, 6, 22, 9, 4, 17, 11]
    images, questions = [], []
    for i in range(n):
        h, w = (480, 720) if uniform else sizes[i % len(sizes)]
        k = 11 if uniform else words[i % len(words)]
        images.append(Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)))
        questions.append(" ".join(rng.choice(WORDS, size=k)) + "?")
    return images, questions


def _real_tokens(model: Any, images: list[Any], questions: list[str]) -> int:
    from vitkit.processing.vilt import resize_output_size

    proc = processor_for(model)
    lengths = proc(text=questions)["attention_mask"].sum(1)
    p = model.config.patch_size
    total = 0
    for im, n_text in zip(images, lengths.tolist()):
        h, w = resize_output_size(im.height, im.width, proc.config)
        total += int(n_text) + 1 + (h // p) * (w // p)
    return total


def vilt_mixed(ctx: Ctx, name: str, batch: int) -> list[Row]:
    """A batch of mixed image sizes and question lengths vs an unpadded batch of alike pairs, per real token, both
    through `vitkit.vqa` (the user's way; it packs each batch's real tokens), and the raw padded forward for
    reference."""
    ours, _, cfg = vilt_pair(ctx)
    n = 2 * batch
    mixed = _mixed_set(ctx, n, uniform=False)
    alike = _mixed_set(ctx, n, uniform=True)
    tok_mixed, tok_alike = _real_tokens(ours, *mixed), _real_tokens(ours, *alike)
    proc = processor_for(ours)
    enc = {k: v.to(ctx.device) for k, v in proc(images=mixed[0][:batch], text=mixed[1][:batch]).items()}
    enc_alike = {k: v.to(ctx.device) for k, v in proc(images=alike[0][:batch], text=alike[1][:batch]).items()}
    tok_padded_real = _real_tokens(ours, mixed[0][:batch], mixed[1][:batch])
    tok_alike_real = _real_tokens(ours, alike[0][:batch], alike[1][:batch])
    fns = {
        "mixed": lambda: vitkit.vqa(ours, mixed[0], mixed[1], batch_size=batch),
        "alike": lambda: vitkit.vqa(ours, alike[0], alike[1], batch_size=batch),
        "padded": _inference(ours, **{k: enc[k] for k in ("input_ids", "attention_mask", "pixel_values",
                                                           "pixel_mask")}),
        "unpadded": _inference(ours, **{k: enc_alike[k] for k in ("input_ids", "attention_mask", "pixel_values",
                                                                   "pixel_mask")}),
    }
    t = ctx.timed(fns)
    p = cfg.patch_size
    padded = batch * (enc["attention_mask"].shape[1] + 1 + (enc["pixel_values"].shape[-2] // p)
                      * (enc["pixel_values"].shape[-1] // p))
    waste = f"; the padded batch computes {padded / tok_padded_real:.2f}x its real tokens"
    # FLOPs per real token: ~ one token through the encoder (the attention term is small at these lengths)
    per_token = encoder_flops(1, cfg.embed_dim, cfg.depth, int(cfg.embed_dim * cfg.mlp_ratio))
    return [
        Row(name, f"ViLT mixed sizes/lengths via vitkit.vqa ({n} pairs, batch {batch})", batch, "real token",
            tok_mixed / t["mixed"], tok_alike / t["alike"], "alike pairs, unpadded", 1.0, per_token, per_token,
            note=f"real tokens packed, no padding; {ctx.spread('mixed', 'alike', tok_mixed / tok_alike)}",
            peaks=ctx.local_peaks),
        Row(name + "_raw_forward", "  same, one padded batch through model() (no bucketing)", batch, "real token",
            tok_padded_real / t["padded"], tok_alike_real / t["unpadded"], "alike pairs, unpadded", None,
            per_token, per_token, peaks=ctx.local_peaks,
            note=f"{ctx.spread('padded', 'unpadded', tok_padded_real / tok_alike_real)}" + waste),
    ]


def vilt_retrieval(ctx: Ctx, name: str, batch: int) -> list[Row]:
    """1 image x N captions: `vitkit.rank_texts` (image embedded once, pairs batched) vs the naive loop of one
    `vitkit.itm_score(model, image, caption)` per caption. Per-caption rates; the naive loop runs on a subset."""
    from PIL import Image

    torch.manual_seed(0)
    kw: dict[str, Any] = dict(extra_heads=())
    if ctx.tiny:
        kw.update(depth=2, embed_dim=64, num_heads=2, shorter_edge=64, longer_edge=106)
    model = vitkit.create_model("vilt_b32", **kw).to(ctx.device).eval()
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    n_all = ctx.args.retrieval_captions or (8 if ctx.tiny else 64 if ctx.quick else 128)
    n_naive = 2 if ctx.tiny else 6 if ctx.quick else 10
    captions = [" ".join(rng.choice(WORDS, size=int(rng.integers(4, 14)))) for _ in range(n_all)]
    calls = {"embed_image": 0, "runs": 0}
    embed = model.embed_image

    def counting(*a: Any, **k: Any) -> Any:
        calls["embed_image"] += 1
        return embed(*a, **k)

    def cached() -> None:
        model.embed_image = counting  # instance attribute shadows the method: counts image encodings
        calls["runs"] += 1
        try:
            vitkit.rank_texts(model, image, captions, batch_size=batch)
        finally:
            del model.embed_image

    t = ctx.timed({"cached": cached, "naive": lambda: [vitkit.itm_score(model, image, c) for c in captions[:n_naive]]})
    once = calls["embed_image"] == calls["runs"]  # one image encoding per rank_texts call
    cached_scores = vitkit.retrieval_scores(model, image, captions[:n_naive])[0]
    naive_scores = torch.tensor([vitkit.itm_score(model, image, c) for c in captions[:n_naive]])
    diff = (cached_scores - naive_scores).abs().max().item()
    proc = processor_for(model)
    text_len = float(proc(text=captions)["attention_mask"].sum(1).float().mean())
    flops = vilt_flops(model.config, round(text_len), 12 * 16, head="itm")
    return [Row(name, f"ViLT-B/32 retrieval: 1 image x {n_all} captions (rank_texts)", batch, "caption",
                n_all / t["cached"], n_naive / t["naive"], f"per-pair itm_score loop ({n_naive})", 5.0, flops, flops,
                note=f"image encoded once: {'yes' if once else 'NO'}; max abs score diff vs naive {diff:.1e}; "
                     f"{n_all} vs {n_naive} captions timed",
                peaks=ctx.local_peaks)]


def vit_scaling(ctx: Ctx) -> list[Row]:
    """ViT-B/16 fp32 inference, vitkit vs timm: time vs resolution (batch 1) and vs batch size (224 px)."""
    rows = []
    sizes = [32] if ctx.tiny else [224, 384, 512]
    for size in sizes:
        ours, ref, cfg = vit_pair(ctx, "vit_base_patch16_224", img_size=size)
        x = torch.randn(1, 3, size, size, device=ctx.device)
        t = ctx.timed({"ours": _inference(ours, x), "theirs": _inference(ref, x)}, reps=max(3, ctx.reps - 2))
        f = vit_flops(cfg, size, size)
        rows.append(Row(f"scale_res{size}", f"ViT-B/16 fp32 {size}px ({(size // cfg.patch_size) ** 2 + 1} tokens)",
                        1, "img", 1 / t["ours"], 1 / t["theirs"], "timm fp32", None, f, f, section="scaling",
                        note=f"{1e3 * t['ours']:.0f} ms / image; {ctx.spread('ours', 'theirs')}",
                        peaks=ctx.local_peaks))
    ours, ref, cfg = vit_pair(ctx, "vit_base_patch16_224")
    size = cfg.img_size if isinstance(cfg.img_size, int) else cfg.img_size[0]
    for b in [1, 2] if ctx.tiny else [1, 2, 4, 8, 16]:
        x = torch.randn(b, 3, size, size, device=ctx.device)
        t = ctx.timed({"ours": _inference(ours, x), "theirs": _inference(ref, x)}, reps=max(3, ctx.reps - 2))
        f = vit_flops(cfg, size, size)
        rows.append(Row(f"scale_batch{b}", f"ViT-B/16 fp32 {size}px batch {b}", b, "img", b / t["ours"],
                        b / t["theirs"], "timm fp32", None, f, f, section="scaling",
                        note=f"{1e3 * t['ours']:.0f} ms / batch; {ctx.spread('ours', 'theirs')}",
                        peaks=ctx.local_peaks))
    return rows


def compiled(ctx: Ctx) -> list[Row]:
    """Opt-in torch.compile (default mode) of vitkit's ViT-B/16 against eager timm and compiled timm."""
    rows = []
    bf16 = ctx.cuda
    dtype = torch.bfloat16 if bf16 else torch.float32
    kind = "bf16" if bf16 else "fp32"
    batch = ctx.batch(8, 256, 2)
    ours, ref, cfg = vit_pair(ctx, "vit_base_patch16_224")
    ours, ref = ours.to(dtype), ref.to(dtype)
    size = cfg.img_size if isinstance(cfg.img_size, int) else cfg.img_size[0]
    x = torch.randn(batch, 3, size, size, device=ctx.device, dtype=dtype)
    c_ours, c_ref = torch.compile(ours), torch.compile(ref)
    f = vit_flops(cfg, size, size)
    t = ctx.timed({"c_ours": _inference(c_ours, x), "c_ref": _inference(c_ref, x), "ref": _inference(ref, x)},
                  (kind,), warmup=2)
    rows.append(Row("compile_vit_b16", f"ViT-B/16 inference {kind}, torch.compile (opt-in)", batch, "img",
                    batch / t["c_ours"], batch / t["ref"], f"timm {kind} eager", None, f, f, kind, kind,
                    section="compile", note=f"vs timm compiled: {t['c_ref'] / t['c_ours']:.2f}x",
                    peaks=ctx.local_peaks))
    del c_ours, c_ref, ours, ref
    # ViLT: compiled vitkit (bf16 on GPU) against HF transformers eager fp32, the VQA workload's inputs
    vilt, hf, vcfg = vilt_pair(ctx)
    vbatch = ctx.batch(4, 64)
    ids, am, px, pm = _vilt_inputs(ctx, vcfg, vbatch)
    c_vilt = torch.compile(vilt.to(dtype))
    t = ctx.timed({"c_ours": _inference(c_vilt, ids, am, px.to(dtype), pm),
                   "hf": _inference(hf, input_ids=ids, attention_mask=am, pixel_values=px, pixel_mask=pm)},
                  tuple(dict.fromkeys(("fp32", kind))), warmup=2)
    patches = (px.shape[-2] // vcfg.patch_size) * (px.shape[-1] // vcfg.patch_size)
    f = vilt_flops(vcfg, ids.shape[1], patches)
    rows.append(Row("compile_vilt_vqa", f"ViLT-B/32 VQA {kind}, torch.compile (opt-in)", vbatch, "pair",
                    vbatch / t["c_ours"], vbatch / t["hf"], "HF transformers fp32 eager", None, f, f, kind, "fp32",
                    section="compile", note=ctx.spread("c_ours", "hf"), peaks=ctx.local_peaks))
    return rows


SKIPPED_WHAT = {
    "vit_b16_bf16_b8": "ViT-B/16 224px inference bf16 vs timm bf16",
    "vit_s16_train_bf16": "ViT-S/16 224px train step, bf16 autocast, vs timm",
    "vilt_vqa_bf16": "ViLT-B/32 VQA bf16 vs HF transformers fp32",
}


# name -> (runner, bf16 row?)
def workloads(ctx: Ctx) -> dict[str, tuple[Callable[[], list[Row]], bool]]:
    return {
        "vit_b16_fp32_b8": (lambda: vit_inference(ctx, "vit_b16_fp32_b8", ctx.batch(8, 256), False), False),
        "vit_b16_fp32_b1": (lambda: vit_inference(ctx, "vit_b16_fp32_b1", 1, False), False),
        "vit_b16_bf16_b8": (lambda: vit_inference(ctx, "vit_b16_bf16_b8", ctx.batch(8, 256), True), True),
        "vit_s16_train_fp32": (lambda: vit_training(ctx, "vit_s16_train_fp32", ctx.batch(8, 128), False), False),
        "vit_s16_train_bf16": (lambda: vit_training(ctx, "vit_s16_train_bf16", ctx.batch(8, 128), True), True),
        "vit_nano_train_fp32": (lambda: vit_training(ctx, "vit_nano_train_fp32", 64, False, nano="avg"), False),
        "vit_nano_cls_train_fp32": (lambda: vit_training(ctx, "vit_nano_cls_train_fp32", 64, False, nano="token"),
                                    False),
        "vilt_vqa_fp32": (lambda: vilt_vqa(ctx, "vilt_vqa_fp32", ctx.batch(4, 64), False), False),
        "vilt_vqa_bf16": (lambda: vilt_vqa(ctx, "vilt_vqa_bf16", ctx.batch(4, 64), True), True),
        "vilt_mixed_batch": (lambda: vilt_mixed(ctx, "vilt_mixed_batch", ctx.batch(4, 32)), False),
        "vilt_retrieval": (lambda: vilt_retrieval(ctx, "vilt_retrieval", ctx.batch(64, 256, 8)), False),
    }


# ---- table -----------------------------------------------------------------------------------------------------


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return "-"
    return f"{v:.3g}" if v < 100 else f"{v:,.0f}"


def _pct(row: Row, ctx: Ctx, ours: bool) -> str:
    rate, flops, kind = (row.ours, row.flops_ours, row.peak_ours) if ours else (row.theirs, row.flops_theirs,
                                                                                 row.peak_theirs)
    peak = ctx.peak(kind, row)
    if not flops or not math.isfinite(rate) or not math.isfinite(peak):
        return "-"
    return f"{100 * rate * flops / peak:.0f}% {kind}"


def verdict(row: Row, ctx: Ctx) -> str:
    if row.skipped:
        return "skipped"
    if row.goal is None:
        return ""
    ok = row.ratio >= row.goal
    if row.goal_peak is not None and row.flops_ours:
        ok = ok and row.ours * row.flops_ours / ctx.peak(row.peak_ours, row) >= row.goal_peak
    return "met" if ok else "NOT met"


def table(rows: list[Row], ctx: Ctx, markdown: bool) -> str:
    head = ["workload", "what", "batch", "unit", "vitkit /s", "competitor /s", "competitor", "ratio", "goal",
            "vitkit % peak", "comp. % peak", "verdict", "note"]
    body = []
    for r in rows:
        goal = "" if r.goal is None else f">= {r.goal:g}x" + (f", {100 * r.goal_peak:.0f}% peak" if r.goal_peak else "")
        if r.skipped:
            body.append([r.name, r.what, str(r.batch), r.unit, "-", "-", r.competitor, "-", goal, "-", "-",
                         "skipped", r.skipped])
            continue
        body.append([r.name, r.what, str(r.batch), r.unit, _fmt(r.ours), _fmt(r.theirs), r.competitor,
                     f"{r.ratio:.2f}x", goal, _pct(r, ctx, True), _pct(r, ctx, False), verdict(r, ctx), r.note])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
        lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths))] + [fmt.format(*b) for b in body])


def machine(ctx: Ctx) -> str:
    import timm
    import transformers

    load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    dev = torch.cuda.get_device_name(ctx.device) if ctx.cuda else (platform.processor() or platform.machine())
    if not ctx.cuda and os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        dev = names[0] if names else dev
    return (f"{datetime.date.today()}  {dev}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
            f"load average {load}; torch {torch.__version__}, timm {timm.__version__}, transformers "
            f"{transformers.__version__}, vitkit {getattr(vitkit, '__version__', '?')}, CPU capability "
            f"{torch.backends.cpu.get_cpu_capability()}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="3 repetitions, smaller retrieval set")
    p.add_argument("--tiny", action="store_true", help="tiny models and inputs: checks the script, not speed")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help="workload name, prefix or glob (repeatable); 'none' runs only the peaks")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    p.add_argument("--reps", type=int, default=0, help="interleaved repetitions per workload (median reported)")
    p.add_argument("--batch", type=int, default=0, help="override every workload's batch size")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--bf16", choices=["auto", "on", "off"], default="auto",
                   help="bf16 rows: auto runs them only where bf16 matmul is at least half the fp32 rate")
    p.add_argument("--retrieval-captions", type=int, default=0, help="captions to rank (default 128; quick 64)")
    p.add_argument("--scaling", action="store_true", help="also ViT-B/16 time vs resolution and batch size")
    p.add_argument("--compile", action="store_true", help="also opt-in torch.compile rows")
    p.add_argument("--markdown", action="store_true", help="print the table as markdown")
    p.add_argument("--json", default="", help="also write the rows and peaks to this JSON file")
    p.add_argument("--list", action="store_true", help="list the workload names and exit")
    args = p.parse_args(argv)
    if args.threads or args.tiny:  # tiny: one thread, so a busy machine's thread wake-ups do not dominate
        torch.set_num_threads(args.threads or 1)
    ctx = Ctx(args)
    table_of = workloads(ctx)
    if args.list:
        print("\n".join(table_of))
        return 0
    selected = [n for n in table_of if not args.only or any(
        n == o or n.startswith(o) or fnmatch.fnmatch(n, o) for o in args.only)]
    if ctx.cuda:
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 (the bf16 rows are the fast path)
    print(machine(ctx), flush=True)

    n = 256 if ctx.tiny else 8192 if ctx.cuda else 2048
    for kind, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        rate, used, mm = matmul_peak(ctx.device, dtype, n, 3 if ctx.quick else 5)
        ctx.peaks[kind], ctx.mm[kind], ctx.mm_n[kind] = rate, mm, used
        print(f"matmul peak {kind}: {rate / 1e9:,.1f} GFLOP/s ({used}^3, median)", flush=True)
    slow = ctx.peaks["bf16"] < 0.5 * ctx.peaks["fp32"]
    if args.bf16 == "off" or (args.bf16 == "auto" and slow and not ctx.tiny):
        ctx.bf16_ok = False
        ctx.bf16_reason = ("--bf16 off" if args.bf16 == "off" else
                           f"bf16 matmul {ctx.peaks['bf16'] / 1e9:.1f} GFLOP/s vs fp32 {ctx.peaks['fp32'] / 1e9:.0f}: "
                           "no native bf16 on this device (--bf16 on to run anyway)")

    rows: list[Row] = []
    for name in selected:
        runner, is_bf16 = table_of[name]
        if is_bf16 and not ctx.bf16_ok:
            rows.append(Row(name, SKIPPED_WHAT.get(name, name), "-", "-", skipped=ctx.bf16_reason))
            print(f"[{name}] skipped: {ctx.bf16_reason}", flush=True)
            continue
        t0 = time.perf_counter()
        new = runner()
        rows += new
        for r in new:
            peaks = ", ".join(f"{k} {v / 1e9:.0f}" for k, v in r.peaks.items())
            print(f"[{r.name}] {_fmt(r.ours)} vs {_fmt(r.theirs)} {r.unit}/s = {r.ratio:.2f}x "
                  f"({time.perf_counter() - t0:.0f} s; matmul GFLOP/s alongside: {peaks}) {r.note}", flush=True)
    if args.scaling:
        rows += vit_scaling(ctx)
    if args.compile:
        rows += compiled(ctx)
    print()
    print("% peak: the model's analytic matmul FLOP rate / the n^3 matmul rate timed in the same interleaved rounds")
    print(table(rows, ctx, args.markdown))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(ctx), "peaks": ctx.peaks, "rows": [
                {**asdict(r), "ratio": r.ratio, "verdict": verdict(r, ctx)} for r in rows]}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
