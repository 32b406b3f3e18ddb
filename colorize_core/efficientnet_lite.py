"""The feature stages of EfficientNet-Lite (Tan & Le 2019, the TF "lite" variants), in plain PyTorch.

The same network and state-dict keys as timm's ``tf_efficientnet_lite<n>`` up to its last block
(stem, then seven stages of depthwise-separable / inverted-residual blocks, ReLU6, no
squeeze-excitation, TensorFlow "SAME" padding on strided convolutions, BatchNorm ε = 1e-3),
and its head convolution (:func:`lite_head`), without the classifier. Kept here, rather than
imported from timm, so that colorizing a photo needs only torch: importing timm (and torchvision
with it) costs seconds. ``tests/test_model.py`` checks it against timm's output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: (channel multiplier, depth multiplier) of each variant.
LITE_SCALING = {0: (1.0, 1.0), 1: (1.0, 1.1), 2: (1.1, 1.2), 3: (1.2, 1.4), 4: (1.4, 1.8)}
STEM_CHANNELS = 32  # fixed in the lite variants
HEAD_CHANNELS = 1280  # the head convolution's, which the classifier pools: fixed in the lite variants
BN_EPS = 1e-3  # TensorFlow's BatchNorm epsilon


@dataclass(frozen=True)
class StageSpec:
    repeats: int
    kernel: int
    stride: int
    expand: int  # 1: depthwise-separable block, else inverted residual with this expansion
    channels: int


#: The EfficientNet-B0 / Lite stages (output strides 2, 4, 8, 16, 16, 32, 32).
LITE_STAGES = (
    StageSpec(1, 3, 1, 1, 16),
    StageSpec(2, 3, 2, 6, 24),
    StageSpec(2, 5, 2, 6, 40),
    StageSpec(3, 3, 2, 6, 80),
    StageSpec(3, 5, 1, 6, 112),
    StageSpec(4, 5, 2, 6, 192),
    StageSpec(1, 3, 1, 6, 320),
)


def round_channels(channels: float, divisor: int = 8) -> int:
    """Channels times the multiplier, to a multiple of ``divisor``, never more than 10 % below."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


class Conv2dSame(nn.Conv2d):
    """A convolution with TensorFlow's "SAME" padding (asymmetric for strided convolutions)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]  # (left, right), then (top, bottom)
        return super().forward(F.pad(x, pads))


def conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    if stride > 1:
        return Conv2dSame(in_channels, out_channels, kernel, stride, groups=groups, bias=False)
    return nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, groups=groups, bias=False)


class BatchNormReLU6(nn.BatchNorm2d):
    """BatchNorm followed by ReLU6 (or nothing): the parameters and keys of a plain BatchNorm2d."""

    def __init__(self, channels: int, activate: bool = True):
        super().__init__(channels, eps=BN_EPS)
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = super().forward(x)
        return F.relu6(x) if self.activate else x


class Block(nn.Module):
    """One block of a stage: its layers applied in order, plus the input where shapes allow.

    The layers keep timm's names, so that the weight packages' tensors map one to one."""

    def __init__(self, layers: dict[str, nn.Module], in_channels: int, out_channels: int, stride: int):
        super().__init__()
        for name, layer in layers.items():
            self.add_module(name, layer)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.children():
            out = layer(out)
        return out + x if self.residual else out


def depthwise_separable(in_channels: int, out_channels: int, kernel: int, stride: int) -> Block:
    """Depthwise k×k, then a 1×1 projection (the first stage)."""
    layers = {
        "conv_dw": conv(in_channels, in_channels, kernel, stride, groups=in_channels),
        "bn1": BatchNormReLU6(in_channels),
        "conv_pw": conv(in_channels, out_channels, 1),
        "bn2": BatchNormReLU6(out_channels, activate=False),
    }
    return Block(layers, in_channels, out_channels, stride)


def inverted_residual(in_channels: int, out_channels: int, kernel: int, stride: int, expand: int) -> Block:
    """1×1 expansion, depthwise k×k, 1×1 projection (every later stage)."""
    hidden = in_channels * expand
    layers = {
        "conv_pw": conv(in_channels, hidden, 1),
        "bn1": BatchNormReLU6(hidden),
        "conv_dw": conv(hidden, hidden, kernel, stride, groups=hidden),
        "bn2": BatchNormReLU6(hidden),
        "conv_pwl": conv(hidden, out_channels, 1),
        "bn3": BatchNormReLU6(out_channels, activate=False),
    }
    return Block(layers, in_channels, out_channels, stride)


def lite_stem_and_stages(variant: int) -> tuple[nn.Sequential, nn.ModuleList]:
    """The stem (B, 3, H, W) -> (B, 32, H/2, W/2) and the seven stages of EfficientNet-Lite<variant>."""
    width, depth = LITE_SCALING[variant]
    stem = nn.Sequential(conv(3, STEM_CHANNELS, 3, stride=2), BatchNormReLU6(STEM_CHANNELS))
    stages, channels = [], STEM_CHANNELS
    for index, spec in enumerate(LITE_STAGES):
        out = round_channels(spec.channels * width)
        fixed = index in (0, len(LITE_STAGES) - 1)  # the lite variants keep the first and last depth
        repeats = spec.repeats if fixed else math.ceil(spec.repeats * depth)
        blocks = []
        for i in range(repeats):
            stride = spec.stride if i == 0 else 1
            if spec.expand == 1:
                blocks.append(depthwise_separable(channels, out, spec.kernel, stride))
            else:
                blocks.append(inverted_residual(channels, out, spec.kernel, stride, spec.expand))
            channels = out
        stages.append(nn.Sequential(*blocks))
    return stem, nn.ModuleList(stages)


def lite_head(in_channels: int) -> nn.Sequential:
    """The head convolution, (B, C, h, w) -> (B, HEAD_CHANNELS, h, w): 1×1, BatchNorm, ReLU6 (timm's
    ``conv_head`` and ``bn2``); the classifier averages its output over the image."""
    return nn.Sequential(conv(in_channels, HEAD_CHANNELS, 1), BatchNormReLU6(HEAD_CHANNELS))
