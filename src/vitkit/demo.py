"""`vitkit demo`: the whole ViT story in about a minute on a laptop CPU, with no downloads.

Trains `vit_pico_patch2_16` on the 1,797 handwritten 8x8 digits that ship with vitkit (the UCI / scikit-learn
set, upsampled to 16x16), saves it in vitkit's format, reloads it, checks the reload is exact, and classifies
digits it never saw.
"""

from __future__ import annotations

import math
import time
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint.load import from_pretrained
from .registry import create_model

DIGIT_LABELS = tuple(str(i) for i in range(10))


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The shipped digits: images uint8 [1797, 8, 8] with values 0..16, labels uint8 [1797]."""
    with resources.files("vitkit").joinpath("assets/digits.npz").open("rb") as f:
        data = np.load(f, allow_pickle=False)
        return data["images"], data["labels"]


def digits_to_tensor(images: np.ndarray, size: int = 16) -> torch.Tensor:
    """uint8 [N, 8, 8] (0..16) -> float [N, 1, size, size] in [0, 1]."""
    x = torch.from_numpy(images.astype(np.float32) / 16.0)[:, None]  # [N, 1, 8, 8]
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def _random_shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by up to max_shift pixels (zero fill): cheap augmentation for tiny data."""
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)  # [N, C, h + 2s, w + 2s]
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), generator=gen)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # [N, h, 1]
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # [N, 1, w]
    return padded[torch.arange(n)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)  # [N, C, h, w]


def _ascii(img8: np.ndarray) -> list[str]:
    shades = " .:-=+*#%@"
    return ["".join(shades[min(9, int(v) * 10 // 17)] * 2 for v in row) for row in img8]


def run_demo(out_dir: str | Path = "vitkit-demo", epochs: int = 30, seed: int = 0, batch_size: int = 64) -> dict:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    images, labels = load_digits()
    order = np.random.default_rng(seed).permutation(len(labels))
    val_idx, train_idx = order[:360], order[360:]
    x_all = (digits_to_tensor(images) - 0.5) / 0.5  # normalised with the model's mean = std = 0.5
    y_all = torch.from_numpy(labels.astype(np.int64))
    x_train, y_train, x_val, y_val = x_all[train_idx], y_all[train_idx], x_all[val_idx], y_all[val_idx]

    model = create_model("vit_pico_patch2_16", in_chans=1, num_classes=10, mean=(0.5,), std=(0.5,),
                         labels=DIGIT_LABELS, drop_path_rate=0.05)
    print(f"vitkit demo: ViT {model.config.embed_dim}-dim x {model.config.depth} blocks, "
          f"{model.num_params / 1e6:.2f}M parameters, {len(train_idx)} train / {len(val_idx)} val digits")
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and n not in model.no_weight_decay()]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1 or n in model.no_weight_decay()]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-3)
    steps_per_epoch = math.ceil(len(train_idx) / batch_size)
    total = epochs * steps_per_epoch
    warmup = max(1, min(2 * steps_per_epoch, total // 5))

    def lr_factor(step: int) -> float:  # linear warmup, then cosine to zero
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)

    def accuracy(m: torch.nn.Module) -> float:
        m.eval()
        with torch.no_grad():
            return (m(x_val).argmax(-1) == y_val).float().mean().item()

    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(len(train_idx), generator=gen)
        running, seen = 0.0, 0
        for i in range(0, len(perm), batch_size):
            idx = perm[i : i + batch_size]
            xb = _random_shift(x_train[idx], 1, gen)
            loss = F.cross_entropy(model(xb), y_train[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            running += loss.item() * len(idx)
            seen += len(idx)
        if epoch == 1 or epoch % 5 == 0 or epoch == epochs:
            elapsed = time.perf_counter() - t0
            print(f"epoch {epoch:3d}/{epochs}  loss {running / seen:.3f}  val top-1 {accuracy(model):.3f}  "
                  f"({epoch * len(train_idx) / elapsed:.0f} img/s)")
    val_top1 = accuracy(model)

    out = Path(out_dir) / "model"
    model.save_pretrained(out)
    reloaded = from_pretrained(out)
    with torch.no_grad():
        same = torch.equal(model.eval()(x_val[:32]), reloaded(x_val[:32]))
    print(f"saved to {out}; reloaded with vitkit.from_pretrained: outputs identical = {same}")

    print("\nunseen digits, with the reloaded model's top-2:")
    shown = list({int(labels[i]): k for k, i in reversed(list(enumerate(val_idx[:60])))}.values())[:4]
    probs = reloaded.predict_proba(x_val[shown])
    for row_i, k in enumerate(shown):
        top = probs[row_i].topk(2)
        art = _ascii(images[val_idx[k]])
        guess = ", ".join(f"{DIGIT_LABELS[j]} {p:.2f}" for p, j in zip(top.values.tolist(), top.indices.tolist()))
        for r, row in enumerate(art):
            tail = f"   true {labels[val_idx[k]]}  predicted: {guess}" if r == 3 else ""
            print(f"  {row}{tail}")
        print()
    print(f"val top-1 {val_top1:.3f} after {epochs} epochs in {time.perf_counter() - t0:.0f}s")
    return {"val_top1": val_top1, "reload_identical": same, "model_dir": str(out)}
