"""From predicted distributions to colour images (the reference study's section 7).

The annealed mean of a distribution Ẑ over the Q kept bins (Zhang et al. Eq. 5),

    H(Ẑ) = Σ_q f_T(Ẑ)_q · c_q,    f_T(z) = exp(log z / T) / Σ_q exp(log z_q / T),

interpolates between the mode (T → 0: vivid, spotty) and the mean (T = 1: sepia). It is computed
in log space, so any T > 0 is stable; T = 0 is exactly the arg-max bin's centre. The ab predicted
on the coarse grid is then upsampled to the image's own size and joined with its original
full-resolution lightness, in horizontal strips so that huge images need little memory.
"""

from __future__ import annotations

import numpy as np
import torch

from colorize_core.color import srgb_from_lab_in_gamut

#: Pixels converted per strip when composing a full-resolution image (bounds temporary memory).
STRIP_PIXELS = 1 << 20


def annealed_distribution(log_probs: torch.Tensor, T: float, dim: int = 1) -> torch.Tensor:
    """f_T of a distribution given as log-probabilities, same shape.

    T = 0 gives the one-hot arg-max; T > 0 is a softmax of log z / T, finite even for log z = -inf
    entries (zero probabilities) as long as one entry is finite.
    """
    if T < 0:
        raise ValueError(f"temperature must be >= 0, got {T}")
    if T == 0:
        index = log_probs.argmax(dim=dim, keepdim=True)
        return torch.zeros_like(log_probs).scatter_(dim, index, 1.0)
    return torch.softmax(log_probs / T, dim=dim)


def ab_from_log_probs(log_probs: torch.Tensor, centres: torch.Tensor, T: float) -> torch.Tensor:
    """Annealed-mean ab of every pixel.

    Parameters
    ----------
    log_probs : (B, Q, h, w) log Ẑ
    centres : (Q, 2) ab centres of the kept bins
    T : temperature >= 0

    Returns
    -------
    (B, h, w, 2) ab, float32.
    """
    if T == 0:  # exactly the arg-max centre, no arithmetic on the others
        return centres.float()[log_probs.argmax(dim=1)]
    weights = annealed_distribution(log_probs.float(), T, dim=1)  # (B, Q, h, w)
    return torch.einsum("bqhw,qc->bhwc", weights, centres.float())


def ab_from_probs(probs: torch.Tensor, centres: torch.Tensor, T: float) -> torch.Tensor:
    """As :func:`ab_from_log_probs` for probabilities (zeros allowed), (B, Q, h, w) -> (B, h, w, 2)."""
    return ab_from_log_probs(torch.log(probs), centres, T)


def _linear_taps(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps (align_corners=False, as torch): lower index, upper index, upper weight."""
    position = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
    position = np.clip(position, 0, in_size - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, in_size - 1)
    return low, high, (position - low).astype(np.float32)


def compose(lightness: np.ndarray, ab_grid: np.ndarray, strip_pixels: int = STRIP_PIXELS) -> np.ndarray:
    """Join full-resolution L with coarse ab, upsampled bilinearly, into 8-bit sRGB.

    Parameters
    ----------
    lightness : (H, W) L in [0, 100], the image's own lightness
    ab_grid : (h, w, 2) ab predicted over the whole image (any h, w)

    Returns
    -------
    (H, W, 3) uint8 sRGB. Out-of-gamut colours lose chroma at constant L and hue, so the output
    keeps the input's lightness up to the 8-bit rounding.
    """
    height, width = lightness.shape
    grid_h, grid_w = ab_grid.shape[:2]
    x_low, x_high, x_weight = _linear_taps(width, grid_w)
    ab_grid = ab_grid.astype(np.float32)
    ab_rows = ab_grid[:, x_low] * (1 - x_weight)[None, :, None] + ab_grid[:, x_high] * x_weight[None, :, None]  # (h, W, 2)
    y_low, y_high, y_weight = _linear_taps(height, grid_h)
    out = np.empty((height, width, 3), np.uint8)
    rows_per_strip = max(1, strip_pixels // max(width, 1))
    for top in range(0, height, rows_per_strip):
        rows = slice(top, min(top + rows_per_strip, height))
        wy = y_weight[rows, None, None]
        ab = ab_rows[y_low[rows]] * (1 - wy) + ab_rows[y_high[rows]] * wy  # (rows, W, 2)
        lab = np.concatenate([lightness[rows, :, None].astype(np.float32), ab], axis=-1)
        out[rows] = np.round(srgb_from_lab_in_gamut(lab) * 255).astype(np.uint8)
    return out
