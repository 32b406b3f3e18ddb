"""Colour metrics of a colorization against its ground truth.

- AuC (Zhang et al. section 3.1): the fraction of pixels whose ab lies within a threshold t of
  the truth, for t = 0, 1, ..., 150, integrated (trapezoid rule) and divided by 150; 1 is perfect.
  The class-rebalanced variant weighs every pixel by the inverse prior probability of its true
  colour bin, so rare colours count as much as common ones.
- PSNR of the 8-bit sRGB images.
- Colourfulness of Hasler & Süsstrunk (2003), computed on 8-bit sRGB.
"""

from __future__ import annotations

import numpy as np

from colorize_core.bins import Bins

AUC_MAX_THRESHOLD = 150


def auc(ab_pred: np.ndarray, ab_true: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Area under the cumulative ab-error curve, thresholds 0..150, normalised to [0, 1].

    Parameters
    ----------
    ab_pred, ab_true : (..., 2) ab
    weights : (...) per-pixel weights (None: all equal)
    """
    distance = np.linalg.norm(ab_pred.astype(np.float64) - ab_true, axis=-1).ravel()
    w = np.ones_like(distance) if weights is None else np.asarray(weights, np.float64).ravel()
    # A pixel is within integer threshold t exactly when ceil(distance) <= t.
    first_threshold = np.minimum(np.ceil(distance), AUC_MAX_THRESHOLD + 1).astype(np.int64)
    within = np.cumsum(np.bincount(first_threshold, weights=w, minlength=AUC_MAX_THRESHOLD + 2))
    fraction = within[: AUC_MAX_THRESHOLD + 1] / w.sum()  # F(t) for t = 0..150
    return float(np.trapezoid(fraction) / AUC_MAX_THRESHOLD)


def rebalancing_pixel_weights(ab_true: np.ndarray, bins: Bins) -> np.ndarray:
    """1 / p̃ of every pixel's true colour bin, (..., 2) -> (...)."""
    classes = bins.class_from_cell[bins.grid.cells_from_ab(ab_true)]
    return 1.0 / bins.prior[classes]


def psnr(pred_rgb: np.ndarray, true_rgb: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images in dB (inf when identical)."""
    mse = np.mean((pred_rgb.astype(np.float64) - true_rgb.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler & Süsstrunk's colourfulness M = σ_rgyb + 0.3 μ_rgyb of a uint8 image (0 for gray)."""
    r, g, b = np.moveaxis(rgb.astype(np.float64), -1, 0)
    rg = r - g
    yb = 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
