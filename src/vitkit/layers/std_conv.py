"""Weight-standardised convolution (Qiao et al. 2019, https://arxiv.org/abs/1903.10520) with TensorFlow "SAME"
padding, the convolution of BiT's ResNet-V2 and of the hybrid ViT's CNN stem.

Each output filter is standardised to zero mean and unit variance before the convolution, which lets GroupNorm
stand in for BatchNorm at small batch sizes. "SAME" padding gives ceil(H / stride) outputs for any H; when the
total padding is odd, the extra row / column goes at the bottom / right (TensorFlow's rule), which PyTorch's
symmetric `padding=` cannot express, so the input is padded on the fly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def same_padding(size: int, kernel_size: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding along one axis so a conv or pool yields ceil(size / stride) outputs."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel_size - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def pad_same(
    x: torch.Tensor,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
    value: float = 0.0,
) -> torch.Tensor:
    """x [B, C, H, W] -> [B, C, H + pad_h, W + pad_w], padded with `value` (-inf before a max-pool)."""
    top, bottom = same_padding(x.shape[-2], kernel_size[0], stride[0], dilation[0])
    left, right = same_padding(x.shape[-1], kernel_size[1], stride[1], dilation[1])
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


def standardize_weight(weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Per output filter: (w - mean) / sqrt(var + eps), over (in_chans, kh, kw), with the biased variance.

    Computed in float32 whatever the weight dtype: eps=1e-8 vanishes in fp16, and bf16 statistics are coarse.
    """
    w = weight.float()
    var, mean = torch.var_mean(w, dim=(1, 2, 3), keepdim=True, correction=0)  # each [out, 1, 1, 1]
    return ((w - mean) * torch.rsqrt(var + eps)).to(weight.dtype)


class StdConv2dSame(nn.Conv2d):
    """`nn.Conv2d` (no bias by default) whose weight is standardised on every forward, with "SAME" padding.

    `eps` is added to the filter variance; the hybrid ViT checkpoints were trained with 1e-8, BiT with 1e-6.
    Parameter names are nn.Conv2d's (`weight`, `bias`), so timm's `StdConv2dSame` weights load unchanged.
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        kernel_size: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = False,
        eps: float = 1e-6,
    ) -> None:
        # With stride 1 and an even total padding, SAME is symmetric: let the conv pad (no extra copy).
        static = stride == 1 and (dilation * (kernel_size - 1)) % 2 == 0
        padding = dilation * (kernel_size - 1) // 2 if static else 0
        super().__init__(
            in_chans, out_chans, kernel_size, stride=stride, padding=padding, dilation=dilation,
            groups=groups, bias=bias,
        )
        self.dynamic_pad = not static
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C_in, H, W] -> [B, C_out, ceil(H / stride), ceil(W / stride)]"""
        if self.dynamic_pad:
            x = pad_same(x, self.kernel_size, self.stride, self.dilation)
        weight = standardize_weight(self.weight, self.eps)
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, eps={self.eps} (SAME padding)"
