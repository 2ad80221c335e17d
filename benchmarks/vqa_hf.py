"""VQA training, vitkit against Hugging Face transformers' ViltForQuestionAnswering: same size, data, batch and
number of optimizer steps, one process, one machine. Prints both sides' wall time and validation VQA accuracy.

    python benchmarks/vqa_hf.py                           # generated scenes (3000 train / 500 val images), 4 epochs
    python benchmarks/vqa_hf.py --data scenes --epochs 4 --json vqa_hf.json   # as docs/benchmarks.md records
    python benchmarks/vqa_hf.py --quick                   # 200 train / 50 val images, 1 epoch: checks the script

The two sides:

- **vitkit**: exactly what `vitkit train --task vqa --data D --epochs E --batch-size B` runs with every other
  option at its default: `vitkit.train.tasks.vqa.setup` (the `vilt_nano_patch8_64` preset, the answer vocabulary of the
  annotations, the resolved recipe: AdamW 1e-3, weight decay 0.05, 10% warmup + cosine, stochastic depth 0.1,
  EMA, gradient clipping 1.0) and `vitkit.train.engine.Trainer.fit` (which also evaluates the weights and their
  EMA every epoch, writes a checkpoint every epoch, exports the best model and draws the training curves; all
  of that is inside its wall time). Progress bars are off; they are cosmetic.
- **HF**: `transformers.ViltForQuestionAnswering` from scratch, with the vitkit model's sizes (hidden 128,
  4 layers, 4 heads, intermediate 512, 64x64 images, 8x8 patches, 40 text positions, the same answer
  vocabulary), trained as in the ViLT paper: binary cross-entropy against the soft scores times the number of
  answers (transformers' own loss, given `labels`), AdamW (lr 3e-4, betas (0.9, 0.98), weight decay 0.01 except
  on biases and LayerNorm weights, as ViLT's code), a one-cycle schedule (linear warmup over 10% of the steps,
  then linear decay to 0), no EMA, no clipping, evaluated once per epoch. Its data is vitkit's: the same
  dataset objects (decoded, resized images; questions tokenised by vitkit's BERT tokenizer, max 40 tokens; the
  soft targets) and the same collate (same mean/std normalisation), in the same batches and order (vitkit's
  `EpochSampler` with the same seed); `token_type_ids` are zeros and `pixel_mask` is the collate's (all ones
  for equal-sized images). On a GPU both sides use the same autocast dtype (vitkit's `--amp auto`).

Both sides are scored by the same function, `VQATask.evaluate` (the official VQA accuracy of the argmax answer,
overall and per answer type), on the full val split, and each reports its best epoch, as `vitkit train`'s
metrics.json does (vitkit picks among its weights and their EMA too). As a check, each side's selected weights
are scored once more, outside the timings, through the string-based official scorer `vitkit.data.vqa.VQAMetrics`
(predicted answer text vs the ten human answers); the script reports whether the two agree.

Order: vitkit runs first, then HF (`--hf-first` swaps), sequentially in one process, after an untimed warm-up
of both models (two forward + backward passes of throwaway copies, so the first side does not pay for the
process's first kernels and allocations). Timings: "wall s" is the
wall time of training + evaluation, everything each side does from building its optimizer to its last
evaluation (data loading and decoding are shared and outside both timings). Within it, "eval s" is the time in
evaluation calls (vitkit evaluates its weights and their EMA, so twice per epoch; HF once), "io s" the time
spent keeping the selected weights (vitkit: per-epoch checkpoint, best-model export, training-curve plot; HF: a
copy of its state dict), and samples/s is training samples / (wall - eval - io): the training loop's rate.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from vitkit.data.scenes import generate_vqa_scenes
from vitkit.data.vqa import VQAMetrics, load_vqa_split, questions_file
from vitkit.train.config import TrainConfig, vl_batch_size
from vitkit.train.engine import StepContext, Trainer, amp_dtype
from vitkit.train.launch import DEFAULT_MODELS
from vitkit.train.sampler import EpochSampler
from vitkit.train.tasks import vqa as vqa_train
from vitkit.utils.device import resolve_device
from vitkit.utils.distributed import DistInfo

log = logging.getLogger("vitkit.bench")

# The reference setting the issue names (checked against the vitkit preset's config, so a drift is visible).
REFERENCE = {"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 512,
             "image_size": 64, "patch_size": 8}
HF_BETAS = (0.9, 0.98)  # ViLT's code (vilt/modules/vilt_utils.py set_schedule)
ACC_KEYS = ("val_vqa_accuracy", "val_vqa_yes_no", "val_vqa_number", "val_vqa_other")


# ---- data --------------------------------------------------------------------------------------------------------


def ensure_data(path: Path | None, *, num_train: int, num_val: int, seed: int,
                stack: contextlib.ExitStack) -> tuple[Path, bool]:
    """(a VQAv2-layout folder, whether it was generated now): `path` when it holds the train/val question files,
    else generated scenes written there (or into a temporary folder removed at exit)."""
    if path is not None and (path / questions_file("train2014")).is_file() \
            and (path / questions_file("val2014")).is_file():
        return path, False
    if path is None:
        path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vqa_hf_"))) / "scenes"
    t0 = time.perf_counter()
    generate_vqa_scenes(path, num_train=num_train, num_val=num_val, seed=seed)
    print(f"generated scenes: {num_train} train / {num_val} val images in {path} "
          f"({time.perf_counter() - t0:.1f} s)", flush=True)
    return path, True


class _Timed:
    """Wraps a function; adds up the seconds spent in it."""

    def __init__(self, fn: Any, device: torch.device) -> None:
        self.fn, self.device, self.seconds = fn, device, 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        _sync(self.device)
        t0 = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            _sync(self.device)
            self.seconds += time.perf_counter() - t0


class _Shared(_Timed):
    """Another function on an existing `_Timed`'s clock."""

    def __init__(self, fn: Any, clock: _Timed) -> None:
        super().__init__(fn, clock.device)
        self.clock = clock

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        before = self.seconds
        try:
            return super().__call__(*args, **kwargs)
        finally:
            self.clock.seconds += self.seconds - before


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def questions_per_item(dataset: Any) -> float:
    """Questions per dataset item: 1, or the mean questions per image when vitkit groups them by image."""
    return getattr(dataset, "num_questions", len(dataset)) / max(1, len(dataset))


def _accuracies(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(metrics[k]) for k in ACC_KEYS if k in metrics}


def official_rescore(model: nn.Module, val_set: Any, task: Any, questions: list[Any], *, batch_size: int,
                     device: torch.device, autocast: Any) -> dict[str, float]:
    """The val accuracy of `model`'s argmax answers through the string-based official scorer (`VQAMetrics`):
    an independent check of the table lookup `VQATask.evaluate` does. Same batches as the Trainer's val loader."""
    metrics = VQAMetrics()
    loader = DataLoader(val_set, batch_size=batch_size, shuffle=False, collate_fn=task.collate)
    if hasattr(val_set, "members"):  # ImageGroups: batches list each image's questions together
        text_rows = [val_set.questions.text_rows[i] for members in val_set.members for i in members]
    else:
        text_rows = val_set.text_rows
    row = 0
    model.eval()
    with torch.no_grad():
        for batch in loader:
            with autocast():
                logits = model(**task._inputs(batch, device)).logits.float()
            for pred in logits.argmax(-1).tolist():
                q = questions[text_rows[row]]
                metrics.add(task.answers[pred], q.answers, q.answer_type)
                row += 1
    res = metrics.result()
    out = {"val_vqa_accuracy": res["vqa_accuracy"]}
    for name in ("yes/no", "number", "other"):
        if name in res:
            out[f"val_vqa_{name.replace('/', '_')}"] = res[name]
    return out


# ---- vitkit --------------------------------------------------------------------------------------------------------


def run_vitkit(shared: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """`vitkit train --task vqa` with the shared data: the Trainer that `vitkit.train.launch.run_train` builds."""
    from vitkit.registry import from_pretrained

    cfg, device = shared["cfg"], shared["device"]
    net, resolved = shared["net"], shared["resolved"]
    task = shared["task"]
    timed = _Timed(task.evaluate, device)
    io = _Timed(task.export, device)
    task.evaluate, task.export = timed, io  # instance attributes: the Trainer calls them as before, now timed
    try:
        _sync(device)
        t0 = time.perf_counter()
        trainer = Trainer(task, net, shared["train_set"], shared["val_set"], resolved, run_dir,
                          run_args={"task": "vqa", "data": str(shared["data"])}, resume=False,
                          saved_config=asdict(cfg))
        for name in ("_checkpoint", "_plots"):  # the same clock for checkpoints and curves
            setattr(trainer, name, _Shared(getattr(trainer, name), io))
        best = trainer.fit()
        _sync(device)
        wall = time.perf_counter() - t0
    finally:
        del task.evaluate, task.export
    exported = from_pretrained(run_dir / "model").to(device)
    rescored = official_rescore(exported, shared["val_set"], task, shared["val_questions"],
                                batch_size=trainer.micro_batch, device=device, autocast=trainer._autocast)
    history = [{k: v for k, v in h.items() if k in ("epoch", "step", "val_loss") or "vqa" in k}
               for h in trainer.state.history]
    return {
        "side": "vitkit", "model": DEFAULT_MODELS["vqa"], "params": sum(p.numel() for p in net.parameters()),
        "steps": trainer.state.global_step, "planned_steps": trainer.total_steps, "batch_size": trainer.global_batch,
        "epochs": resolved.epochs, "wall_s": wall, "eval_s": timed.seconds, "io_s": io.seconds,
        "train_samples": round(trainer.state.global_step * trainer.global_batch
                               * questions_per_item(trainer.train_set)),
        **_accuracies(best), "best_epoch": best.get("epoch"), "selected_weights": best.get("weights"),
        "rescored": rescored, "history": history,
        "recipe": {k: getattr(resolved, k) for k in ("lr", "min_lr", "weight_decay", "warmup_epochs", "beta2",
                                                     "drop_path", "ema", "ema_decay", "clip_grad", "randaugment",
                                                     "vqa_loss", "amp")},
    }


# ---- Hugging Face --------------------------------------------------------------------------------------------------


class HFViltVQA(nn.Module):
    """transformers' ViltForQuestionAnswering behind the call VQATask makes (input_ids, attention_mask,
    pixel_values, pixel_mask), with token_type_ids zeros: so training and evaluation feed it vitkit's batches."""

    def __init__(self, hf: nn.Module) -> None:
        super().__init__()
        self.hf = hf

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor,
                pixel_mask: torch.Tensor, labels: torch.Tensor | None = None,
                image_index: torch.Tensor | None = None, pooled_only: bool = False) -> Any:
        # pooled_only (vitkit's last block on [CLS] alone) has no HF counterpart: HF computes every row
        if image_index is not None:  # vitkit's batches of whole images (one-way fusion): one image copy per question
            pixel_values, pixel_mask = pixel_values[image_index], pixel_mask[image_index]
        return self.hf(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=torch.zeros_like(input_ids),
                       pixel_values=pixel_values, pixel_mask=pixel_mask, labels=labels)


def hf_config(net: nn.Module, answers: list[str], vocab_size: int) -> Any:
    """A ViltConfig with the vitkit model's sizes and answer vocabulary."""
    from transformers import ViltConfig

    c = net.config
    return ViltConfig(
        vocab_size=vocab_size, type_vocab_size=c.type_vocab_size, modality_type_vocab_size=c.modality_type_vocab_size,
        max_position_embeddings=c.max_text_len, hidden_size=c.embed_dim, num_hidden_layers=c.depth,
        num_attention_heads=c.num_heads, intermediate_size=int(c.embed_dim * c.mlp_ratio), hidden_act="gelu",
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, image_size=c.img_size, patch_size=c.patch_size,
        num_channels=c.in_chans, qkv_bias=c.qkv_bias, max_image_length=-1, num_images=-1,
        num_labels=len(answers), id2label=dict(enumerate(answers)), label2id={a: i for i, a in enumerate(answers)},
    )


def hf_param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on everything but biases and LayerNorm weights (the 1-D parameters), ViLT's and BERT's rule."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]


def one_cycle(step: int, *, total: int, warmup: int, peak: float) -> float:
    """Linear warmup to `peak` over `warmup` steps, then linear decay to 0 at `total` (ViLT's schedule)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * max(0.0, (total - step) / max(1, total - warmup))


def run_hf(shared: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """ViltForQuestionAnswering from scratch on vitkit's batches: the plain loop the ViLT paper describes."""
    from transformers import ViltForQuestionAnswering

    device, task, train_set, val_set = shared["device"], shared["task"], shared["train_set"], shared["val_set"]
    epochs, batch = shared["epochs"], shared["batch"]
    steps_per_epoch = len(train_set) // batch
    total = steps_per_epoch * epochs
    warmup = max(1, round(args.hf_warmup * total))
    dtype = shared["amp"]

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    torch.manual_seed(args.seed)  # the initial weights, as vitkit's run_train seeds its own
    hf = ViltForQuestionAnswering(hf_config(shared["net"], task.answers, shared["vocab_size"]))
    _sync(device)
    t0 = time.perf_counter()  # from here as vitkit's clock starts at its Trainer: device copy, optimizer, loop
    model = HFViltVQA(hf).to(device).train()
    optimizer = torch.optim.AdamW(hf_param_groups(model, args.hf_weight_decay), lr=args.hf_lr, betas=HF_BETAS,
                                  eps=1e-8)
    sampler = EpochSampler(len(train_set), shuffle=True, seed=args.seed, global_batch=batch)
    pin = device.type == "cuda"  # as the Trainer's loaders
    val_loader = DataLoader(val_set, batch_size=batch, sampler=EpochSampler(len(val_set), shuffle=False),
                            collate_fn=task.collate, pin_memory=pin)
    ctx = StepContext(device=device, dist=DistInfo(), autocast=autocast)
    timed = _Timed(task.evaluate, device)

    def evaluate() -> dict[str, Any]:
        # transformers draws a random patch order at every forward (torch.multinomial, even in eval mode, though
        # the output does not depend on it beyond rounding): a fixed seed makes evaluations repeatable
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)
            model.eval()
            out = timed(model, val_loader, ctx)
            model.train()
        return out

    best: dict[str, Any] = {}
    best_state: dict[str, torch.Tensor] | None = None
    history, step, losses, io_s = [], 0, [], 0.0
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        loader = DataLoader(train_set, batch_size=batch, sampler=sampler, collate_fn=task.collate, pin_memory=pin)
        for batch_data in loader:
            lr = one_cycle(step, total=total, warmup=warmup, peak=args.hf_lr)
            for g in optimizer.param_groups:
                g["lr"] = lr
            inputs = task._inputs(batch_data, device)
            targets = batch_data["targets"].to(device)
            with autocast():
                loss = model(**inputs, labels=targets).loss  # BCE-with-logits (mean) x number of answers
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach())
            step += 1
        metrics = evaluate()
        train_loss = torch.stack(losses).mean().item() if losses else math.nan
        losses = []
        history.append({"epoch": epoch + 1, "step": step, "train_loss": train_loss,
                        **{k: v for k, v in metrics.items() if "vqa" in k or k == "val_loss"}})
        if not best or metrics["val_vqa_accuracy"] > best["val_vqa_accuracy"]:
            best = {**metrics, "epoch": epoch + 1}
            t_copy = time.perf_counter()
            best_state = copy.deepcopy(model.state_dict())  # keep the selected weights (vitkit exports its own)
            io_s += time.perf_counter() - t_copy
    _sync(device)
    wall = time.perf_counter() - t0
    if best_state is not None:
        model.load_state_dict(best_state)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        rescored = official_rescore(model, val_set, task, shared["val_questions"], batch_size=batch, device=device,
                                    autocast=autocast)
    return {
        "side": "hf", "model": "transformers.ViltForQuestionAnswering",
        "params": sum(p.numel() for p in hf.parameters()),
        "steps": step, "planned_steps": total, "batch_size": batch, "epochs": epochs, "wall_s": wall,
        "eval_s": timed.seconds, "io_s": io_s, "train_samples": round(step * batch * questions_per_item(train_set)),
        **_accuracies(best),
        "best_epoch": best.get("epoch"), "selected_weights": "model", "rescored": rescored, "history": history,
        "recipe": {"lr": args.hf_lr, "schedule": f"linear warmup {warmup} steps, linear decay to 0",
                   "weight_decay": args.hf_weight_decay, "betas": list(HF_BETAS), "loss": "bce x num_answers",
                   "ema": False, "clip_grad": 0.0, "amp": str(dtype) if dtype is not None else "none"},
        "hf_config": {k: getattr(hf.config, k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                        "intermediate_size", "image_size", "patch_size",
                                                        "max_position_embeddings", "vocab_size", "num_labels",
                                                        "layer_norm_eps")},
    }


# ---- warm-up -------------------------------------------------------------------------------------------------------


def warm_up(shared: dict[str, Any], steps: int = 2) -> None:
    """A few untimed forward + backward passes of throwaway copies of both models on one training batch, so that
    neither side's clock pays for the process's first kernels and allocations (whichever side runs first would)."""
    from transformers import ViltForQuestionAnswering

    device, task, train_set = shared["device"], shared["task"], shared["train_set"]
    batch = task.collate([train_set[i] for i in range(min(shared["batch"], len(train_set)))])
    inputs, targets = task._inputs(batch, device), batch["targets"].to(device)
    dtype = shared["amp"]
    with torch.random.fork_rng(devices=[]):
        hf = HFViltVQA(ViltForQuestionAnswering(hf_config(shared["net"], task.answers, shared["vocab_size"])))
        for model in (copy.deepcopy(shared["net"]), hf):
            model.to(device).train()
            for _ in range(steps):
                with torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext():
                    logits = model(**inputs).logits.float()
                task.loss_sum(logits, targets).backward()
            with torch.no_grad():
                model.eval()(**inputs)
    _sync(device)


# ---- report --------------------------------------------------------------------------------------------------------


def _finish(side: dict[str, Any]) -> dict[str, Any]:
    train_s = max(side["wall_s"] - side["eval_s"] - side["io_s"], 1e-9)
    side["train_s"] = train_s
    side["samples_per_s"] = side["train_samples"] / train_s
    diff = abs(side["rescored"]["val_vqa_accuracy"] - side["val_vqa_accuracy"])
    side["rescore_matches"] = diff < 1e-9
    return side


def print_table(result: dict[str, Any]) -> None:
    rows = [("side", "params", "steps", "wall s", "eval s", "io s", "samples/s", "VQA acc", "yes/no", "number",
             "other")]
    for key in ("vitkit", "hf"):
        s = result[key]
        rows.append((key, f"{s['params'] / 1e6:.2f}M", str(s["steps"]), f"{s['wall_s']:.1f}", f"{s['eval_s']:.1f}",
                     f"{s['io_s']:.1f}", f"{s['samples_per_s']:.0f}",
                     *(f"{s[k]:.4f}" if k in s else "-" for k in ACC_KEYS)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print()
    for r in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    ra = result["ratios"]
    print(f"\nvitkit time / HF time: {ra['time_vitkit_over_hf']:.3f}   "
          f"accuracy vitkit - HF: {ra['accuracy_diff']:+.4f}   "
          f"goal (vitkit accuracy >= HF in less time): {'met' if ra['goal_met'] else 'NOT met'}")
    checks = ", ".join(f"{k} {'ok' if result[k]['rescore_matches'] else 'MISMATCH'}" for k in ("vitkit", "hf"))
    print(f"string-based official rescoring of the selected weights: {checks}")
    print(f"order: {result['config']['order']}; device {result['machine']['device']}, "
          f"{result['machine']['threads']} threads")


# ---- main ----------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="VQAv2-format folder (as `vitkit scenes D` writes); generated there "
                   "when it holds no questions files (default: a temporary folder)")
    p.add_argument("--num-train", type=int, help="generated train images (default 3000; --quick 200)")
    p.add_argument("--num-val", type=int, help="generated val images (default 500; --quick 50)")
    p.add_argument("--epochs", type=int, help="epochs for both sides (default 4; --quick 1)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="questions per step for both sides (default: vitkit's, 128 from scratch)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (both sides)")
    p.add_argument("--seed", type=int, default=0, help="seed for the data generation, both models and the order")
    p.add_argument("--quick", action="store_true", help="tiny run (200 train / 50 val images, 1 epoch): checks the "
                   "script, not the claim")
    p.add_argument("--hf-first", action="store_true", help="run the HF side first (default: vitkit first)")
    p.add_argument("--hf-lr", type=float, default=3e-4, help="HF peak learning rate (default 3e-4)")
    p.add_argument("--hf-weight-decay", type=float, default=0.01, help="HF AdamW weight decay (default 0.01)")
    p.add_argument("--hf-warmup", type=float, default=0.1, help="HF warmup, fraction of the steps (default 0.1)")
    p.add_argument("--run-dir", type=Path, help="keep vitkit's run directory here (default: a temporary one)")
    p.add_argument("--json", type=Path, help="write the results as JSON")
    args = p.parse_args(argv)
    if args.num_train is None:
        args.num_train = 200 if args.quick else 3000
    if args.num_val is None:
        args.num_val = 50 if args.quick else 500
    if args.epochs is None:
        args.epochs = 1 if args.quick else 4
    if args.epochs < 1 or (args.batch_size is not None and args.batch_size < 1) or args.num_train < 1 \
            or args.num_val < 1:
        p.error("--epochs, --batch-size, --num-train and --num-val must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    try:
        import transformers
    except ImportError:
        sys.exit("error: this benchmark needs transformers: pip install transformers")
    old_threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        with contextlib.ExitStack() as stack:
            return _run(args, stack, transformers.__version__)
    finally:
        torch.set_num_threads(old_threads)


def _run(args: argparse.Namespace, stack: contextlib.ExitStack, hf_version: str) -> dict[str, Any]:
    data, generated = ensure_data(args.data, num_train=args.num_train, num_val=args.num_val, seed=args.seed,
                                  stack=stack)
    run_dir = args.run_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vqa_hf_run_")))
    if args.run_dir is not None:
        for name in ("state.pt", "metrics.json", "metrics.jsonl"):
            (run_dir / name).unlink(missing_ok=True)

    # The data and the vitkit model, as `vitkit train --task vqa` builds them (run_train seeds before set-up).
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, device=args.device,
                      progress=False)
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    net, train_set, val_set, task, resolved = vqa_train.setup(
        task="vqa", data=data, model=DEFAULT_MODELS["vqa"], pretrained=None, init_from=None, img_size=None, cfg=cfg,
        net=None, skip_bad_images=False)
    setup_s = time.perf_counter() - t0
    device = resolve_device(resolved.device)
    c = net.config
    sizes = {"hidden_size": c.embed_dim, "num_hidden_layers": c.depth, "num_attention_heads": c.num_heads,
             "intermediate_size": int(c.embed_dim * c.mlp_ratio), "image_size": c.img_size,
             "patch_size": c.patch_size}
    if sizes != REFERENCE:
        log.warning("the vitkit preset's sizes %s differ from the issue's reference %s", sizes, REFERENCE)
    vocab_size = task.processor.tokenizer.vocab_size
    if vocab_size != c.vocab_size:
        raise SystemExit(f"error: tokenizer vocabulary {vocab_size} != model vocabulary {c.vocab_size}")
    batch = min(resolved.batch_size, len(train_set))  # dataset items: questions, or images holding them
    resolved_questions = cfg.batch_size if cfg.batch_size is not None else vl_batch_size("vqa", False)
    shared = {
        "cfg": cfg, "resolved": resolved, "net": net, "task": task, "data": data,
        "train_set": train_set, "val_set": val_set, "device": device, "amp": amp_dtype(resolved, device),
        "val_questions": load_vqa_split(data, "val2014"), "epochs": resolved.epochs, "batch": batch,
        "vocab_size": vocab_size,
    }
    print(f"data {data}: {len(train_set)} train / {len(val_set)} val items "
          f"({questions_per_item(train_set):.1f} questions each), {len(task.answers)} answers, "
          f"batch {batch}, {len(train_set) // batch * resolved.epochs} steps per side, {device}, "
          f"{torch.get_num_threads()} threads (set-up {setup_s:.1f} s)", flush=True)

    t0 = time.perf_counter()
    warm_up(shared)
    print(f"warm-up (both models, untimed): {time.perf_counter() - t0:.1f} s", flush=True)
    order = ("hf", "vitkit") if args.hf_first else ("vitkit", "hf")
    result: dict[str, Any] = {}
    for side in order:
        print(f"training {side} ...", flush=True)
        result[side] = _finish(run_vitkit(shared, run_dir) if side == "vitkit" else run_hf(shared, args))
        s = result[side]
        print(f"  {side}: {s['steps']} steps, {s['wall_s']:.1f} s, val VQA accuracy {s['val_vqa_accuracy']:.4f}",
              flush=True)
    v, h = result["vitkit"], result["hf"]
    if v["steps"] != h["steps"]:
        raise SystemExit(f"error: the sides ran different step counts: vitkit {v['steps']}, HF {h['steps']}")
    time_ratio = v["wall_s"] / h["wall_s"]
    acc_diff = v["val_vqa_accuracy"] - h["val_vqa_accuracy"]
    out = {
        "vitkit": v, "hf": h,
        "ratios": {"time_vitkit_over_hf": time_ratio, "accuracy_diff": acc_diff,
                   "goal_met": bool(acc_diff >= 0 and time_ratio < 1)},
        "config": {"data": str(data), "generated": generated, "num_train_images": args.num_train if generated else None,
                   "num_val_images": args.num_val if generated else None,
                   "train_questions": getattr(train_set, "num_questions", len(train_set)),
                   "val_questions": getattr(val_set, "num_questions", len(val_set)), "train_items": len(train_set),
                   "answers": len(task.answers), "epochs": resolved.epochs,
                   "batch_size": batch, "batch_questions": resolved_questions, "seed": args.seed,
                   "quick": args.quick, "order": " then ".join(order)},
        "machine": {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "transformers": hf_version, "python": platform.python_version(), "platform": platform.platform(),
                    "cpu_count": os.cpu_count(),
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
    }
    print_table(out)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
    return out


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    main()
