"""The class-consistency loss: a frozen ImageNet classifier should read the same classes in the
network's colours as in the true ones (the class-distribution loss of ChromaGAN, Vitoria et al.,
WACV 2020, with a classifier's view of the true colours as the target instead of its view of the
gray photo).

For a batch of training images,

    loss = KL( p(true colours) || p(colorization) ),

where p is the classifier's softmax over the 1,000 ImageNet classes, the colorization is the
annealed mean at temperature T of the network's distribution (what users see), upsampled and
joined with the image's L, and the true colours are the centres of the image's own ab cells at the
same ¼ resolution (the oracle of ``scripts/oracle_ceilings.py``: they carry almost all the class
information of the original). Gradients flow through the classifier (its weights stay frozen)
into the network's logits, so colours that make a classifier see the wrong thing cost more than
the per-pixel cross-entropy says.

The classifier is never the evaluation classifier (``config.Params.validate`` checks it): the
judge must not paint the colours.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from colorize_core.bins import Bins
from colorize_core.color_tensor import srgb_from_lab_tensor
from colorize_core.constants import CLASS_LOSS_CLASSIFIERS, CLASS_LOSS_INPUT_SIZE
from colorize_core.pretrained import EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD, efficientnet_lite


def class_loss_classifier(name: str) -> tuple[nn.Module, float, float]:
    """The frozen ImageNet classifier ``name`` (one of ``CLASS_LOSS_CLASSIFIERS``), with the mean and
    standard deviation its sRGB input is normalised with."""
    if name not in CLASS_LOSS_CLASSIFIERS:
        raise ValueError(f"class-loss classifier must be one of {', '.join(CLASS_LOSS_CLASSIFIERS)}, got {name!r}")
    return efficientnet_lite(CLASS_LOSS_CLASSIFIERS[name]), EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD


class ClassConsistencyLoss(nn.Module):
    """``weight`` × KL(classifier(true colours) ‖ classifier(annealed-mean colours at ``T``)).

    Parameters
    ----------
    classifier : ImageNet classifier, sRGB normalised as ``(x - mean) / std`` -> (B, 1000) logits;
        kept frozen
    mean, std : its input normalisation
    bins : the kept bins (their ab centres) and the ab grid (the cells' centres)
    T : temperature of the annealed mean the colours are decoded at (> 0: differentiable)
    weight : multiplier of the KL divergence
    input_size : side of the square the classifier sees both images at
    """

    def __init__(
        self,
        classifier: nn.Module,
        mean: float,
        std: float,
        bins: Bins,
        T: float,
        weight: float,
        input_size: int = CLASS_LOSS_INPUT_SIZE,
    ):
        super().__init__()
        if T <= 0:
            raise ValueError(f"the class-consistency loss needs a temperature > 0, got {T}")
        self.classifier = classifier.eval().requires_grad_(False)
        self.T, self.weight, self.input_size = T, weight, input_size
        self.mean, self.std = mean, std
        self.register_buffer("class_centres", torch.as_tensor(bins.centres, dtype=torch.float32))  # (Q, 2)
        self.register_buffer("cell_centres", torch.as_tensor(bins.grid.centres, dtype=torch.float32))  # (cells, 2)

    def train(self, mode: bool = True) -> ClassConsistencyLoss:
        super().train(mode)
        self.classifier.eval()  # frozen BatchNorm statistics, always
        return self

    def class_log_probs(self, lightness: torch.Tensor, ab_grid: torch.Tensor) -> torch.Tensor:
        """The classifier's log-probabilities for L (B, 1, S, S) joined with ab (B, 2, S/4, S/4)
        upsampled bilinearly: (B, 1000)."""
        with torch.autocast(lightness.device.type, enabled=False):  # colours in fp32; only the classifier autocasts
            ab = F.interpolate(ab_grid.float(), size=lightness.shape[-2:], mode="bilinear", align_corners=False)
            srgb = srgb_from_lab_tensor(lightness, ab)  # (B, 3, S, S)
            size = (self.input_size, self.input_size)
            srgb = F.interpolate(srgb, size=size, mode="bilinear", align_corners=False, antialias=True)
        return F.log_softmax(self.classifier((srgb - self.mean) / self.std).float(), dim=1)

    def forward(self, lightness: torch.Tensor, logits: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """L (B, 1, S, S), the network's logits (B, Q, S/4, S/4) and the true ab cells (B, S/4, S/4)
        -> the weighted KL divergence, a scalar (mean over the batch)."""
        lightness = lightness.float()
        with torch.no_grad():
            true_ab = self.cell_centres[cells].permute(0, 3, 1, 2)  # (B, 2, S/4, S/4)
            target = self.class_log_probs(lightness, true_ab)
        weights = torch.softmax(F.log_softmax(logits.float(), dim=1) / self.T, dim=1)  # (B, Q, S/4, S/4)
        with torch.autocast(lightness.device.type, enabled=False):
            ab = torch.einsum("bqhw,qc->bchw", weights, self.class_centres)  # the annealed mean, fp32
        predicted = self.class_log_probs(lightness, ab)
        return self.weight * F.kl_div(predicted, target, reduction="batchmean", log_target=True)
