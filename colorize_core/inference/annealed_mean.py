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

from colorize_core.color import GAMUT_TOLERANCE, f_inverse, linear_from_lab_in_gamut, srgb8_from_linear
from colorize_core.constants import D65_WHITE, RGB_FROM_XYZ

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
    batch, bins, height, width = weights.shape
    # (2, Q) @ (B, Q, h·w): the big operand is read in its own layout, only the (B, 2, h·w) result is
    # moved to channels-last (an einsum over "bqhw,qc" copied the weights first: 2x slower)
    ab = torch.matmul(centres.float().T, weights.reshape(batch, bins, height * width))
    return ab.reshape(batch, 2, height, width).permute(0, 2, 3, 1).contiguous()


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


class _Upsampler:
    """Bilinear upsampling of one coarse ab grid to (H, W), one strip of rows at a time."""

    def __init__(self, ab_grid: np.ndarray, height: int, width: int):
        grid_h, grid_w = ab_grid.shape[:2]
        x_low, x_high, x_weight = _linear_taps(width, grid_w)
        grid = ab_grid.astype(np.float32)
        rows = grid[:, x_low] * (1 - x_weight)[None, :, None] + grid[:, x_high] * x_weight[None, :, None]  # (h, W, 2)
        self.a_rows, self.b_rows = np.ascontiguousarray(rows[..., 0]), np.ascontiguousarray(rows[..., 1])
        self.y_low, self.y_high, self.y_weight = _linear_taps(height, grid_h)

    def strip(self, rows: slice) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) of the rows, each (rows, W) float32."""
        wy = self.y_weight[rows, None]
        low, high = self.y_low[rows], self.y_high[rows]
        return self.a_rows[low] * (1 - wy) + self.a_rows[high] * wy, self.b_rows[low] * (1 - wy) + self.b_rows[high] * wy


def compose_many(lightness: np.ndarray, ab_grids: list[np.ndarray], strip_pixels: int = STRIP_PIXELS) -> list[np.ndarray]:
    """Join full-resolution L with several coarse ab predictions (e.g. one per temperature).

    What depends on L alone (its share of XYZ) is computed once per strip for all of them.

    Parameters
    ----------
    lightness : (H, W) L in [0, 100], the image's own lightness
    ab_grids : each (h, w, 2), ab predicted over the whole image (any h, w)

    Returns
    -------
    One (H, W, 3) uint8 sRGB image per grid. Out-of-gamut colours lose chroma at constant L and
    hue, so every output keeps the input's lightness up to the 8-bit rounding.
    """
    height, width = lightness.shape
    upsamplers = [_Upsampler(grid, height, width) for grid in ab_grids]
    outs = [np.empty((height, width, 3), np.uint8) for _ in ab_grids]
    white = D65_WHITE.astype(np.float32)
    rgb_from_xyz = RGB_FROM_XYZ.astype(np.float32)
    rows_per_strip = max(1, strip_pixels // max(width, 1))
    for top in range(0, height, rows_per_strip):
        rows = slice(top, min(top + rows_per_strip, height))
        L = lightness[rows].astype(np.float32)
        fy = (L + 16) / 116
        y = f_inverse(fy)  # Y of the pixel (white has Y = 1), the same for every prediction
        for upsampler, out in zip(upsamplers, outs):
            a, b = upsampler.strip(rows)
            x = f_inverse(fy + a / 500) * white[0]
            z = f_inverse(fy - b / 200) * white[2]
            linear = [m[0] * x + m[1] * y + m[2] * z for m in rgb_from_xyz]  # R, G, B, each (rows, W)
            outside = np.zeros(L.shape, bool)
            for channel in linear:
                if channel.min() < -GAMUT_TOLERANCE or channel.max() > 1 + GAMUT_TOLERANCE:
                    outside |= (channel < -GAMUT_TOLERANCE) | (channel > 1 + GAMUT_TOLERANCE)
            if outside.any():  # bring those colours in at constant L and hue
                mapped = linear_from_lab_in_gamut(np.stack([L[outside], a[outside], b[outside]], axis=-1))
                for c, channel in enumerate(linear):
                    channel[outside] = mapped[:, c]
            for c, channel in enumerate(linear):
                out[rows, :, c] = srgb8_from_linear(channel)
    return outs


def compose(lightness: np.ndarray, ab_grid: np.ndarray, strip_pixels: int = STRIP_PIXELS) -> np.ndarray:
    """Join full-resolution L, (H, W), with one coarse ab prediction, (h, w, 2), into (H, W, 3)
    uint8 sRGB; see :func:`compose_many`."""
    return compose_many(lightness, [ab_grid], strip_pixels)[0]
