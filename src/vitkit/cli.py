"""The `vitkit` command line: a thin front door over the Python API (no logic of its own).

Bad input prints one `vitkit CMD: error: ...` line to stderr and exits 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .errors import VitkitError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse already prints `prog: error: msg` and exits 2; keep that for our own errors too."""


def _cmd_scenes(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .data import scenes

    if args.blank_from:
        if not (Path(args.blank_from) / "val2014").is_dir():
            raise VitkitError(f"--blank-from {args.blank_from}: not a VQA folder with a val2014/ image directory")
        summary = scenes.blank_image_copy(args.blank_from, args.out)
    elif args.nlvr2:
        summary = scenes.generate_nlvr2_scenes(args.out, num_train=args.num_train or 2000, num_dev=args.num_val or 400,
                                               image_size=args.image_size, seed=args.seed)
    else:
        summary = scenes.generate_vqa_scenes(
            args.out, num_train=args.num_train or 3000, num_val=args.num_val or 500,
            questions_per_image=args.questions_per_image, image_size=args.image_size, seed=args.seed,
            noise=args.noise)
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, dict)}, default=str))
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    import torch

    from .registry import build_model, list_models, model_entry

    names = list_models(args.pattern)
    if not names:
        raise VitkitError(f"no registered model matches {args.pattern!r}")
    rows = [("name", "params", "image", "patch", "dim", "depth", "heads", "description")]
    for n in names:
        e = model_entry(n)
        c = e.config
        size = c.img_size if isinstance(c.img_size, int) else "x".join(map(str, c.img_size))
        with torch.device("meta"):  # count parameters without allocating or initialising them
            params = build_model(c).num_params
        rows.append((n, f"{params / 1e6:.1f}M", str(size), str(c.patch_size), str(c.embed_dim), str(c.depth),
                     str(c.num_heads), e.description))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)) + "  " + r[-1])
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .registry import from_pretrained
    from .utils.files import check_output_dir

    check_output_dir(args.dest)  # before the (possibly long) conversion: a file in the way, a missing folder
    model = from_pretrained(args.source, model=args.model)
    out = model.save_pretrained(args.dest)
    print(f"converted {args.source} -> {out} ({model.model_type}, {model.num_params / 1e6:.2f}M parameters)")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    _log_to_stderr()
    run_demo(out_dir=args.out, epochs=args.epochs, seed=args.seed, vilt_epochs=args.vilt_epochs,
             dit_epochs=args.dit_epochs)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from .train.config import TrainConfig
    from .train.launch import run_train, train_config_from_args

    if args.resume is None and (args.data is None or args.out is None):
        raise VitkitError("--data and --out are required (or --resume RUN_DIR to continue a run)")
    if args.resume is not None and args.out is not None and Path(args.out) != Path(args.resume):
        raise VitkitError(f"--resume {args.resume} continues the run in that folder; --out {args.out} names another")
    _log_to_stderr()
    if args.resume is not None:  # the run's own settings, and what the user asks to change (checked there)
        options = ("task", "data", "model", "pretrained", "img_size", "init_from", "skip_bad_images",
                   *(f.name for f in dataclasses.fields(TrainConfig)))
        changes = {k: getattr(args, k) for k in options if getattr(args, k, None) not in (None, False)}
        best = run_train(task=None, data=None, out=args.resume, resume=True, overwrite=args.overwrite,
                         changes=changes)
    else:
        best = run_train(
            task=args.task, data=args.data, out=args.out, model=args.model, pretrained=args.pretrained,
            img_size=args.img_size, overwrite=args.overwrite, skip_bad_images=args.skip_bad_images,
            init_from=args.init_from, cfg=train_config_from_args(args),
        )
    out = args.resume or args.out
    shown = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in best.items())
    print(f"best: {shown}\nmodel: {out}/model  metrics: {out}/metrics.json")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    from .models.dit import DiT
    from .models.vilt.model import ViLT
    from .registry import from_pretrained
    from .train.evaluate import evaluate_classifier, evaluate_vilt

    model = from_pretrained(args.model)
    if isinstance(model, DiT):
        return _eval_dit(model, args)
    if args.classifier:
        raise VitkitError("--classifier judges a diffusion model's samples; this model is a "
                          f"{type(model).__name__}")
    if isinstance(model, ViLT):
        metrics = evaluate_vilt(model, args.data, batch_size=args.batch_size, device=args.device,
                                skip_bad_images=args.skip_bad_images, source=args.model)
        if args.json:
            print(json.dumps(metrics))
        else:
            print("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()))
        return 0
    metrics = evaluate_classifier(model, args.data, batch_size=args.batch_size, device=args.device,
                                  skip_bad_images=args.skip_bad_images)
    if args.json:
        print(json.dumps({k: v for k, v in metrics.items() if k != "val_per_class"}))
        return 0
    print(f"{metrics['num_samples']} val images: top-1 {metrics['val_top1']:.4f}  top-5 {metrics['val_top5']:.4f}  "
          f"loss {metrics['val_loss']:.4f}")
    for name, acc in metrics["val_per_class"].items():
        print(f"  {name:<24} {acc:.4f}")
    return 0


def _eval_dit(model: object, args: argparse.Namespace) -> int:
    import json

    from .diffusion import load_vae
    from .inference.dit import judge_samples
    from .registry import from_pretrained
    from .train.evaluate import evaluate_dit
    from .utils.device import resolve_device

    vae = load_vae(args.vae, device=resolve_device(args.device)) if args.vae else None
    metrics = evaluate_dit(model, args.data, batch_size=args.batch_size, device=args.device,
                           skip_bad_images=args.skip_bad_images, vae=vae, trust_vae=args.trust_vae)
    if args.classifier:
        judged = judge_samples(model, from_pretrained(args.classifier), per_class=args.per_class,
                               cfg_scale=args.cfg_scale, steps=args.steps, method=args.method, seed=args.seed,
                               data_dir=args.data, device=args.device, vae=vae, trust_vae=args.trust_vae)
        metrics.update({k: v for k, v in judged.items() if k not in ("samples", "sample_labels")})
    if args.json:
        print(json.dumps(metrics))
        return 0
    print("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
                    if not isinstance(v, dict)))
    for name, acc in metrics.get("sample_accuracy_per_class", {}).items():
        print(f"  {name:<24} {acc:.4f}")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from pathlib import Path

    from PIL import Image

    from .diffusion.sampling import draw_images, load_vae
    from .models.dit import DiT
    from .registry import from_pretrained
    from .utils.device import resolve_device
    from .utils.files import atomic_save_image, check_output_dir, check_output_file
    from .utils.viz import save_sample_grid

    if (args.out is None) == (args.out_dir is None):
        raise VitkitError("give exactly one of --out GRID.png or --out-dir DIR")
    if args.out is not None:
        check_output_file(args.out)
    else:
        check_output_dir(args.out_dir)
    model = from_pretrained(args.model)
    if not isinstance(model, DiT):
        raise VitkitError(f"{args.model} is a {type(model).__name__}, not a diffusion model (DiT)")
    names = list(model.config.labels or [str(i) for i in range(model.config.num_classes)])
    wanted = []
    for label in args.class_label:
        if label in names:
            wanted.append(names.index(label))
        elif label.lstrip("-").isdigit() and 0 <= int(label) < model.config.num_classes:
            wanted.append(int(label))
        else:
            raise VitkitError(f"--class-label {label!r} is not one of the model's classes ({', '.join(names[:20])}"
                              f"{', ...' if len(names) > 20 else ''}) or an index below {model.config.num_classes}")
    labels = [c for c in wanted for _ in range(args.num)]
    dev = resolve_device(args.device)
    model = model.to(dev)
    images = draw_images(model, labels, batch_size=args.batch_size, seed=args.seed, device=dev,
                         vae=load_vae(args.vae, device=dev) if args.vae else None, trust_vae=args.trust_vae,
                         cfg_scale=args.cfg_scale, steps=args.steps, method=args.method,
                         guidance_channels=args.guidance_channels)
    if args.out is not None:
        several = len(wanted) > 1
        save_sample_grid(images, Path(args.out), ncol=args.num if several else min(args.num, 10),
                         row_labels=[names[c] for c in wanted] if several else None)
        print(f"wrote {len(images)} samples to {args.out}")
        return 0
    out_dir = Path(args.out_dir)
    out_dir.mkdir(exist_ok=True)
    for i, (c, im) in enumerate(zip(labels, images)):
        atomic_save_image(out_dir / f"{names[c]}_{i:05d}.png", Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im))
    print(f"wrote {len(images)} samples to {out_dir}/")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from .inference.classify import expand_image_paths, predict
    from .inference.vilt import processor_for, vqa
    from .models.vilt.model import ViLT
    from .registry import from_pretrained

    model = from_pretrained(args.model)
    if type(model).__name__ == "DiT":
        raise VitkitError(f"{args.model} is a diffusion model: draw images with `vitkit sample`")
    if isinstance(model, ViLT):
        if model.config.task != "vqa":
            raise VitkitError(f"{args.model} is a ViLT with task {model.config.task!r}; predict needs a VQA model")
        if args.question is None:
            raise VitkitError(f"{args.model} is a VQA model: pass --question")
        _check_text_option("--question", args.question)
    elif args.question is not None:
        raise VitkitError(f"--question needs a ViLT VQA model; {args.model} is an image classifier")
    paths = expand_image_paths(args.image)
    if isinstance(model, ViLT):  # answers scored with sigmoids (VQA is trained with BCE); see vitkit.vqa
        vocab = Path(args.model) / "vocab.txt"  # a trained or transformers directory's own vocabulary, if any
        processor = processor_for(model, vocab if vocab.is_file() else None)
        results = vqa(model, paths, args.question, top_k=args.top_k, processor=processor)
    else:
        results = predict(model, paths, top_k=args.top_k)
    if args.json:
        if len(paths) == 1:
            print(json.dumps({"predictions": results[0]}))
        else:
            print(json.dumps({"results": [{"image": str(p), "predictions": r} for p, r in zip(paths, results)]}))
        return 0
    for p, r in zip(paths, results):
        preds = ", ".join(f"{x['label']} {x['score']:.2f}" for x in r)
        print(f"{p}: {preds}" if len(paths) > 1 else preds)
    return 0


def _cmd_attention(args: argparse.Namespace) -> int:
    from .inference.classify import attention_maps
    from .registry import from_pretrained
    from .utils.files import check_output_file

    check_output_file(args.out)  # before loading and computing anything
    model = from_pretrained(args.model)
    if not hasattr(model, "forward_with_attention"):
        raise VitkitError(f"{args.model} is not a ViT image classifier")
    result = attention_maps(model, args.image, args.out)
    which = "[CLS] attention" if model.num_prefix_tokens else "attention (mean over tokens)"
    print(f"{args.out}: attention rollout and last-layer {which} (predicted {result['label']} "
          f"{result['score']:.2f})")
    return 0


def _cmd_align(args: argparse.Namespace) -> int:
    import json

    from .inference.align import align
    from .utils.files import check_output_file

    _check_text_option("--text", args.text)
    check_output_file(args.out)
    summary = align(args.model, args.image, args.text, args.out, words=args.words, max_words=args.max_words,
                    device=args.device)
    if args.json:
        print(json.dumps(summary))
        return 0
    result = ""
    if summary["answer"]:
        result = "; answer: " + ", ".join(f"{a['label']} {a['score']:.2f}" for a in summary["answer"])
    elif summary["itm_score"] is not None:
        result = f"; image-text match {summary['itm_score']:.2f}"
    print(f"{summary['out']}: word-patch alignment of {', '.join(summary['shown']) or 'no words'} and the "
          f"question's image attention{result}")
    return 0


def _check_text_option(flag: str, text: str) -> None:
    """A question or caption from the command line: not blank, and text. Bytes that are not UTF-8 reach Python as
    lone surrogates (U+DC80..U+DCFF, PEP 383); said here rather than failing later in a font or tokenizer."""
    if not text.strip():
        raise VitkitError(f"{flag} is empty; give the text")
    bad = next((i for i, ch in enumerate(text) if "\udc80" <= ch <= "\udcff"), None)
    if bad is not None:
        byte = ord(text[bad]) - 0xDC00
        raise VitkitError(f"{flag} is not UTF-8 text (byte 0x{byte:02x} at character {bad}); pass it in UTF-8")


def _log_to_stderr() -> None:
    import logging

    class StderrHandler(logging.StreamHandler):
        """Writes to whatever sys.stderr is at the time (it may be swapped, e.g. by test capture)."""

        def emit(self, record: logging.LogRecord) -> None:
            self.stream = sys.stderr
            super().emit(record)

    logger = logging.getLogger("vitkit")
    if not any(type(h).__name__ == "StderrHandler" for h in logger.handlers):
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _add_train_config_options(p: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field, with its help text; unset options keep the config's defaults."""
    import dataclasses
    import typing

    from .train.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    group = p.add_argument_group("training recipe")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata['help']} (default: {f.default})"
        kind = hints[f.name]
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            continue
        base = next((t for t in typing.get_args(kind) if t is not type(None)), kind) if typing.get_args(kind) else kind
        group.add_argument(flag, type=_positive_int if f.name in ("epochs", "batch_size", "accum_steps") else base,
                           default=None, choices=f.metadata.get("choices"), help=help_text, metavar=f.name.upper())


def build_parser() -> argparse.ArgumentParser:
    from .train.config import TASKS

    parser = _Parser(prog="vitkit", description="Vision transformers (ViT, hybrid ViT, ViLT, DiT) in PyTorch.")
    parser.add_argument("--version", action="version", version=f"vitkit {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--debug", action="store_true", help="show the full traceback on errors")
        p.set_defaults(func=fn)
        return p

    p = add("demo", _cmd_demo, "Train the default ViT preset on the built-in handwritten digits (a few minutes "
            "on a 2-core CPU, no downloads), then draw its attention and classify digits it has not seen; then "
            "train a small ViLT on generated scenes and answer questions about scenes it has not seen; then a small "
            "DiT that draws digits, judged by the first model.")
    p.add_argument("--out", default="vitkit-demo", help="directory for the trained model (default: %(default)s)")
    p.add_argument("--epochs", type=_positive_int, default=30, help="training epochs (default: %(default)s)")
    p.add_argument("--vilt-epochs", type=int, default=20, help="epochs of the ViLT part on generated scenes; 0 skips "
                   "it (default: %(default)s)")
    p.add_argument("--dit-epochs", type=int, default=20, help="epochs of the DiT part on the digits; 0 skips it "
                   "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")

    p = add("train", _cmd_train, "Train or fine-tune a model. Without --model, a small CPU preset suited to the "
            "task is used (classification: vit_nano_patch4_32 at 32x32, grey or colour from the data; vqa, "
            "pretrain, retrieval, nlvr2: vilt_nano_patch8_64, a 4-layer ViLT for 64-pixel images; diffusion: "
            "dit_nano_patch4_32, a pixel-space DiT for 32x32 images).")
    p.add_argument("--task", choices=TASKS, help="what to train (default: classification)")
    p.add_argument("--data", help="dataset folder. classification: an ImageFolder (train/<class>/..., "
                   "val/<class>/...), CIFAR-10/100 python batches, or MNIST / Fashion-MNIST IDX files; vqa: the "
                   "VQAv2 layout (train2014 / val2014 questions, annotations, images); pretrain, retrieval: a "
                   "Karpathy split json (dataset_coco.json) or COCO captions json with its images; nlvr2: "
                   "train.json / dev.json with the official image naming; diffusion: an ImageFolder (class "
                   "labels from the folder names)")
    p.add_argument("--out", help="run directory: checkpoint.pt, metrics.json(l), curves, model/")
    p.add_argument("--model", help="registered name (see `vitkit models`) or any checkpoint source to fine-tune")
    p.add_argument("--pretrained", help="weights for --model NAME: any source from_pretrained takes (the head is "
                   "reset to the data's classes, position embeddings resampled to --img-size)")
    p.add_argument("--img-size", type=_positive_int, help="input resolution (default: the model's; 32 for the "
                   "CPU preset); for ViLT the shorter image side")
    p.add_argument("--init-from", help="ViLT tasks: a pretrained ViT (any from_pretrained source) for the "
                   "encoder of a ViLT built from a registered name, as ViLT's pretraining starts")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run exactly where it stopped, with "
                   "its own settings; --epochs (to extend it), --data (a moved copy of the same files), --workers, "
                   "--device, --progress and --log-every may change, other options are refused")
    p.add_argument("--overwrite", action="store_true", help="replace a previous run in --out")
    p.add_argument("--skip-bad-images", action="store_true", help="skip unreadable images (listed) instead of "
                   "stopping at the first")
    _add_train_config_options(p)

    p = add("eval", _cmd_eval, "Evaluate a trained model on the val split of a dataset: classifiers get top-1, "
            "top-5, loss and per-class accuracy; ViLT models their task's metric (VQA: the official VQA accuracy "
            "on val2014, overall and per answer type; NLVR2: dev accuracy; retrieval: R@1/5/10).")
    p.add_argument("--model", required=True, help="model directory (e.g. RUN_DIR/model) or any checkpoint source")
    p.add_argument("--data", required=True, help="dataset folder, as for train")
    p.add_argument("--json", action="store_true", help="print one JSON object with the metrics.json keys")
    p.add_argument("--batch-size", type=_positive_int, default=128, help="(default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default: %(default)s)")
    p.add_argument("--skip-bad-images", action="store_true", help="skip unreadable images")
    g = p.add_argument_group("diffusion models (DiT)", "with --classifier, also draw --per-class guided samples "
                             "of every class and report how often the classifier recognises the requested class "
                             "and the Frechet distance to the real val images in its feature space")
    g.add_argument("--classifier", help="a classifier trained on the same classes (e.g. a vitkit train "
                   "--task classification run's model/)")
    g.add_argument("--per-class", type=_positive_int, default=100, help="samples per class (default: %(default)s)")
    g.add_argument("--cfg-scale", type=float, default=4.0, help="classifier-free guidance scale "
                   "(default: %(default)s)")
    g.add_argument("--steps", type=_positive_int, default=50, help="sampling steps (default: %(default)s)")
    g.add_argument("--method", choices=("ddim", "ddpm"), default="ddim", help="sampler (default: %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    _add_vae_options(g)

    p = add("sample", _cmd_sample, "Draw images from a class-conditional diffusion model (DiT) with "
            "classifier-free guidance: one grid PNG (--out) or one PNG per sample (--out-dir).")
    p.add_argument("--model", required=True, help="DiT model directory (e.g. RUN_DIR/model) or checkpoint source")
    p.add_argument("--class-label", required=True, nargs="+", metavar="L", help="class name(s) or index(es); "
                   "--num samples of each (a grid gets one row per class)")
    p.add_argument("--num", type=_positive_int, default=8, help="samples per class (default: %(default)s)")
    p.add_argument("--cfg-scale", type=float, default=4.0, help="classifier-free guidance scale; 1 is the "
                   "conditional model alone (default: %(default)s, as DiT's sample.py)")
    p.add_argument("--steps", type=_positive_int, default=250, help="sampling steps, respaced from the 1,000 "
                   "training steps (default: %(default)s)")
    p.add_argument("--method", choices=("ddpm", "ddim"), default="ddpm", help="sampler (default: %(default)s)")
    p.add_argument("--guidance-channels", type=_positive_int, help="guide only the first N output channels (the "
                   "original DiT guides 3 of its 4 latent channels: pass 3 to reproduce it exactly; default: all)")
    _add_vae_options(p)
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="(default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default: %(default)s)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--out", help="one grid PNG")
    out.add_argument("--out-dir", help="a directory for one PNG per sample")

    p = add("predict", _cmd_predict, "Top-k labels with probabilities for one image, several, or a folder.")
    p.add_argument("--model", required=True, help="model directory (e.g. RUN_DIR/model) or any checkpoint source")
    p.add_argument("--image", required=True, nargs="+", help="image file(s) or folder(s)")
    p.add_argument("--question", help="a question about the image (VQA models)")
    p.add_argument("--top-k", type=_positive_int, default=5, help="how many labels (default: %(default)s)")
    p.add_argument("--json", action="store_true", help='print {"predictions": [{"label": ..., "score": ...}]}')

    p = add("attention", _cmd_attention, "Attention rollout (Abnar & Zuidema 2020) and the last layer's [CLS] "
            "attention of a ViT (for a mean-pooled ViT without [CLS]: the mean over every token's attention), "
            "overlaid on an image.")
    p.add_argument("--model", required=True, help="model directory or any checkpoint source")
    p.add_argument("--image", required=True, help="image file")
    p.add_argument("--out", required=True, help="output PNG")

    p = add("align", _cmd_align, "ViLT word-patch alignment: each word's IPOT transport plan over the image "
            "patches (as Figure 5 of the ViLT paper) and the text's last-layer image attention, overlaid on the "
            "image; with the VQA answer or image-text match score.")
    p.add_argument("--model", required=True, help="ViLT model directory or any checkpoint source")
    p.add_argument("--image", required=True, help="image file")
    p.add_argument("--text", required=True, help="question or caption")
    p.add_argument("--out", required=True, help="output PNG")
    p.add_argument("--words", nargs="+", metavar="WORD", help="words of the text to draw (default: the first "
                   "--max-words words)")
    p.add_argument("--max-words", type=_positive_int, default=8, help="(default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print a JSON summary: tokens, words, answer, out, ...")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default: %(default)s)")

    p = add("convert", _cmd_convert, "Convert a checkpoint (timm, Hugging Face, JAX .npz, hf-hub:ORG/NAME) "
            "to vitkit's format (config.json + model.safetensors).")
    p.add_argument("source", help="checkpoint file or directory, or hf-hub:<org>/<name>")
    p.add_argument("dest", help="output directory")
    p.add_argument("--model", help="architecture name, needed for bare weight files (see `vitkit models`)")

    p = add("scenes", _cmd_scenes, "Generate a vision-language dataset of 64x64 scenes of coloured shapes, no "
            "downloads: VQAv2 layout with COCO / Karpathy captions (default), NLVR2 statement pairs (--nlvr2), or "
            "a blank-image copy of a VQA folder's val split (--blank-from) to check a model reads the picture.")
    p.add_argument("out", help="output directory")
    p.add_argument("--num-train", type=_positive_int, help="training images (VQA: 3000) or statements (NLVR2: 2000)")
    p.add_argument("--num-val", type=_positive_int, help="validation images (VQA: 500) or statements (NLVR2: 400)")
    p.add_argument("--questions-per-image", type=_positive_int, default=7, help="(default: %(default)s)")
    p.add_argument("--image-size", type=_positive_int, default=64, help="(default: %(default)s)")
    p.add_argument("--noise", type=float, default=0.1, help="chance that an annotator gives a wrong answer "
                   "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    p.add_argument("--nlvr2", action="store_true", help="write NLVR2 train.json / dev.json and image pairs instead")
    p.add_argument("--blank-from", metavar="VQA_DIR", help="copy VQA_DIR's val2014 questions with blank images")

    p = add("models", _cmd_models, "List registered model names.")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'vit_base*' (default: all)")
    return parser


def _add_vae_options(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--vae", help="latent DiTs: the diffusers AutoencoderKL (hub id or directory) that decodes "
                   "the samples (default: the model's config.vae when it is stabilityai/sd-vae-ft-mse or -ema, "
                   "the official DiT VAEs; needs diffusers)")
    p.add_argument("--trust-vae", action="store_true", help="load the VAE the model's config.json names even when "
                   "it is not one of the official DiT VAEs (a checkpoint does not choose what gets downloaded "
                   "otherwise)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _version() -> str:
    from . import __version__

    return __version__


PATH_OPTIONS = ("data", "out", "model", "image", "resume", "pretrained", "init_from", "src", "dest", "blank_from",
                "out_dir", "classifier", "vae")


def _refuse_empty_paths(args: argparse.Namespace) -> None:
    """An empty path would silently mean the current directory (training into it, predicting every image below
    it): refuse it instead."""
    for name in PATH_OPTIONS:
        value = getattr(args, name, None)
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and not v.strip() for v in values):
            flag = name if name in ("src", "dest") else "--" + name.replace("_", "-")
            raise VitkitError(f"{flag} is empty; give a path")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _refuse_empty_paths(args)
        return int(args.func(args) or 0)
    except VitkitError as e:
        if args.debug:
            raise
        print(f"vitkit {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # the system refused a read or write vitkit did not wrap (disk full, permissions, ...)
        if args.debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        print(f"vitkit {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"vitkit {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_line(e: BaseException) -> str:
    """The message on one line (a few errors list items on lines of their own: kept, but joined)."""
    text = ""
    for line in (line.strip() for line in str(e).splitlines()):
        if line:
            text += line if not text else (" " if text.endswith(":") else "; ") + line
    return text


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
