"""`vitkit eval` for ViLT models: the metric of the model's task on a dataset folder's validation split, computed
by the same task code that training uses (so the numbers equal metrics.json for the same weights and data).

- VQA head: the official VQA accuracy on `val2014` (overall and per answer type), `val_vqa_accuracy`;
- NLVR2 head: accuracy on `dev`, `val_accuracy`;
- retrieval head (or ITM head): text / image retrieval R@1/5/10 over up to `max_images` validation images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from .errors import VitkitError
from .vilt_inference import processor_for


def evaluate_vilt(model: nn.Module, data_dir: str | Path, *, batch_size: int = 64, device: str = "auto",
                  skip_bad_images: bool = False, source: str | Path | None = None,
                  max_images: int = 1000) -> dict[str, Any]:
    """The task metrics of a ViLT (`model.config.task`) on the validation split of `data_dir`."""
    from .models.vilt import ViLT
    from .train.distributed import DistInfo
    from .train.engine import StepContext, resolve_device

    if not isinstance(model, ViLT):
        raise VitkitError(f"expected a ViLT, got a {type(model).__name__}")
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise VitkitError(f"data directory not found: {data_dir}")
    dev = resolve_device(device)
    model = model.to(dev).eval()
    vocab = Path(source) / "vocab.txt" if source is not None else None  # a trained directory's own vocabulary
    processor = processor_for(model, vocab if vocab is not None and vocab.is_file() else None)
    ctx = StepContext(device=dev, dist=DistInfo())
    task = model.config.task
    with torch.no_grad():
        if task == "vqa":
            from .data.vqa import load_vqa_split
            from .train.vqa import ImageGroups, VQATask, load_vqa_data

            answers = list(model.config.labels or ())
            if not answers:
                raise VitkitError("this VQA model has no answer labels (config.labels); cannot score answers")
            ds = load_vqa_data(data_dir, processor.config, processor.tokenizer, split="val2014", answers=answers,
                               skip_bad_images=skip_bad_images, questions=load_vqa_split(data_dir, "val2014"))
            t: Any = VQATask(answers=answers, processor=processor)
            if not model.config.image_attends_text:  # one-way fusion: each image encoded once for its questions
                ds = ImageGroups(ds)
                batch_size = max(1, round(batch_size * len(ds) / ds.num_questions))
            metrics = t.evaluate(model, DataLoader(ds, batch_size=batch_size, collate_fn=t.collate), ctx)
        elif task == "nlvr2":
            from .data.nlvr2 import load_nlvr2
            from .train.nlvr2 import NLVR2Dataset, NLVR2Task

            ds = NLVR2Dataset(load_nlvr2(data_dir, "dev"), processor.config, processor.tokenizer,
                              skip_bad=skip_bad_images)
            t = NLVR2Task(processor=processor)
            metrics = t.evaluate(model, DataLoader(ds, batch_size=batch_size, collate_fn=t.collate), ctx)
        elif task in ("retrieval", "itm"):
            from .data.captions import find_caption_files
            from .data.vl import load_caption_pairs
            from .train.pretrain import retrieval_metrics

            _, val = find_caption_files(data_dir)
            ds = load_caption_pairs(val, processor.config, processor.tokenizer, skip_bad=skip_bad_images)
            metrics = retrieval_metrics(model, ds, processor, ctx, head=task, max_images=max_images)
        else:
            raise VitkitError(f"no evaluation for a ViLT with task {task!r} (vqa, nlvr2, retrieval, itm)")
    return {**{k: v for k, v in metrics.items() if not k.startswith("_")}, "num_samples": len(ds)}
