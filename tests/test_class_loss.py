"""The class-consistency loss and the differentiable Lab -> sRGB it shows its classifier."""

import numpy as np
import pytest
import torch
from skimage.color import lab2rgb
from torch import nn

from colorize_core.ab_grid import AbGrid
from colorize_core.bins import Bins
from colorize_core.color_tensor import srgb_from_lab_tensor
from colorize_core.config import ConfigError, Params, TrainParams
from colorize_core.train.class_loss import ClassConsistencyLoss


@pytest.mark.filterwarnings("ignore:Conversion from CIE-LAB.*negative Z values")  # the clip under test
def test_srgb_from_lab_tensor_matches_scikit_image():
    """Against skimage.color.lab2rgb (clips per channel too), inside and outside the gamut, and
    through both branches of f⁻¹ (dark L) and of the sRGB curve."""
    rng = np.random.default_rng(0)
    lab = np.stack([rng.uniform(0, 100, 4000), rng.uniform(-100, 100, 4000), rng.uniform(-100, 100, 4000)], axis=-1)
    lab[:200, 0] = rng.uniform(0, 8, 200)  # the linear segments
    expected = lab2rgb(lab.reshape(40, 100, 3))  # (40, 100, 3)
    lightness = torch.tensor(lab[:, 0], dtype=torch.float32).view(1, 1, 40, 100)
    ab = torch.tensor(lab[:, 1:].T.copy(), dtype=torch.float32).view(1, 2, 40, 100)
    got = srgb_from_lab_tensor(lightness, ab)[0].permute(1, 2, 0).numpy()
    assert np.abs(got - expected).max() < 2e-4


def small_bins() -> Bins:
    """Three kept bins of a 16-unit grid (their centres (8, 8), (8, 40), (24, 8))."""
    grid = AbGrid(16)
    kept = np.array([136, 138, 152])
    class_from_cell = np.argmin(((grid.centres[:, None] - grid.centres[kept][None]) ** 2).sum(-1), axis=1)
    ones = np.ones(3)
    return Bins(grid, kept, class_from_cell, ones.astype(np.int64), ones / 3, ones, 5.0, 0.5)


def tiny_classifier() -> nn.Module:
    """A random 10-class convolutional classifier that sees colour (not an ImageNet one: the loss's
    arithmetic does not depend on which)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)
    )
    with torch.no_grad():
        model[-1].weight.mul_(100)  # confident enough that a change of colour changes its verdict
    return model


def peaked_logits(classes: torch.Tensor, num_classes: int = 3, height: float = 60.0) -> torch.Tensor:
    """(B, h, w) class indices -> (B, Q, h, w) logits with nearly all the mass on them."""
    return nn.functional.one_hot(classes, num_classes).permute(0, 3, 1, 2).float() * height


def test_the_true_colours_cost_nothing_and_others_cost_more():
    bins = small_bins()
    loss = ClassConsistencyLoss(tiny_classifier(), 0.5, 0.5, bins, T=0.7, weight=2.0, input_size=32)
    lightness = torch.linspace(20, 80, 32 * 32).view(1, 1, 32, 32).repeat(2, 1, 1, 1)
    classes = torch.randint(0, 3, (2, 8, 8), generator=torch.Generator().manual_seed(1))
    cells = torch.as_tensor(bins.kept_cells)[classes]  # each pixel exactly on a kept bin's cell
    assert loss(lightness, peaked_logits(classes), cells).item() == pytest.approx(0, abs=1e-6)
    wrong = loss(lightness, peaked_logits((classes + 1) % 3), cells)
    assert wrong.item() > 1e-4
    half = ClassConsistencyLoss(tiny_classifier(), 0.5, 0.5, bins, T=0.7, weight=1.0, input_size=32)
    assert half(lightness, peaked_logits((classes + 1) % 3), cells).item() == pytest.approx(wrong.item() / 2, rel=1e-5)


def test_gradients_reach_the_logits_and_never_the_classifier():
    bins = small_bins()
    classifier = tiny_classifier()
    loss = ClassConsistencyLoss(classifier, 0.5, 0.5, bins, T=0.5, weight=1.0, input_size=32)
    loss.train()
    assert not classifier.training  # its BatchNorm statistics stay as loaded
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    cells = torch.as_tensor(bins.kept_cells)[torch.randint(0, 3, (2, 8, 8))]
    loss(torch.full((2, 1, 32, 32), 50.0), logits, cells).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in classifier.parameters())


def test_the_class_loss_needs_a_positive_temperature():
    with pytest.raises(ValueError, match="temperature > 0"):
        ClassConsistencyLoss(tiny_classifier(), 0.5, 0.5, small_bins(), T=0, weight=1.0)


def test_the_judge_never_paints_the_colours():
    """Lite0 is no choice for the class loss (above); nor is whichever classifier evaluates."""
    params = Params()
    params.train.class_loss_weight = 0.5
    params.evaluate.classifier = params.train.class_loss_classifier = "efficientnet_lite2"
    with pytest.raises(ConfigError, match=r"^train\.class_loss_classifier must not be evaluate\.classifier"):
        params.validate()
    params.train.class_loss_weight = 0.0  # off: no check
    params.validate()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("class_loss_weight", -1.0, "must be >= 0"),
        ("class_loss_classifier", "efficientnet_lite0", "must be one of efficientnet_lite1, efficientnet_lite2"),
        ("class_loss_T", 0.0, r"must be in \(0, 100\]"),
        ("class_loss_from_epoch", 0, "must be >= 1"),
    ],
)
def test_class_loss_settings_are_checked(field, value, message):
    with pytest.raises(ConfigError, match=rf"^train\.{field} {message}"):
        TrainParams(**{field: value}).validate("train")


def test_the_class_loss_runs_under_bf16_autocast():
    """train.precision: bf16 on the CPU: the colours stay fp32 (antialiased resizing has no bf16
    kernel there), only the classifier autocasts, and the loss is close to the fp32 one."""
    bins = small_bins()
    loss = ClassConsistencyLoss(tiny_classifier(), 0.5, 0.5, bins, T=0.7, weight=1.0, input_size=32)
    lightness = torch.linspace(20, 80, 32 * 32).view(1, 1, 32, 32).repeat(2, 1, 1, 1)
    logits = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(2), requires_grad=True)
    cells = torch.as_tensor(bins.kept_cells)[torch.randint(0, 3, (2, 8, 8))]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = loss(lightness, logits.bfloat16(), cells)
    mixed.backward()
    assert mixed.dtype == torch.float32 and logits.grad.abs().sum() > 0
    assert mixed.item() == pytest.approx(loss(lightness, logits, cells).item(), rel=0.1, abs=1e-3)
