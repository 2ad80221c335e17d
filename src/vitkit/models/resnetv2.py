"""The ResNet-V2 feature extractor of the hybrid ViT (Dosovitskiy et al. 2020,
https://arxiv.org/abs/2010.11929, section 3.1 "Hybrid Architecture"; the ResNet follows BiT, Kolesnikov et al.
2019, https://arxiv.org/abs/1912.11370).

Compared with the torchvision ResNet-50 it has weight-standardised convolutions, GroupNorm (32 groups) instead
of BatchNorm, and TensorFlow "SAME" padding everywhere (the weights come from JAX). Despite the "V2" name the
hybrid's blocks are *not* pre-activation: each is conv -> norm -> ReLU (ResNet-V1.5 order, stride on the 3x3
conv), which is timm's `ResNetV2(preact=False)`. There is no final norm and no classifier: the output is the
last stage's feature map.

Layout for an H x W input (R50+ViT-B/16 uses the first three stages, R50+ViT-L/32 all four):

    stem    7x7/2 conv, GN+ReLU, 3x3/2 max-pool          64 ch, stride 4
    stage 0 bottlenecks, first stride 1                 256 ch, stride 4
    stage 1 bottlenecks, first stride 2                 512 ch, stride 8
    stage 2 bottlenecks, first stride 2                1024 ch, stride 16
    stage 3 bottlenecks, first stride 2                2048 ch, stride 32

With SAME padding every stride-2 layer maps n to ceil(n / 2), so the output is ceil(H / s) x ceil(W / s).
Module and parameter names follow timm (`stem.conv`, `stages.i.blocks.j.conv1`, `...downsample.conv`, ...).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.std_conv import StdConv2dSame, pad_same

CONV_EPS = 1e-8  # weight-standardisation eps of the hybrid ViT checkpoints (BiT used 1e-6)
GN_GROUPS = 32
GN_EPS = 1e-5  # nn.GroupNorm's default, which the checkpoints were converted with


def conv(in_chans: int, out_chans: int, kernel_size: int, stride: int = 1) -> StdConv2dSame:
    return StdConv2dSame(in_chans, out_chans, kernel_size, stride=stride, eps=CONV_EPS)


class GroupNormAct(nn.GroupNorm):
    """GroupNorm over 32 groups, optionally followed by ReLU. Parameters `weight`, `bias` as nn.GroupNorm."""

    def __init__(self, channels: int, *, act: bool = True) -> None:
        super().__init__(GN_GROUPS, channels, eps=GN_EPS)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        return F.relu(x) if self.act else x

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, act={'relu' if self.act else None}"


class Stem(nn.Module):
    """7x7/2 conv -> GN -> ReLU -> 3x3/2 max-pool (SAME): [B, C, H, W] -> [B, 64, ceil(H/4), ceil(W/4)]."""

    def __init__(self, in_chans: int, out_chans: int = 64) -> None:
        super().__init__()
        self.conv = conv(in_chans, out_chans, 7, stride=2)
        self.norm = GroupNormAct(out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(x))  # [B, 64, ceil(H/2), ceil(W/2)]
        # SAME padding for the pool pads with -inf, so padded cells never win the max.
        x = pad_same(x, (3, 3), (2, 2), value=float("-inf"))
        return F.max_pool2d(x, kernel_size=3, stride=2)  # [B, 64, ceil(H/4), ceil(W/4)]


class Downsample(nn.Module):
    """The projection shortcut of a stage's first block: 1x1 conv (with the block's stride) -> GN, no ReLU."""

    def __init__(self, in_chans: int, out_chans: int, stride: int) -> None:
        super().__init__()
        self.conv = conv(in_chans, out_chans, 1, stride=stride)
        self.norm = GroupNormAct(out_chans, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class Bottleneck(nn.Module):
    """Non-pre-activation bottleneck: relu(x' + shortcut(x)) with x' = 1x1 -> 3x3 (stride) -> 1x1, each conv
    followed by GN (+ ReLU, except after the last). The inner width is a quarter of the output width."""

    def __init__(self, in_chans: int, out_chans: int, *, stride: int = 1, downsample: bool = False) -> None:
        super().__init__()
        mid = out_chans // 4
        self.downsample = Downsample(in_chans, out_chans, stride) if downsample else None
        self.conv1 = conv(in_chans, mid, 1)
        self.norm1 = GroupNormAct(mid)
        self.conv2 = conv(mid, mid, 3, stride=stride)
        self.norm2 = GroupNormAct(mid)
        self.conv3 = conv(mid, out_chans, 1)
        self.norm3 = GroupNormAct(out_chans, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C_in, H, W] -> [B, C_out, ceil(H/stride), ceil(W/stride)]"""
        shortcut = x if self.downsample is None else self.downsample(x)  # [B, C_out, H', W']
        x = self.norm1(self.conv1(x))  # [B, C_out/4, H, W]
        x = self.norm2(self.conv2(x))  # [B, C_out/4, H', W']
        x = self.norm3(self.conv3(x))  # [B, C_out, H', W']
        return F.relu(x + shortcut)


class ResNetStage(nn.Module):
    """`depth` bottlenecks; the first changes width and stride through a projection shortcut."""

    def __init__(self, in_chans: int, out_chans: int, *, depth: int, stride: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            *(
                Bottleneck(in_chans if i == 0 else out_chans, out_chans, stride=stride if i == 0 else 1,
                           downsample=i == 0)
                for i in range(depth)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class ResNetV2(nn.Module):
    """The hybrid ViT's CNN: `forward(x [B, C, H, W]) -> features [B, out_chans, ceil(H/s), ceil(W/s)]` with
    stride s = 4 * 2^(len(layers) - 1).

    Args:
        layers: bottlenecks per stage, e.g. (3, 4, 9) for R50+ViT-B/16 (ResNet-50's first three stages, the
            third grown from 6 to 9 blocks) or (3, 4, 6, 3) for R50+ViT-L/32.
        in_chans: input channels.
        channels: output width of each stage (the first len(layers) are used).
        stem_chans: width of the stem.
    """

    def __init__(
        self,
        *,
        layers: tuple[int, ...],
        in_chans: int = 3,
        channels: tuple[int, ...] = (256, 512, 1024, 2048),
        stem_chans: int = 64,
    ) -> None:
        super().__init__()
        if not 1 <= len(layers) <= len(channels):
            raise ValueError(f"ResNetV2 takes 1 to {len(channels)} stages, got layers={tuple(layers)}")
        self.stem = Stem(in_chans, stem_chans)
        stages, prev = [], stem_chans
        for i, (depth, width) in enumerate(zip(layers, channels)):
            stages.append(ResNetStage(prev, width, depth=depth, stride=1 if i == 0 else 2))
            prev = width
        self.stages = nn.Sequential(*stages)
        self.num_features = prev
        self.stride = 4 * 2 ** (len(layers) - 1)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """He-normal (fan-out) convolutions, unit GroupNorm: timm's ResNetV2 init."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.GroupNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def feature_size(self, img_size: tuple[int, int]) -> tuple[int, int]:
        """The output's spatial size for an input of `img_size` (every stride-2 layer rounds up)."""
        return math.ceil(img_size[0] / self.stride), math.ceil(img_size[1] / self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # [B, 64, ceil(H/4), ceil(W/4)]
        return self.stages(x)  # [B, num_features, ceil(H/s), ceil(W/s)]


__all__ = ["Bottleneck", "GroupNormAct", "ResNetV2"]
