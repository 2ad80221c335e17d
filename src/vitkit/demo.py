"""`vitkit demo`: the main job end to end on a 2-core CPU, with no downloads.

Writes the 1,797 handwritten digits that ship with vitkit as a 32x32 grey ImageFolder, trains the default
classification preset on it with `vitkit train`'s engine and recipe, then reloads the exported model, draws
its attention over an unseen digit and classifies a few more. Part 2 generates 64x64 scenes of coloured shapes
with questions in the VQAv2 layout, trains the default ViLT preset on them with `vitkit train --task vqa`, prints
its VQA accuracy, answers questions about scenes it has not seen and draws a word-patch alignment. Part 3
trains a small class-conditional DiT on the same digits with `vitkit train --task diffusion`, draws a grid of
guided samples per digit and lets the part-1 ViT say how many of them it recognises as the requested digit.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from .data.digits import write_digits_imagefolder
from .inference.classify import attention_maps, predict
from .registry import from_pretrained
from .train.config import TrainConfig
from .train.launch import run_train
from .utils.files import atomic_write_text

DEMO_SCENES = (1200, 200, 5)  # train images, val images, questions per image
DEMO_VILT_EPOCHS = 20  # one-way fusion encodes each scene once for its questions: ~10 s an epoch on 2 cores
DEMO_DIT_EPOCHS = 20
DEMO_DIT_PER_CLASS = 10  # samples per digit judged by the part-1 classifier


def _ascii(path: Path) -> list[str]:
    shades = " .:-=+*#%@"
    with Image.open(path) as im:
        small = np.asarray(im.convert("L").resize((8, 8), Image.Resampling.BOX), dtype=np.int32)
    return ["".join(shades[min(9, v * 10 // 256)] * 2 for v in row) for row in small]


def run_demo(out_dir: str | Path = "vitkit-demo", epochs: int = 30, seed: int = 0, vilt_epochs: int = DEMO_VILT_EPOCHS,
             scenes: tuple[int, int, int] = DEMO_SCENES, dit_epochs: int = DEMO_DIT_EPOCHS) -> dict:
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
    if vilt_epochs > 0:
        summary["vilt"] = _vilt_demo(out, epochs=vilt_epochs, seed=seed, scenes=scenes)
    if dit_epochs > 0:
        summary["dit"] = _dit_demo(out, data, classifier=model, epochs=dit_epochs, seed=seed)
    atomic_write_text(out / "demo.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _vilt_demo(out: Path, *, epochs: int, seed: int, scenes: tuple[int, int, int]) -> dict:
    """Generated scenes -> VQAv2 layout -> `vitkit train --task vqa` -> answers about unseen scenes + alignment."""
    from .data.scenes import generate_vqa_scenes
    from .data.vqa import load_vqa_split
    from .inference.align import align
    from .inference.vilt import vqa

    data, run = out / "scenes", out / "vqa-run"
    if data.exists():
        shutil.rmtree(data)
    num_train, num_val, per_image = scenes
    generate_vqa_scenes(data, num_train=num_train, num_val=num_val, questions_per_image=per_image, seed=seed,
                        captions=False)
    print(f"\nvitkit demo, part 2: ViLT on generated scenes. Wrote {num_train} + {num_val} 64x64 scenes with "
          f"{per_image} questions each to {data} (the VQAv2 layout)")
    t0 = time.perf_counter()
    best = run_train(task="vqa", data=data, out=run, cfg=replace(TrainConfig(), epochs=epochs, seed=seed),
                     overwrite=True)
    minutes = (time.perf_counter() - t0) / 60
    print(f"\nval VQA accuracy {best['val_vqa_accuracy']:.3f} (yes/no {best.get('val_vqa_yes_no', 0):.3f}, number "
          f"{best.get('val_vqa_number', 0):.3f}, other {best.get('val_vqa_other', 0):.3f}) after {minutes:.1f} min; "
          f"model in {run / 'model'}")
    model = from_pretrained(run / "model")
    questions = load_vqa_split(data, "val2014")
    picks = [questions[i] for i in range(0, len(questions), max(1, len(questions) // 6))][:6]
    print("\nquestions about scenes the model has not seen:")
    for q, ans in zip(picks, vqa(model, [q.image_path for q in picks], [q.question for q in picks], top_k=1)):
        truth = max(set(q.answers), key=q.answers.count)
        print(f"  {q.image_path.name}  {q.question:<40} -> {ans[0]['label']:<8} ({ans[0]['score']:.2f})  "
              f"annotators: {truth}")
    first = picks[0]
    align(model, first.image_path, first.question, run / "align.png")
    print(f"pictures: {run / 'training_curves.png'}, {run / 'align.png'} (word-patch alignment for "
          f"\"{first.question}\")")
    return {"val_vqa_accuracy": best["val_vqa_accuracy"], "minutes": round(minutes, 2),
            "model_dir": str(run / "model")}


def _dit_demo(out: Path, data: Path, *, classifier: object, epochs: int, seed: int) -> dict:
    """The digits -> `vitkit train --task diffusion` -> a grid of guided samples per digit, judged by the part-1 ViT."""
    from .inference.dit import judge_samples
    from .utils.viz import save_sample_grid

    run = out / "dit-run"
    print(f"\nvitkit demo, part 3: a class-conditional DiT (diffusion transformer) learns to draw the digits in {data}")
    t0 = time.perf_counter()
    best = run_train(task="diffusion", data=data, out=run, cfg=replace(TrainConfig(), epochs=epochs, seed=seed),
                     overwrite=True)
    minutes = (time.perf_counter() - t0) / 60
    model = from_pretrained(run / "model")
    judged = judge_samples(model, classifier, per_class=DEMO_DIT_PER_CLASS, cfg_scale=4.0, steps=50, method="ddim",
                           seed=seed)
    grid = run / "digits_grid.png"
    save_sample_grid(judged["samples"], grid, ncol=DEMO_DIT_PER_CLASS,
                     row_labels=judged["sample_labels"][::DEMO_DIT_PER_CLASS])
    print(f"\nval diffusion loss {best['val_loss']:.4f} after {minutes:.1f} min; model in {run / 'model'}")
    print(f"the part-1 ViT recognises {judged['sample_accuracy']:.0%} of {judged['num_generated']} guided samples "
          f"(scale 4, 50 DDIM steps) as the digit asked for; per digit: "
          + " ".join(f"{k}:{v:.0%}" for k, v in judged["sample_accuracy_per_class"].items()))
    print(f"pictures: {grid} (one row per digit), {run / 'training_curves.png'}; draw more with "
          f"`vitkit sample --model {run / 'model'} --class-label 7 --num 16 --out sevens.png`")
    return {"val_loss": best["val_loss"], "sample_accuracy": judged["sample_accuracy"], "minutes": round(minutes, 2),
            "model_dir": str(run / "model")}
