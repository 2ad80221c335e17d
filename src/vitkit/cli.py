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
    from .checkpoint.load import from_pretrained

    model = from_pretrained(args.source, model=args.model)
    out = model.save_pretrained(args.dest)
    print(f"converted {args.source} -> {out} ({model.model_type}, {model.num_params / 1e6:.2f}M parameters)")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(out_dir=args.out, epochs=args.epochs, seed=args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vitkit", description="Vision transformers (ViT, hybrid ViT, ViLT) in PyTorch.")
    parser.add_argument("--version", action="version", version=f"vitkit {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--debug", action="store_true", help="show the full traceback on errors")
        p.set_defaults(func=fn)
        return p

    p = add("demo", _cmd_demo, "Train a small ViT on the built-in handwritten digits (CPU, about a minute), "
            "save it, reload it and classify digits it has not seen.")
    p.add_argument("--out", default="vitkit-demo", help="directory for the trained model (default: %(default)s)")
    p.add_argument("--epochs", type=_positive_int, default=30, help="training epochs (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")

    p = add("convert", _cmd_convert, "Convert a checkpoint (timm, Hugging Face, JAX .npz, hf-hub:ORG/NAME) "
            "to vitkit's format (config.json + model.safetensors).")
    p.add_argument("source", help="checkpoint file or directory, or hf-hub:<org>/<name>")
    p.add_argument("dest", help="output directory")
    p.add_argument("--model", help="architecture name, needed for bare weight files (see `vitkit models`)")

    p = add("models", _cmd_models, "List registered model names.")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'vit_base*' (default: all)")
    return parser


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except VitkitError as e:
        if args.debug:
            raise
        print(f"vitkit {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"vitkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
