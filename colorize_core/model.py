"""Colorization networks: a registry of named architectures built from a small config.

``eccv16`` is the network of Zhang et al. (ECCV 2016), the reference study's "8 sub-convolutional
blocks": blocks 1-7 of 3×3 convolutions with ReLU, the last convolution of blocks 1-3 with
stride 2, blocks 5-6 dilated by 2, a BatchNorm closing each block; block 8 a 4×4 stride-2
transposed convolution and 3×3 convolutions, then a 1×1 convolution to Q class logits at ¼ of
the input resolution. ``width`` scales every channel count (1.0 = the published 32 M-parameter
network).

A new architecture is a constructor registered with :func:`register` that takes a
:class:`ModelConfig` and returns a module with the same contract: input L in [0, 100] of shape
(B, 1, H, W) with H and W multiples of 8, output logits (B, Q, H/4, W/4).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn

from colorize_core.constants import L_CENTER, L_SCALE, OUTPUT_STRIDE

ARCHITECTURES: dict[str, Callable[["ModelConfig"], nn.Module]] = {}


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "eccv16"  # a name in ARCHITECTURES
    width: float = 1.0  # channel multiplier (1.0 = the published network)
    num_classes: int = 114  # Q, the number of kept ab bins

    def to_dict(self) -> dict:
        return asdict(self)


def register(name: str):
    """Decorator adding an architecture constructor to :data:`ARCHITECTURES`."""

    def add(constructor):
        ARCHITECTURES[name] = constructor
        return constructor

    return add


def build_model(config: ModelConfig) -> nn.Module:
    if config.arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {config.arch!r} (known: {', '.join(ARCHITECTURES)})")
    return ARCHITECTURES[config.arch](config)


def scaled_channels(channels: int, width: float) -> int:
    """Channel count times ``width``, rounded to a multiple of 8 (at least 8)."""
    return max(8, int(round(channels * width / 8)) * 8)


def normalise_lightness(lightness: torch.Tensor) -> torch.Tensor:
    """L in [0, 100] -> network input (L - 50) / 100."""
    return (lightness - L_CENTER) / L_SCALE


@dataclass(frozen=True)
class BlockSpec:
    channels: int
    convs: int
    dilation: int = 1
    downsample: bool = False  # stride 2 on the block's last convolution


#: Blocks 1-7 of Zhang et al. ECCV 2016.
ECCV16_BLOCKS = (
    BlockSpec(64, 2, downsample=True),
    BlockSpec(128, 2, downsample=True),
    BlockSpec(256, 3, downsample=True),
    BlockSpec(512, 3),
    BlockSpec(512, 3, dilation=2),
    BlockSpec(512, 3, dilation=2),
    BlockSpec(512, 3),
)
ECCV16_HEAD_CHANNELS = 256


def conv_block(in_channels: int, spec: BlockSpec, width: float) -> tuple[nn.Sequential, int]:
    """3×3 convolutions with ReLU, the last one strided when ``spec.downsample``, then BatchNorm."""
    out = scaled_channels(spec.channels, width)
    layers: list[nn.Module] = []
    for i in range(spec.convs):
        stride = 2 if spec.downsample and i == spec.convs - 1 else 1
        layers += [
            nn.Conv2d(in_channels, out, 3, stride=stride, padding=spec.dilation, dilation=spec.dilation),
            nn.ReLU(inplace=True),
        ]
        in_channels = out
    layers.append(nn.BatchNorm2d(out))
    return nn.Sequential(*layers), out


class ECCV16(nn.Module):
    """Zhang et al.'s colorizer: L (B, 1, H, W) -> logits over Q bins (B, Q, H/4, W/4)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        blocks, channels = [], 1
        for spec in ECCV16_BLOCKS:
            block, channels = conv_block(channels, spec, config.width)
            blocks.append(block)
        self.features = nn.Sequential(*blocks)
        head = scaled_channels(ECCV16_HEAD_CHANNELS, config.width)
        self.head = nn.Sequential(  # block 8
            nn.ConvTranspose2d(channels, head, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(head, head, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(head, head, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(head, config.num_classes, 1),
        )

    def forward_features(self, lightness: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) L in [0, 100] -> (B, C, H/8, W/8)."""
        return self.features(normalise_lightness(lightness))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, H/8, W/8) -> (B, Q, H/4, W/4) logits."""
        return self.head(features)

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        h, w = lightness.shape[-2:]
        if h % 8 or w % 8:
            raise ValueError(f"input height and width must be multiples of 8, got {h}x{w}")
        return self.forward_head(self.forward_features(lightness))


@register("eccv16")
def eccv16(config: ModelConfig) -> nn.Module:
    return ECCV16(config)


def output_size(input_size: int) -> int:
    """Side of the logit grid for a square input of side ``input_size``."""
    return input_size // OUTPUT_STRIDE


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
