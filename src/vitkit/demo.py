"""`vitkit demo`: the main job end to end on a 2-core CPU, with no downloads.

Writes the 1,797 handwritten digits that ship with vitkit as a 32x32 grey ImageFolder, trains the default
classification preset on it with `vitkit train`'s engine and recipe, then reloads the exported model, draws
its attention over an unseen digit and classifies a few more.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from .checkpoint.load import from_pretrained
from .classify import attention_maps, predict
from .data.digits import write_digits_imagefolder
from .train.config import TrainConfig
from .train.launch import run_train


def _ascii(path: Path) -> list[str]:
    shades = " .:-=+*#%@"
    with Image.open(path) as im:
        small = np.asarray(im.convert("L").resize((8, 8), Image.Resampling.BOX), dtype=np.int32)
    return ["".join(shades[min(9, v * 10 // 256)] * 2 for v in row) for row in small]


def run_demo(out_dir: str | Path = "vitkit-demo", epochs: int = 30, seed: int = 0) -> dict:
    out = Path(out_dir)
    data, run = out / "digits32", out / "run"
    if data.exists():
        shutil.rmtree(data)
    write_digits_imagefolder(data, size=32, seed=seed)
    print(f"vitkit demo: wrote the built-in digits to {data} (32x32 grey ImageFolder, stratified 80/20)")
    t0 = time.perf_counter()
    cfg = replace(TrainConfig(), epochs=epochs, seed=seed)
    best = run_train(task="classification", data=data, out=run, cfg=cfg, overwrite=True)
    minutes = (time.perf_counter() - t0) / 60

    model = from_pretrained(run / "model")
    val_images = sorted((data / "val").glob("*/*.png"))
    picks = [next(p for p in val_images if p.parent.name == d) for d in ("3", "5", "8", "9")]
    att = attention_maps(model, picks[0], run / "attention.png")
    print(f"\nval top-1 {best['val_top1']:.3f} ({best['weights']} weights, epoch {best['epoch']}) after "
          f"{minutes:.1f} min; model in {run / 'model'}")
    print(f"pictures: {run / 'training_curves.png'}, {run / 'confusion_matrix.png'}, {run / 'attention.png'}")
    print("\nunseen digits, predicted by the reloaded model (top-2):")
    for path, preds in zip(picks, predict(model, picks, top_k=2)):
        guess = ", ".join(f"{p['label']} {p['score']:.2f}" for p in preds)
        for r, row in enumerate(_ascii(path)):
            print(f"  {row}" + (f"   true {path.parent.name}  predicted: {guess}" if r == 3 else ""))
        print()
    summary = {"val_top1": best["val_top1"], "minutes": round(minutes, 2), "model_dir": str(run / "model"),
               "attention_label": att["label"]}
    (out / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
