"""Every training knob in one place, with its help text. The CLI's `vitkit train` options are generated from
this dataclass, so a new knob is one line here."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

# What `vitkit train --task` accepts (here, not in launch.py, so the CLI parser needs no torch import).
TASKS = ("classification", "vqa", "pretrain", "retrieval", "nlvr2", "diffusion")


def knob(default: Any, help: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class TrainConfig:
    epochs: int | None = knob(None, "training epochs (default: classification 60; vision-language 10 from a "
                              "pretrained ViLT, else 30; diffusion: about 100k images seen, at least 20)")
    batch_size: int | None = knob(None, "global batch size, split over processes and accumulation steps "
                                  "(default: 128 for >= 10k training images, else 64; vqa from scratch 128 "
                                  "questions, retrieval 32 images)")
    lr: float | None = knob(None, "peak learning rate, AdamW (default: 1e-3 for >= 10k training images, else 2e-3; "
                            "diffusion 2e-3 from scratch)")
    min_lr: float = knob(1e-5, "learning rate at the end of the cosine schedule")
    warmup_epochs: float | None = knob(None, "linear warmup length in epochs, fractions allowed (default: 5 for "
                                       "classification; 10%% of the epochs for vision-language tasks)")
    beta2: float = knob(0.999, "AdamW second-moment decay (BERT-style short runs often use 0.98)")
    weight_decay: float | None = knob(None, "AdamW weight decay, never applied to norms, biases, tokens, position "
                                      "embeddings (default: 0.05; diffusion 0, as DiT)")
    head_lr_mult: float | None = knob(None, "learning-rate multiplier for the task head (default: 10 when "
                                      "fine-tuning a pretrained ViLT, as the paper; else 1)")
    label_smoothing: float = knob(0.1, "label smoothing (also applied to mixup targets)")
    randaugment: str = knob("auto", "RandAugment policy in timm notation (e.g. rand-m9-mstd0.5-inc1), 'none', or "
                            "auto: m9 for >= 10k training images; below, m5 for images over 64 px, else none")
    crop: str = knob("auto", "train-time geometry: rrc (RandomResizedCrop), shift (whole image, translated by up to "
                     "1/8 of its size), none (whole image, resized), auto: shift for < 10k images of <= 64 px, "
                     "else rrc (diffusion: none)", choices=("auto", "rrc", "shift", "none"))
    mixup: float | None = knob(None, "mixup alpha, 0 disables (default: 0.8 for >= 10k training images, else 0)")
    cutmix: float | None = knob(None, "cutmix alpha, 0 disables (default: 1.0 for >= 10k training images, else 0)")
    mixup_prob: float = knob(1.0, "probability of applying mixup/cutmix to a batch")
    random_erasing: float | None = knob(None, "random erasing probability (default: 0.25 for >= 10k training "
                                        "images, else 0)")
    hflip: float | None = knob(None, "horizontal flip probability (default: 0.5 for colour data, 0 for grey: "
                               "digits and text are not mirror-symmetric; vqa: 0.5 from scratch, 0 fine-tuning, "
                               "each flipped question mirrored with its image: left <-> right)")
    crop_scale: float | None = knob(None, "smallest RandomResizedCrop area fraction (default: by image size; "
                                    "1 turns random cropping off)")
    vqa_loss: str = knob("bce", "VQA loss: bce (binary cross-entropy per answer against the soft scores, times the "
                         "number of answers, as ViLT) or ce (softmax cross-entropy against the soft scores "
                         "normalised to sum to 1)", choices=("bce", "ce"))
    drop_path: float = knob(0.1, "stochastic depth rate")
    ema: bool = knob(True, "keep an exponential moving average of the weights and evaluate it too")
    ema_decay: float = knob(0.999, "EMA decay (warmed up as min(decay, (1+step)/(10+step)))")
    clip_grad: float = knob(1.0, "gradient clipping max norm (0 disables)")
    accum_steps: int = knob(1, "gradient accumulation steps")
    amp: str = knob("auto", "mixed precision: auto (bf16 on CUDA when supported, else fp32), bf16, fp16 (CUDA), none",
                    choices=("auto", "bf16", "fp16", "none"))
    compile: bool = knob(False, "torch.compile the model")
    deterministic: bool = knob(False, "seeded and reproducible run to run (deterministic kernels)")
    seed: int = knob(0, "random seed")
    workers: int = knob(-1, "DataLoader workers (-1: 0 for in-memory data, else min(4, cores))")
    device: str = knob("auto", "device: auto, cpu, cuda, cuda:N")
    log_every: int = knob(20, "steps between metrics.jsonl lines")
    tensorboard: bool = knob(False, "also write TensorBoard event files to RUN_DIR/tensorboard (needs the "
                             "tensorboard package: pip install tensorboard)")
    progress: bool = knob(True, "show progress bars")
    vae: str | None = knob(None, "diffusion: train in the latent space of this diffusers AutoencoderKL (hub id or "
                           "directory, e.g. stabilityai/sd-vae-ft-mse; needs `pip install diffusers`); --img-size is "
                           "then the image size and the DiT sees latents 8x smaller (default: pixel space)")
    trust_vae: bool = knob(False, "diffusion: load the VAE a pretrained DiT's config.json names even when it is not "
                           "one of the official DiT VAEs (stabilityai/sd-vae-ft-mse, -ema)")


def train_config_fields() -> list[Any]:
    return list(fields(TrainConfig))


LARGE_DATASET = 10_000  # training images from which the full DeiT-style regularisation pays off


SMALL_IMAGE = 64  # pixels: at or below, augmentation stays geometric-light (digits, icons, thumbnails)


def resolve_recipe(cfg: TrainConfig, *, num_train: int, in_chans: int, img_size: int) -> TrainConfig:
    """Fill the data-dependent defaults (None / "auto") for `num_train` images of `img_size` pixels.

    Large datasets get DeiT's regularisation (RandAugment m9, mixup 0.8, cutmix 1.0, random erasing 0.25,
    RandomResizedCrop). Small ones would drown in it: they get RandAugment m5 (none for small images), no
    mixup/cutmix or erasing, and for small images a shift augmentation instead of random resized crops."""
    from dataclasses import replace

    large = num_train >= LARGE_DATASET
    small_images = img_size <= SMALL_IMAGE
    if cfg.randaugment == "auto":
        randaugment = "rand-m9-mstd0.5-inc1" if large else ("none" if small_images else "rand-m5-mstd0.5-inc1")
    else:
        randaugment = cfg.randaugment
    return replace(
        cfg,
        epochs=60 if cfg.epochs is None else cfg.epochs,
        warmup_epochs=5.0 if cfg.warmup_epochs is None else cfg.warmup_epochs,
        head_lr_mult=1.0 if cfg.head_lr_mult is None else cfg.head_lr_mult,
        weight_decay=0.05 if cfg.weight_decay is None else cfg.weight_decay,
        batch_size=(128 if large else 64) if cfg.batch_size is None else cfg.batch_size,
        lr=(1e-3 if large else 2e-3) if cfg.lr is None else cfg.lr,
        randaugment=randaugment,
        crop=("shift" if not large and small_images else "rrc") if cfg.crop == "auto" else cfg.crop,
        random_erasing=(0.25 if large else 0.0) if cfg.random_erasing is None else cfg.random_erasing,
        mixup=(0.8 if large else 0.0) if cfg.mixup is None else cfg.mixup,
        cutmix=(1.0 if large else 0.0) if cfg.cutmix is None else cfg.cutmix,
        hflip=(0.5 if in_chans == 3 else 0.0) if cfg.hflip is None else cfg.hflip,
    )


def resolve_vl_recipe(cfg: TrainConfig, *, task: str, pretrained: bool, img_size: int) -> TrainConfig:
    """Defaults for the vision-language tasks. Fine-tuning a pretrained ViLT follows the paper (AdamW 1e-4,
    head x10, weight decay 0.01, 10 epochs, 10% warmup, RandAugment N=2 M=9 without colour inversion); a model
    trained from scratch on small data (generated scenes) gets a higher rate and no RandAugment for images of
    <= 64 px (colour words in the questions must stay true: no colour ops); VQA from scratch flips half the
    images, each question mirrored with its image ("leftmost" <-> "rightmost"), which doubles the pictures a
    small dataset offers without making an answer false. Every task from scratch runs 30 epochs, what the
    generated scenes need to converge within the CPU time budget of examples/vqa_scenes.md.
    Retrieval scores each image against 16 captions per step, so its default batch is 32 images, not 64; VQA
    from scratch takes 128 questions a step, the batch that learned fastest per epoch on the generated scenes.
    The measurements behind these choices are in examples/vqa_scenes.md."""
    from dataclasses import replace

    from ..errors import ConfigError

    if cfg.hflip and task != "vqa":
        raise ConfigError(f"--hflip: {task} does not flip images (vqa mirrors each flipped question's left and "
                          "right; captions and NLVR2's 'left image' / 'right image' sentences are not mirrored)")
    epochs = cfg.epochs if cfg.epochs is not None else (10 if pretrained else 30)
    if cfg.randaugment == "auto":
        randaugment = "none" if img_size <= SMALL_IMAGE else "rand-m9-n2-mstd0.5"
    else:
        randaugment = cfg.randaugment
    return replace(
        cfg,
        epochs=epochs,
        warmup_epochs=0.1 * epochs if cfg.warmup_epochs is None else cfg.warmup_epochs,
        head_lr_mult=(10.0 if pretrained else 1.0) if cfg.head_lr_mult is None else cfg.head_lr_mult,
        weight_decay=0.05 if cfg.weight_decay is None else cfg.weight_decay,
        batch_size=vl_batch_size(task, pretrained) if cfg.batch_size is None else cfg.batch_size,
        lr=(1e-4 if pretrained else 1e-3) if cfg.lr is None else cfg.lr,
        randaugment=randaugment,
        random_erasing=0.0 if cfg.random_erasing is None else cfg.random_erasing,
        mixup=0.0 if cfg.mixup is None else cfg.mixup,
        cutmix=0.0 if cfg.cutmix is None else cfg.cutmix,
        hflip=(0.5 if task == "vqa" and not pretrained else 0.0) if cfg.hflip is None else cfg.hflip,
    )


def vl_batch_size(task: str, pretrained: bool) -> int:
    if task == "retrieval":
        return 32
    return 128 if task == "vqa" and not pretrained else 64


def fill_task_neutral_defaults(cfg: TrainConfig) -> TrainConfig:
    """The classification values for the few task-dependent knobs a caller left unset (direct Trainer use)."""
    from dataclasses import replace

    return replace(
        cfg,
        epochs=60 if cfg.epochs is None else cfg.epochs,
        warmup_epochs=5.0 if cfg.warmup_epochs is None else cfg.warmup_epochs,
        head_lr_mult=1.0 if cfg.head_lr_mult is None else cfg.head_lr_mult,
        weight_decay=0.05 if cfg.weight_decay is None else cfg.weight_decay,
    )


DIFFUSION_IMAGES_SEEN = 100_000  # the default training length of a diffusion run from scratch, in images


def resolve_diffusion_recipe(cfg: TrainConfig, *, num_train: int, in_chans: int, pretrained: bool) -> TrainConfig:
    """Defaults for `--task diffusion` (DiT, Peebles & Xie 2022): AdamW without weight decay, horizontal flips
    for colour data only, no label smoothing, RandAugment, mixup or erasing (they would change the distribution
    the model learns to draw), no stochastic depth. The paper trains at a constant 1e-4 for 400k+ steps of 256;
    a small model from scratch on a CPU gets 2e-3 with a short warmup and cosine decay, and about 100k images
    seen (20 epochs at least) — a fine-tuned DiT 1e-4 and 10 epochs. 2e-3 because a short run from scratch
    reached a lower validation loss with it than with 1e-3 (the screens are in examples/dit_digits.md)."""
    from dataclasses import replace

    epochs = cfg.epochs if cfg.epochs is not None else (
        10 if pretrained else max(20, -(-DIFFUSION_IMAGES_SEEN // max(num_train, 1))))
    return replace(
        cfg,
        epochs=epochs,
        warmup_epochs=max(1.0, 0.05 * epochs) if cfg.warmup_epochs is None else cfg.warmup_epochs,
        head_lr_mult=1.0 if cfg.head_lr_mult is None else cfg.head_lr_mult,
        weight_decay=0.0 if cfg.weight_decay is None else cfg.weight_decay,
        batch_size=64 if cfg.batch_size is None else cfg.batch_size,
        lr=(1e-4 if pretrained else 2e-3) if cfg.lr is None else cfg.lr,
        randaugment="none" if cfg.randaugment == "auto" else cfg.randaugment,
        crop="none" if cfg.crop == "auto" else cfg.crop,
        random_erasing=0.0 if cfg.random_erasing is None else cfg.random_erasing,
        mixup=0.0 if cfg.mixup is None else cfg.mixup,
        cutmix=0.0 if cfg.cutmix is None else cfg.cutmix,
        hflip=(0.5 if in_chans == 3 else 0.0) if cfg.hflip is None else cfg.hflip,
    )
