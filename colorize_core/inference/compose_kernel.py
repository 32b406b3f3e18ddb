"""The full-resolution composition as one compiled pass (Numba), for long-running callers.

:func:`annealed_mean.compose_many` is the reference: numpy, strip by strip, about 40 array passes
per pixel. This kernel does the same arithmetic per pixel, row by row on every core, in loops
that the compiler vectorizes: bilinear ab from the coarse grid, Lab -> linear RGB in float32 with
the same operations in the same order, and the 8-bit table look-up (about 2.2× faster than one
scalar pass with a branch per pixel; benchmarks/NOTES.md). Pixels outside the sRGB gamut (a small share) are
brought in at constant L and hue as :func:`color.linear_from_lab_in_gamut` does (its (L, hue)
boundary table, then bisection where the table overshoots), in float64, gathered row by row so
that this arithmetic vectorizes too (the hue from a series for atan instead of libm's atan2, within
1e-11 rad). In-gamut pixels come out bit for bit as the reference's; a gamut-mapped one may differ
by one 8-bit level, where the hue or the 3×3 product round their last bits differently (a few of
a million pixels; tests/test_decode.py).

Importing Numba costs about 0.35 s and loading the kernel from Numba's on-disk cache about 0.45 s
(compiling it, the first time, about 3 s), so one photo at one temperature keeps the numpy
reference; everything that composes more (``Colorizer``'s ``compiled``): the decode stage and the
web page always, ``colorize photo`` on a folder or at several temperatures, and ``colorize video``
(so that its frames are composed as ``colorize photo``'s on a folder of them), which load it in
a background thread while the model loads.
Without Numba installed it falls back to the reference.
"""

from __future__ import annotations

import numpy as np

from colorize_core.color import (
    _GAMUT_HUE_STEPS,
    _GAMUT_L_STEPS,
    _LINEAR_STEPS,
    GAMUT_BISECTION_STEPS,
    GAMUT_TOLERANCE,
    _max_chroma_table,
    _srgb8_of_linear_step,
)
from colorize_core.constants import D65_WHITE, LAB_KAPPA, LAB_OFFSET, RGB_FROM_XYZ
from colorize_core.device import available_cores
from colorize_core.inference.annealed_mean import _linear_taps, compose, compose_many
from colorize_core.inference.bands import run_in_bands

try:
    import numba
except ImportError:  # the callers fall back to the reference
    numba = None


def numba_available() -> bool:
    return numba is not None


def _jit(**options):
    """``numba.njit(**options)``; without Numba the plain function (never called: see compose_fast)."""
    return numba.njit(**options) if numba is not None else (lambda function: function)


# The kernel and its helpers live at module level, their constants module globals (which Numba
# freezes into the code): a closure's cells would change the key of Numba's on-disk cache in every
# process, recompiling the kernel (3 s) each time.
_F32 = np.float32
_EDGE, _OFFSET, _KAPPA = _F32(6 / 29), _F32(LAB_OFFSET), _F32(LAB_KAPPA)
_SIXTEEN, _L_SCALE, _A_SCALE, _B_SCALE = _F32(16), _F32(116), _F32(500), _F32(200)
_ONE, _ZERO, _LOW_LIMIT, _HIGH_LIMIT = _F32(1), _F32(0), _F32(-GAMUT_TOLERANCE), _F32(1 + GAMUT_TOLERANCE)
_STEPS, _HALF = _F32(_LINEAR_STEPS), _F32(0.5)
_EDGE64, _OFFSET64, _KAPPA64 = 6 / 29, LAB_OFFSET, LAB_KAPPA
_L_FACTOR, _HUE_FACTOR = (_GAMUT_L_STEPS - 1) / 100, _GAMUT_HUE_STEPS / (2 * np.pi)
#: atan's Taylor series is summed to x^(2 · _ATAN_TERMS - 1) on |x| <= tan(π/8) (see _atan_unit).
_TAN_PI_8, _ATAN_TERMS = np.tan(np.pi / 8), 12


@_jit(inline="always")
def _f_inverse(f):
    return f * f * f if f > _EDGE else (f - _OFFSET) / _KAPPA


@_jit(inline="always")
def _f_inverse64(f):
    return f * f * f if f > _EDGE64 else (f - _OFFSET64) / _KAPPA64


@_jit(inline="always")
def _linear64(L, a, b, white, matrix):
    """color.linear_from_lab of one colour in float64: (r, g, b) and whether all three are in gamut."""
    fy = (L + 16) / 116
    x = _f_inverse64(fy + a / 500) * white[0]
    y = _f_inverse64(fy) * white[1]
    z = _f_inverse64(fy - b / 200) * white[2]
    red = matrix[0, 0] * x + matrix[0, 1] * y + matrix[0, 2] * z
    green = matrix[1, 0] * x + matrix[1, 1] * y + matrix[1, 2] * z
    blue = matrix[2, 0] * x + matrix[2, 1] * y + matrix[2, 2] * z
    limit = 0.5 + GAMUT_TOLERANCE
    inside = (abs(red - 0.5) <= limit) & (abs(green - 0.5) <= limit) & (abs(blue - 0.5) <= limit)
    return red, green, blue, inside


@_jit(inline="always")
def _atan_unit(t):
    """atan(t) for t in [0, 1], within 1e-11: its Taylor series to x^23 on |x| <= tan(π/8), after
    atan(t) = π/4 + atan((t - 1) / (t + 1)) for the larger t. Selects, no branches, so that a loop
    over it vectorizes (np.arctan2 is a libm call per pixel)."""
    big = t > _TAN_PI_8
    x = (t - 1.0) / (t + 1.0) if big else t
    z = x * x
    s = 1.0 / (2 * _ATAN_TERMS - 1)
    for k in range(_ATAN_TERMS - 2, -1, -1):
        s = 1.0 / (2 * k + 1) - z * s
    return x * s + (np.pi / 4 if big else 0.0)


@_jit(inline="always")
def _hue(a, b):
    """np.mod(np.arctan2(b, a), 2π) within 1e-11 rad (tests/test_decode.py), vectorizable."""
    ax, ay = abs(a), abs(b)
    angle = _atan_unit(min(ax, ay) / max(ax, ay, 1e-300))
    angle = np.pi / 2 - angle if ay > ax else angle
    angle = np.pi - angle if np.signbit(a) else angle  # as arctan2: a = -0.0 is on the left
    return 2 * np.pi - angle if (b < 0) & (angle > 0) else angle


@_jit(cache=True)
def _map_into_gamut(lab, count, boundary, white, matrix, work, rgb_out):
    """color.linear_from_lab_in_gamut's mapping of ``count`` out-of-gamut colours, in float64.

    lab (3, n): their L, a and b in its first ``count`` columns; work (8, n): scratch; rgb_out
    (3, n): their linear RGB in gamut. The chroma is scaled to the (L, hue) boundary table's
    value × 0.999 and, where that still overshoots, bisected from [0, that scale].
    Each loop does one kind of work, so that the arithmetic vectorizes apart from the table's
    gathers and the compaction.
    """
    cell, x_weight, y_weight, scale, low, high, order = work[0], work[1], work[2], work[3], work[4], work[5], work[6]
    for k in range(count):  # the table cell of (L, hue) and the bilinear weights
        xx = min(max(lab[0, k], 0.0), 100.0) * _L_FACTOR
        yy = _hue(lab[1, k], lab[2, k]) * _HUE_FACTOR
        x0 = min(np.floor(xx), _GAMUT_L_STEPS - 2)
        y0 = min(np.floor(yy), _GAMUT_HUE_STEPS - 1)
        cell[k] = x0 * (_GAMUT_HUE_STEPS + 1) + y0
        x_weight[k], y_weight[k] = xx - x0, yy - y0
    for k in range(count):  # gathers
        c = np.int64(cell[k])
        wx, wy = x_weight[k], y_weight[k]
        scale[k] = (
            boundary[c] * (1 - wx) * (1 - wy)
            + boundary[c + _GAMUT_HUE_STEPS + 1] * wx * (1 - wy)
            + boundary[c + 1] * (1 - wx) * wy
            + boundary[c + _GAMUT_HUE_STEPS + 2] * wx * wy
        )
    inside = work[7]
    for k in range(count):  # the chroma scaled to the table's boundary
        L, a, b = lab[0, k], lab[1, k], lab[2, k]
        chroma = np.sqrt(a * a + b * b)  # not np.hypot: libm's overflow guard, 13 ns a pixel; |a|, |b| < 200
        scale[k] = min(max(scale[k] * 0.999 / max(chroma, 1e-12), 0.0), 1.0)
        rgb_out[0, k], rgb_out[1, k], rgb_out[2, k], inside[k] = _linear64(L, a * scale[k], b * scale[k], white, matrix)
    missed = 0
    for k in range(count):  # where the interpolated boundary still overshoots
        if not inside[k]:
            order[missed], low[missed], high[missed] = k, 0.0, scale[k]
            missed += 1
    missed_L, missed_a, missed_b = work[0], work[1], work[2]  # the table's rows are no longer needed
    for m in range(missed):
        k = np.int64(order[m])
        missed_L[m], missed_a[m], missed_b[m] = lab[0, k], lab[1, k], lab[2, k]
    for _ in range(GAMUT_BISECTION_STEPS):  # color._bisect_chroma, every missed colour at once
        for m in range(missed):
            mid = (low[m] + high[m]) / 2
            fits = _linear64(missed_L[m], missed_a[m] * mid, missed_b[m] * mid, white, matrix)[3]
            low[m] = mid if fits else low[m]
            high[m] = high[m] if fits else mid
    for m in range(missed):
        k = np.int64(order[m])
        r, g, bl, _ = _linear64(missed_L[m], missed_a[m] * low[m], missed_b[m] * low[m], white, matrix)
        rgb_out[0, k], rgb_out[1, k], rgb_out[2, k] = r, g, bl


@_jit(nogil=True, cache=True)
def _rows_along_x(grid, x_low, x_high, x_weight):
    """The coarse grid (h, w) interpolated along x to the photo's width, (h, W): as _Upsampler."""
    rows = np.empty((grid.shape[0], x_low.shape[0]), np.float32)
    for r in range(grid.shape[0]):
        for j in range(x_low.shape[0]):
            rows[r, j] = grid[r, x_low[j]] * (_ONE - x_weight[j]) + grid[r, x_high[j]] * x_weight[j]
    return rows


@_jit(nogil=True, cache=True)
def _compose_kernel(
    first_row, row_step, lightness, a_rows, b_rows, y_low, y_high, y_weight,
    white, matrix, table, white64, matrix64, boundary, out,
):  # fmt: skip
    """Rows first_row, first_row + row_step, ... of out (H, W, 3) uint8, from lightness (H, W), the
    coarse grid's a and b interpolated along x (h, W) and the taps along y. Each core takes every
    row_step-th row: out-of-gamut pixels, several times dearer than the rest, cluster in the sky or
    on one object, and contiguous halves left one core idle for up to half of the composition.

    Each row in loops that the compiler can vectorize (no call or branch but selects): linear RGB
    and an out-of-gamut flag for every pixel; the flagged pixels gathered and mapped into the
    gamut (:func:`_map_into_gamut`) and scattered back; the 8-bit look-up. The same operations in
    the same order as the reference.
    """
    height, width = lightness.shape
    m00, m01, m02 = matrix[0, 0], matrix[0, 1], matrix[0, 2]
    m10, m11, m12 = matrix[1, 0], matrix[1, 1], matrix[1, 2]
    m20, m21, m22 = matrix[2, 0], matrix[2, 1], matrix[2, 2]
    red, green, blue = np.empty(width, np.float32), np.empty(width, np.float32), np.empty(width, np.float32)
    outside = np.empty(width, np.uint8)
    index = np.empty(width, np.int64)
    lab, work, mapped = np.empty((3, width)), np.empty((8, width)), np.empty((3, width))  # out-of-gamut pixels
    for i in range(first_row, height, row_step):
        wy = y_weight[i]
        vy = _ONE - wy
        a_low, a_high, b_low, b_high = a_rows[y_low[i]], a_rows[y_high[i]], b_rows[y_low[i]], b_rows[y_high[i]]
        row = lightness[i]
        for j in range(width):
            a = a_low[j] * vy + a_high[j] * wy
            b = b_low[j] * vy + b_high[j] * wy
            fy = (row[j] + _SIXTEEN) / _L_SCALE
            y = _f_inverse(fy)
            x = _f_inverse(fy + a / _A_SCALE) * white[0]
            z = _f_inverse(fy - b / _B_SCALE) * white[2]
            r = m00 * x + m01 * y + m02 * z
            g = m10 * x + m11 * y + m12 * z
            bl = m20 * x + m21 * y + m22 * z
            red[j], green[j], blue[j] = r, g, bl
            outside[j] = (
                (r < _LOW_LIMIT) | (r > _HIGH_LIMIT) | (g < _LOW_LIMIT) | (g > _HIGH_LIMIT)
                | (bl < _LOW_LIMIT) | (bl > _HIGH_LIMIT)
            )  # fmt: skip
        count = 0
        for j in range(width):
            if outside[j]:  # at constant L and hue, in float64 as the reference
                index[count] = j
                lab[0, count] = row[j]
                lab[1, count] = a_low[j] * vy + a_high[j] * wy
                lab[2, count] = b_low[j] * vy + b_high[j] * wy
                count += 1
        if count:
            _map_into_gamut(lab, count, boundary, white64, matrix64, work, mapped)
            for k in range(count):
                j = index[k]
                red[j], green[j], blue[j] = mapped[0, k], mapped[1, k], mapped[2, k]  # rounded to float32
        pixels = out[i]
        for j in range(width):
            pixels[j, 0] = table[np.int32(min(max(red[j], _ZERO), _ONE) * _STEPS + _HALF)]
            pixels[j, 1] = table[np.int32(min(max(green[j], _ZERO), _ONE) * _STEPS + _HALF)]
            pixels[j, 2] = table[np.int32(min(max(blue[j], _ZERO), _ONE) * _STEPS + _HALF)]


def warm_up() -> None:
    """Load the kernel now (from Numba's disk cache, or compile it), not at its first real use.

    In the calling thread alone (``threads=1``): a background load may still run while the
    interpreter exits, when the band pool takes no more work."""
    compose_fast(np.zeros((2, 2), np.float32), np.zeros((1, 1, 2), np.float32), threads=1)


def compose_many_fast(
    lightness: np.ndarray, ab_grids: list[np.ndarray], threads: int | None = None
) -> list[np.ndarray]:
    """As :func:`annealed_mean.compose_many` (the same pixels), compiled; the reference itself
    where Numba is not installed."""
    if not numba_available():
        return compose_many(lightness, ab_grids)
    return [compose_fast(lightness, grid, threads) for grid in ab_grids]


def compose_fast(lightness: np.ndarray, ab_grid: np.ndarray, threads: int | None = None) -> np.ndarray:
    """As :func:`annealed_mean.compose`: full-resolution L, (H, W), with a coarse ab grid,
    (h, w, 2), into (H, W, 3) uint8 sRGB; in bands on ``threads`` cores (None: all; the same pixels
    either way)."""
    if not numba_available():
        return compose(lightness, ab_grid)
    height, width = lightness.shape
    out = np.empty((height, width, 3), np.uint8)
    grid = ab_grid.astype(np.float32)  # (h, w, 2)
    x_taps = _linear_taps(width, grid.shape[1])  # the reference's taps (_Upsampler)
    a_rows, b_rows = (_rows_along_x(np.ascontiguousarray(grid[..., c]), *x_taps) for c in (0, 1))
    arguments = (
        np.ascontiguousarray(lightness, np.float32),
        a_rows,
        b_rows,
        *_linear_taps(height, grid.shape[0]),
        D65_WHITE.astype(np.float32),
        RGB_FROM_XYZ.astype(np.float32),
        _srgb8_of_linear_step(),
        D65_WHITE,
        RGB_FROM_XYZ,
        _max_chroma_table().ravel(),
        out,
    )
    bands = min(threads or available_cores(), available_cores(), height)
    run_in_bands(lambda band: _compose_kernel(band, bands, *arguments), bands)
    return out
