"""The one training loop. Tasks (classification, VQA, pretraining, diffusion, ...) plug in as step functions;
everything else is shared: DDP under torchrun, mixed precision, gradient accumulation, EMA, clipping,
warmup + cosine, atomic checkpoints with exact resume, metrics.jsonl, curves, best-model export."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..config import config_to_dict
from ..errors import VitkitError, WriteError
from ..utils.device import resolve_device
from ..utils.distributed import DistInfo, all_reduce_sum, barrier, cleanup_distributed, init_distributed
from ..utils.files import append_line, atomic_write_text
from .config import TrainConfig, fill_task_neutral_defaults
from .ema import ModelEMA
from .optim import build_optimizer, set_lr, warmup_cosine
from .sampler import EpochSampler
from .state import load_state, rng_state, save_state, set_rng_state

log = logging.getLogger("vitkit")


class TrainingDiverged(VitkitError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class StepContext:
    device: torch.device
    dist: DistInfo
    epoch: int = 0
    global_step: int = 0
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext


class Task(Protocol):
    name: str
    primary_metric: str  # selects the exported weights: higher is better unless the task sets lower_is_better
    head_prefixes: tuple[str, ...]
    # Optional: `lower_is_better = True` (losses); `finish(run_dir)`, called once on the main process after the
    # last epoch (e.g. a sample grid drawn from the exported model).

    def collate(self, items: list[Any]) -> Any: ...
    def train_step(
        self, model: nn.Module, batch: Any, ctx: StepContext
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...
    def evaluate(self, model: nn.Module, loader: DataLoader, ctx: StepContext) -> dict[str, float]: ...
    def export(self, model: nn.Module, out_dir: Path, metrics: dict[str, Any]) -> None: ...


@dataclass
class RunState:
    epoch: int = 0  # the epoch in progress (0-based)
    step_in_epoch: int = 0  # optimizer steps completed in that epoch
    global_step: int = 0
    best: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0  # wall time spent training and evaluating, summed over resumes


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if cfg.amp == "none":
        return None
    if cfg.amp == "fp16":
        if device.type != "cuda":
            raise VitkitError("--amp fp16 needs CUDA; use --amp bf16 on the CPU")
        return torch.float16
    if cfg.amp == "bf16":
        return torch.bfloat16
    # auto: bf16 where the GPU supports it; fp32 on the CPU (small models gain little and it stays exact)
    return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None


class _GracefulInterrupt:
    """First Ctrl-C: finish the current optimizer step, checkpoint, stop. Second: stop at once."""

    def __init__(self) -> None:
        self.requested = False
        self._old: Any = None

    def __enter__(self) -> _GracefulInterrupt:
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("interrupt: finishing this step and writing a checkpoint (Ctrl-C again to abort now)")

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


class Trainer:
    def __init__(
        self, task: Task, model: nn.Module, train_set: Dataset, val_set: Dataset, cfg: TrainConfig,
        run_dir: str | Path, *, run_args: dict[str, Any] | None = None, resume: bool = False,
        saved_config: dict[str, Any] | None = None,
    ) -> None:
        cfg = fill_task_neutral_defaults(cfg)
        self.task, self.cfg, self.run_dir = task, cfg, Path(run_dir)
        self.train_set, self.val_set = train_set, val_set
        self.run_args = run_args or {}
        self.saved_config = saved_config or asdict(cfg)  # the user's choices, "auto" left unresolved
        self.device = resolve_device(cfg.device)
        self.dist = init_distributed(self.device.type)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        torch.manual_seed(cfg.seed + self.dist.rank)
        if self.dist.is_main:  # only rank 0 touches the run directory
            self.run_dir.mkdir(parents=True, exist_ok=True)

        per_step = self.dist.world_size * cfg.accum_steps
        batch = min(cfg.batch_size, len(train_set) // per_step * per_step)
        if batch < per_step:
            raise VitkitError(f"the training set has {len(train_set)} samples: too few for {per_step} processes x "
                              "accumulation steps")
        if batch % per_step:
            raise VitkitError(f"--batch-size {cfg.batch_size} is not divisible by processes x accumulation steps "
                              f"({self.dist.world_size} x {cfg.accum_steps})")
        if batch != cfg.batch_size:
            log.warning("batch size %d is larger than the training set; using %d", cfg.batch_size, batch)
        self.global_batch, self.micro_batch = batch, batch // per_step
        self.steps_per_epoch = len(train_set) // batch
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.warmup_steps = min(round(cfg.warmup_epochs * self.steps_per_epoch), self.total_steps // 2)

        self.model = model.to(self.device)
        self.ema = ModelEMA(self.model, cfg.ema_decay) if cfg.ema else None
        self.optimizer = build_optimizer(self.model, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                         head_lr_mult=cfg.head_lr_mult, head_prefixes=task.head_prefixes,
                                         betas=(0.9, cfg.beta2))
        self.amp = amp_dtype(cfg, self.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == torch.float16 else None
        self.state = RunState()
        if resume:
            self._restore(load_state(self.run_dir))
        self.net: nn.Module = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if cfg.compile:
            self.net = torch.compile(self.net)
        self.train_sampler = EpochSampler(len(train_set), shuffle=True, seed=cfg.seed, rank=self.dist.rank,
                                          world_size=self.dist.world_size, global_batch=batch)
        self.val_sampler = EpochSampler(len(val_set), shuffle=False, rank=self.dist.rank,
                                        world_size=self.dist.world_size)
        self._jsonl = self.run_dir / "metrics.jsonl"
        self._tb = self._tensorboard() if cfg.tensorboard and self.dist.is_main else None

    # ------------------------------------------------------------------------------------------ plumbing
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def _workers(self) -> int:
        if self.cfg.deterministic:
            return 0  # augmentation draws must happen in this process, in step order, to be replayable
        if self.cfg.workers >= 0:
            return self.cfg.workers
        in_memory = getattr(self.train_set, "in_memory", False)
        return 0 if in_memory else min(4, os.cpu_count() or 1)

    def _loader(self, dataset: Dataset, sampler: EpochSampler, batch_size: int) -> DataLoader:
        workers = self._workers()
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                          collate_fn=self.task.collate, pin_memory=self.device.type == "cuda",
                          persistent_workers=False, drop_last=False)

    def _ctx(self) -> StepContext:
        return StepContext(device=self.device, dist=self.dist, epoch=self.state.epoch,
                           global_step=self.state.global_step, autocast=self._autocast)

    def _tensorboard(self) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise VitkitError("--tensorboard needs the tensorboard package: pip install tensorboard") from e
        return SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))

    def _log(self, record: dict[str, Any]) -> None:
        if self.dist.is_main:
            append_line(self._jsonl, json.dumps(record))  # a failed append leaves the earlier lines intact
            if self._tb is not None:  # step lines go under train/, epoch lines (validation metrics) under val/
                group = "train" if "lr" in record else "val"
                for k, v in record.items():
                    if k not in ("epoch", "step", "elapsed_s") and isinstance(v, (int, float)):
                        self._tb.add_scalar(f"{group}/{k}", v, record["step"])
                self._tb.flush()

    def _checkpoint(self) -> None:
        if self.dist.is_main:
            state = {
                "format": "vitkit-train", "version": 1, "task": self.task.name, "run_args": self.run_args,
                "train_config": self.saved_config, "model_type": self.model.model_type,
                "model_config": config_to_dict(self.model.config), "model": self.model.state_dict(),
                "ema": self.ema.state_dict() if self.ema else None, "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None, "run": asdict(self.state),
                "rng": rng_state(),
            }
            save_state(state, self.run_dir)
        barrier(self.dist)

    def _restore(self, saved: dict[str, Any]) -> None:
        self.model.load_state_dict(saved["model"])
        if self.ema is not None and saved.get("ema"):
            self.ema.load_state_dict(saved["ema"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scaler is not None and saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])
        self.state = RunState(**saved["run"])
        set_rng_state(saved["rng"])
        log.info("resumed at epoch %d, step %d", self.state.epoch + 1, self.state.step_in_epoch)

    # ---------------------------------------------------------------------------------------------- loop
    def fit(self) -> dict[str, Any]:
        cfg, st = self.cfg, self.state
        if self.dist.is_main:
            n = sum(p.numel() for p in self.model.parameters())
            log.info("%s: %.2fM parameters, %d train / %d val samples, global batch %d (%d x %d x %d), %d steps, %s%s",
                     self.task.name, n / 1e6, len(self.train_set), len(self.val_set), self.global_batch,
                     self.dist.world_size, self.cfg.accum_steps, self.micro_batch, self.total_steps,
                     self.device, f", {self.amp}" if self.amp else "")
        self._clock = time.perf_counter()
        try:
            with _GracefulInterrupt() as interrupt, _out_of_memory_advice(self), _write_failure_advice():
                while st.epoch < cfg.epochs:
                    finished = self._train_epoch(interrupt)
                    if not finished:
                        self._tick()
                        self._checkpoint()
                        raise KeyboardInterrupt
                    self._end_epoch()
            if self.dist.is_main:
                self._plots()
                if hasattr(self.task, "finish"):
                    self.task.finish(self.run_dir)
            return st.best
        finally:
            if self._tb is not None:
                self._tb.close()
            cleanup_distributed()

    def _tick(self) -> float:
        """Add the wall time since the last call to the run's elapsed time (kept in checkpoints)."""
        now = time.perf_counter()
        self.state.elapsed_s += now - self._clock
        self._clock = now
        return self.state.elapsed_s

    def _step_seed(self) -> int:
        return self.cfg.seed * 7919 + self.state.global_step * 104729 + self.dist.rank

    def _plots(self) -> None:
        from ..utils.viz import plot_training_curves

        try:
            plot_training_curves(self._jsonl, self.run_dir / "training_curves.png", metric=self.task.primary_metric)
        except (OSError, ValueError, KeyError) as e:  # a picture must never fail a finished run
            log.warning("could not draw training curves: %s", e)

    def _micro_batches(self, loader: DataLoader) -> Iterator[list[Any]]:
        """Groups of accum_steps micro-batches, one group per optimizer step. In deterministic mode every random
        stream (augmentation, mixup, dropout, drop-path) is reseeded from (seed, step, rank) before the step's
        data is drawn, so any step can be replayed exactly, e.g. after a resume mid-epoch."""
        it = iter(loader)
        while True:
            if self.cfg.deterministic:
                torch.manual_seed(self._step_seed())
                if hasattr(self.task, "reseed_data"):
                    self.task.reseed_data(self._step_seed())
            group = list(itertools.islice(it, self.cfg.accum_steps))
            if len(group) < self.cfg.accum_steps:
                return
            yield group

    def _train_epoch(self, interrupt: _GracefulInterrupt) -> bool:
        cfg, st = self.cfg, self.state
        self.net.train()
        start = st.step_in_epoch * self.micro_batch * cfg.accum_steps
        self.train_sampler.set_epoch(st.epoch, start=start)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(st.epoch)
        loader = self._loader(self.train_set, self.train_sampler, self.micro_batch)
        bar = _progress(self.steps_per_epoch, st.step_in_epoch, f"epoch {st.epoch + 1}/{cfg.epochs}",
                        cfg.progress and self.dist.is_main)
        loss_sum = torch.zeros((), device=self.device)
        extra_sums: dict[str, torch.Tensor] = {}
        window, t0, seen = 0, time.perf_counter(), 0
        for group in self._micro_batches(loader):
            lr = warmup_cosine(st.global_step, total=self.total_steps, warmup=self.warmup_steps,
                               base_lr=cfg.lr, min_lr=cfg.min_lr)
            set_lr(self.optimizer, lr)
            ctx = self._ctx()
            for i, batch in enumerate(group):
                sync = i == len(group) - 1
                no_sync = self.net.no_sync() if (self.dist.enabled and not sync) else contextlib.nullcontext()
                with no_sync:
                    with self._autocast():
                        loss, extras = self.task.train_step(self.net, batch, ctx)
                    scaled = loss / cfg.accum_steps
                    (self.scaler.scale(scaled) if self.scaler else scaled).backward()
                loss_sum += loss.detach() / cfg.accum_steps
                for k, v in extras.items():
                    extra_sums[k] = extra_sums.get(k, 0) + v.detach() / cfg.accum_steps
                seen += _batch_len(batch)
            if self.scaler:
                self.scaler.unscale_(self.optimizer)
            if cfg.clip_grad > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
            if self.scaler:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.ema:
                self.ema.update(self.model)
            st.global_step += 1
            st.step_in_epoch += 1
            window += 1
            if window == cfg.log_every or st.step_in_epoch == self.steps_per_epoch or interrupt.requested:
                loss_avg = (loss_sum / window).item()  # the one host sync per logging window
                if not math.isfinite(loss_avg):
                    raise TrainingDiverged(
                        f"loss became {loss_avg} at epoch {st.epoch + 1}, step {st.step_in_epoch}; the last good "
                        "checkpoint is kept. Try a lower --lr, --clip-grad 1.0 or --amp none.")
                dt = time.perf_counter() - t0
                rate = seen * self.dist.world_size / dt
                record = {"epoch": st.epoch + 1, "step": st.global_step, "loss": loss_avg, "lr": lr,
                          "samples_per_s": rate}
                record.update({k: (v / window).item() for k, v in extra_sums.items()})
                self._log(record)
                bar.update(window, loss=loss_avg, rate=rate)
                loss_sum.zero_()
                extra_sums = {}
                window, t0, seen = 0, time.perf_counter(), 0
            if interrupt.requested:
                bar.close()
                return False
        bar.close()
        return True

    def _end_epoch(self) -> None:
        st = self.state
        ctx = self._ctx()
        candidates = {"model": self.model}
        if self.ema is not None:
            candidates["ema"] = self.ema.module
        results = {}
        for name, m in candidates.items():
            m.eval()
            with torch.no_grad():
                results[name] = self.task.evaluate(m, self._loader(self.val_set, self.val_sampler, self.micro_batch),
                                                   ctx)
        key = self.task.primary_metric
        sign = -1.0 if getattr(self.task, "lower_is_better", False) else 1.0
        pick = max(results, key=lambda n: sign * results[n][key])
        record = {"epoch": st.epoch + 1, "step": st.global_step, **_public(results["model"])}
        if "ema" in results:
            record.update({f"ema_{k}": v for k, v in _public(results["ema"]).items()})
        record["elapsed_s"] = round(self._tick(), 2)
        self._log(record)
        st.history.append(record)
        if self.dist.is_main:
            summary = "  ".join(f"{k} {v:.4f}" for k, v in results["model"].items() if isinstance(v, float))
            if "ema" in results:
                summary += f"  (EMA {key} {results['ema'][key]:.4f})"
            log.info("epoch %d/%d  %s  [%s]", st.epoch + 1, self.cfg.epochs, summary, _clock_text(record["elapsed_s"]))
        if not st.best or sign * results[pick][key] > sign * st.best.get(key, -sign * math.inf):
            st.best = {**_public(results[pick]), "epoch": st.epoch + 1, "weights": pick}
            if self.dist.is_main:
                self.task.export(candidates[pick], self.run_dir / "model", results[pick])
                per_class = {"val_per_class": results[pick]["_per_class"]} if "_per_class" in results[pick] else {}
                atomic_write_text(self.run_dir / "metrics.json", json.dumps({**st.best, **per_class}, indent=2) + "\n")
        st.epoch += 1
        st.step_in_epoch = 0
        self._checkpoint()


@contextlib.contextmanager
def _out_of_memory_advice(trainer: Trainer) -> Iterator[None]:
    """Out of memory (CUDA or host) -> one clear error with what to change; the last checkpoint is kept."""
    try:
        yield
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as e:
        text = str(e).lower()
        if isinstance(e, RuntimeError) and not isinstance(e, torch.OutOfMemoryError) and not (
                "out of memory" in text or "can't allocate memory" in text or "cannot allocate memory" in text):
            raise
        micro = trainer.micro_batch
        raise VitkitError(
            f"out of memory with {micro} samples per process per step on {trainer.device} "
            f"({type(e).__name__}); use a smaller --batch-size, or keep the batch and split it with "
            f"--accum-steps {2 * trainer.cfg.accum_steps} (or --amp bf16 on a GPU). The last checkpoint is kept."
        ) from e


@contextlib.contextmanager
def _write_failure_advice() -> Iterator[None]:
    """A write that failed mid-run (full disk, read-only or removed run directory, file size limit): one clear error;
    the last checkpoint is untouched (every write is atomic, and the checkpoint is written last in an epoch)."""
    try:
        yield
    except WriteError as e:
        raise VitkitError(f"{e}; the last good checkpoint is kept") from e


def _clock_text(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def _public(metrics: dict[str, Any]) -> dict[str, Any]:
    """Scalars for logs and metrics.json; keys starting with '_' (matrices, per-class tables) stay internal."""
    return {k: v for k, v in metrics.items() if not k.startswith("_")}


def _batch_len(batch: Any) -> int:
    if isinstance(batch, (list, tuple)):
        return _batch_len(batch[0])
    if isinstance(batch, dict):
        if "image_index" in batch:  # texts sharing images (one-way ViLT): count the texts, not the images
            return len(batch["image_index"])
        return _batch_len(next(iter(batch.values())))
    return len(batch)


class _progress:
    """A tqdm bar when enabled, a no-op otherwise."""

    def __init__(self, total: int, initial: int, desc: str, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, leave=False)

    def update(self, n: int, *, loss: float, rate: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", samples_per_s=f"{rate:.0f}")
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def all_reduce_metrics(sums: dict[str, float], ctx: StepContext) -> dict[str, float]:
    """Sum per-rank totals (counts, correct predictions, losses) across processes."""
    keys = sorted(sums)
    t = torch.tensor([float(sums[k]) for k in keys], dtype=torch.float64, device=ctx.device)
    t = all_reduce_sum(t, ctx.dist)
    return dict(zip(keys, t.tolist()))
