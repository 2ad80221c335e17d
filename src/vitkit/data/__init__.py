"""Datasets and augmentation for training: image classification (ImageFolder, CIFAR-10/100, MNIST /
Fashion-MNIST), the train / eval transforms, RandAugment, Mixup / CutMix.

The entry point is `load_classification_data(data_dir, DataConfig.from_model(model))`.
"""

from ..processing.images import DatasetError, ImageLoadError
from ..utils.random import Rng
from .cifar import read_cifar, safe_unpickle
from .classification import (
    KINDS,
    ClassificationData,
    TensorImageDataset,
    detect_dataset_kind,
    load_classification_data,
)
from .imagefolder import ImageFolderDataset, scan_image_folder
from .mixup import Mixup, smooth_one_hot, soft_target_cross_entropy
from .mnist import FASHION_MNIST_CLASSES, read_idx, read_mnist
from .randaugment import RandAugment, parse_randaugment
from .transforms import (
    DataConfig,
    EvalTransform,
    RandomErasing,
    TrainTransform,
    build_transforms,
    default_crop_scale,
)

__all__ = [
    "FASHION_MNIST_CLASSES",
    "KINDS",
    "ClassificationData",
    "DataConfig",
    "DatasetError",
    "EvalTransform",
    "ImageFolderDataset",
    "ImageLoadError",
    "Mixup",
    "RandAugment",
    "RandomErasing",
    "Rng",
    "TensorImageDataset",
    "TrainTransform",
    "build_transforms",
    "default_crop_scale",
    "detect_dataset_kind",
    "load_classification_data",
    "parse_randaugment",
    "read_cifar",
    "read_idx",
    "read_mnist",
    "safe_unpickle",
    "scan_image_folder",
    "smooth_one_hot",
    "soft_target_cross_entropy",
]
