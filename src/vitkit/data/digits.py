"""The handwritten digits that ship with vitkit (1,797 8x8 images, 0..16 grey levels; the UCI set that
scikit-learn also ships), and a writer that lays them out as an ImageFolder for `vitkit train`."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from ..utils.files import atomic_save_image


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """images uint8 [1797, 8, 8] with values 0..16, labels uint8 [1797]."""
    with resources.files("vitkit").joinpath("assets/digits.npz").open("rb") as f:
        data = np.load(f, allow_pickle=False)
        return data["images"], data["labels"]


def write_digits_imagefolder(root: str | Path, *, size: int = 32, val_fraction: float = 0.2, seed: int = 0) -> Path:
    """Write DIR/{train,val}/<digit>/<n>.png as `size`x`size` grey PNGs (bicubic upsampling), split per class
    (stratified) with `val_fraction` in val. Returns DIR."""
    images, labels = load_digits()
    root = Path(root)
    rng = np.random.default_rng(seed)
    for digit in range(10):
        idx = np.flatnonzero(labels == digit)
        rng.shuffle(idx)
        n_val = round(len(idx) * val_fraction)
        for split, chosen in (("val", idx[:n_val]), ("train", idx[n_val:])):
            folder = root / split / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                img = Image.fromarray((images[i].astype(np.float32) * (255 / 16)).round().astype(np.uint8), "L")
                atomic_save_image(folder / f"{i:04d}.png", img.resize((size, size), Image.Resampling.BICUBIC),
                                  durable=False)  # generated data: complete or absent, regenerated after a crash
    return root
