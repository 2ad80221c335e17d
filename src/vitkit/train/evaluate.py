"""`vitkit eval`: a model's metrics on a dataset's validation split, computed by the same task code that training
uses (so the numbers equal metrics.json for the same weights and data).

- `evaluate_classifier`: top-1, top-5, loss and per-class accuracy of an image classifier;
- `evaluate_dit`: the diffusion loss of a DiT at the training task's seeded timesteps and noise;
- `evaluate_vilt`, by the ViLT's task: VQA head: the official VQA accuracy on `val2014` (overall and per answer
  type), `val_vqa_accuracy`;
- NLVR2 head: accuracy on `dev`, `val_accuracy`;
- retrieval head (or ITM head): text / image retrieval R@1/5/10 over up to `max_images` validation images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..errors import VitkitError
from ..inference.vilt import processor_for
from ..utils.device import resolve_device


def evaluate_vilt(model: nn.Module, data_dir: str | Path, *, batch_size: int = 64, device: str = "auto",
                  skip_bad_images: bool = False, source: str | Path | None = None,
                  max_images: int = 1000) -> dict[str, Any]:
    """The task metrics of a ViLT (`model.config.task`) on the validation split of `data_dir`, computed as training
    reports them: VQA accuracy (vqa), accuracy (nlvr2), R@1/5/10 both ways (retrieval, itm).

    Args:
        model: the ViLT.
        data_dir: the dataset, in the layout its task reads (VQAv2, NLVR2, COCO / Karpathy captions).
        batch_size: examples per forward.
        device: "auto", "cpu", "cuda", ...
        skip_bad_images: drop examples whose image cannot be read instead of stopping with its name.
        source: the directory the model was loaded from; its own vocab.txt is used when it has one.
        max_images: retrieval: the validation images scored all against all (time grows with its square).
    """
    from ..models.vilt.model import ViLT
    from ..utils.distributed import DistInfo
    from .engine import StepContext

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
            from ..data.vqa import load_vqa_split
            from ..data.vqa_dataset import ImageGroups, load_vqa_data
            from .tasks.vqa import VQATask

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
            from ..data.nlvr2 import load_nlvr2
            from ..data.nlvr2_dataset import NLVR2Dataset
            from .tasks.nlvr2 import NLVR2Task

            ds = NLVR2Dataset(load_nlvr2(data_dir, "dev"), processor.config, processor.tokenizer,
                              skip_bad=skip_bad_images)
            t = NLVR2Task(processor=processor)
            metrics = t.evaluate(model, DataLoader(ds, batch_size=batch_size, collate_fn=t.collate), ctx)
        elif task in ("retrieval", "itm"):
            from ..data.captions import find_caption_files
            from ..data.vl import load_caption_pairs
            from .tasks.retrieval import retrieval_metrics

            _, val = find_caption_files(data_dir)
            ds = load_caption_pairs(val, processor.config, processor.tokenizer, skip_bad=skip_bad_images)
            metrics = retrieval_metrics(model, ds, processor, ctx, head=task, max_images=max_images)
        else:
            raise VitkitError(f"no evaluation for a ViLT with task {task!r} (vqa, nlvr2, retrieval, itm)")
    return {**{k: v for k, v in metrics.items() if not k.startswith("_")}, "num_samples": len(ds)}


def evaluate_classifier(model: nn.Module, data_dir: str | Path, *, batch_size: int = 128, device: str = "auto",
                        skip_bad_images: bool = False) -> dict[str, Any]:
    """Top-1, top-5, loss and per-class accuracy of `model` on the val split of `data_dir`.

    Args:
        model: a vitkit image classifier whose config holds its preprocessing and class names.
        data_dir: an ImageFolder (`val/<class>/...`), CIFAR or MNIST directory.
        batch_size: images per forward.
        device: "auto", "cpu", "cuda", ...
        skip_bad_images: drop images that cannot be read instead of stopping with their name.
    """
    from ..data.classification import load_classification_data
    from ..data.transforms import DataConfig
    from ..utils.distributed import DistInfo
    from .engine import StepContext
    from .tasks.classification import ClassificationTask

    cfg = DataConfig.from_model(model)
    data = load_classification_data(data_dir, cfg, randaugment=None, skip_bad_images=skip_bad_images)
    labels = list(model.config.labels or [])
    if labels and labels != list(data.classes):
        raise VitkitError(f"the model was trained on classes {labels[:6]}..., but {data_dir} has "
                          f"{list(data.classes)[:6]}...")
    dev = resolve_device(device)
    model = model.to(dev).eval()
    task = ClassificationTask(classes=list(data.classes))
    loader = DataLoader(data.val, batch_size=batch_size, shuffle=False)
    metrics = task.evaluate(model, loader, StepContext(device=dev, dist=DistInfo()))
    return {**{k: v for k, v in metrics.items() if not k.startswith("_")}, "val_per_class": metrics["_per_class"],
            "num_samples": len(data.val)}


def evaluate_dit(model: nn.Module, data_dir: str | Path, *, batch_size: int = 64, device: str = "auto",
                 skip_bad_images: bool = False, vae: Any = None, trust_vae: bool = False) -> dict[str, Any]:
    """val_loss / val_mse / val_vb of a DiT on `data_dir`'s validation split (as training reports them: fixed,
    seeded timesteps and noise per image).

    Args:
        model: the DiT.
        data_dir: an ImageFolder whose folder names are the DiT's classes.
        batch_size: images per forward.
        device: "auto", "cpu", "cuda", ...
        skip_bad_images: drop images that cannot be read instead of stopping with their name.
        vae: the VAE of a latent DiT (default: the one its config names, see `diffusion.config_vae`).
        trust_vae: load a VAE the config names even when it is not one of the official DiT VAEs.
    """
    from ..data.classification import load_classification_data
    from ..data.transforms import EvalTransform
    from ..diffusion.gaussian import create_diffusion
    from ..diffusion.sampling import config_vae
    from ..inference.dit import check_dit, image_data_config
    from ..utils.distributed import DistInfo
    from .engine import StepContext
    from .tasks.diffusion import DiffusionTask, WithIndex

    check_dit(model)
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise VitkitError(f"data directory not found: {data_dir}")
    c = model.config
    dev = resolve_device(device)
    model = model.to(dev).eval()
    if vae is None:
        vae = config_vae(c, device=dev, trust_vae=trust_vae)
    data_cfg = image_data_config(c, vae)
    ds = load_classification_data(data_dir, data_cfg, eval_transform=EvalTransform(data_cfg),
                                  train_transform=EvalTransform(data_cfg), skip_bad_images=skip_bad_images)
    if c.labels and list(ds.classes) != list(c.labels):
        raise VitkitError(f"the model's classes {list(c.labels)[:5]}... differ from the data's {ds.classes[:5]}...")
    task = DiffusionTask(classes=list(ds.classes), diffusion=create_diffusion(learn_sigma=c.learn_sigma), vae=vae,
                         latent_scale=c.latent_scale)
    loader = DataLoader(WithIndex(ds.val), batch_size=batch_size, shuffle=False)
    metrics = task.evaluate(model, loader, StepContext(device=dev, dist=DistInfo()))
    return {**metrics, "num_samples": len(ds.val)}
