"""The full-resolution composition as one compiled pass (Numba), for long-running callers.

:func:`annealed_mean.compose_many` is the reference: numpy, strip by strip, about 40 array passes
per pixel. This kernel does the same arithmetic per pixel, row by row on every core, in loops
that the compiler vectorizes: bilinear ab from the coarse grid, Lab -> linear RGB in float32 with
the same operations in the same order, and the 8-bit table look-up (about 2.2× faster than one
scalar pass with a branch per pixel; benchmarks/NOTES.md). Pixels outside the sRGB gamut (a small share) are
brought in at constant L and hue as :func:`color.linear_from_lab_in_gamut` does (its (L, hue)
boundary table, then bisection where the table overshoots), per pixel in float64. In-gamut
pixels come out bit for bit as the reference's; a gamut-mapped one may differ by one 8-bit level,
where numpy and Numba round the last bit of float64 atan2 or the 3×3 product differently (4 of
872,000 pixels of a demo photo at T = 0.09; tests/test_decode.py).

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
    GAMUT_TOLERANCE,
    _max_chroma_table,
    _srgb8_of_linear_step,
)
from colorize_core.constants import D65_WHITE, LAB_KAPPA, LAB_OFFSET, RGB_FROM_XYZ
from colorize_core.inference.annealed_mean import _linear_taps, compose, compose_many

try:
    import numba
except ImportError:  # the callers fall back to the reference
    numba = None


def numba_available() -> bool:
    return numba is not None


def _jit(**options):
    """``numba.njit(**options)``; without Numba the plain function (never called: see compose_fast)."""
    return numba.njit(**options) if numba is not None else (lambda function: function)


_prange = numba.prange if numba is not None else range
#: The kernel's rows are dealt to the cores in this many interleaved stripes. Out-of-gamut pixels,
#: 20 to 50 times dearer than the rest, cluster in the sky or on one object; contiguous blocks of
#: rows (Numba's static schedule) left one core idle for up to half of the composition.
_STRIPES = 64

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


@_jit(inline="always")
def _f_inverse(f):
    return f * f * f if f > _EDGE else (f - _OFFSET) / _KAPPA


@_jit(inline="always")
def _f_inverse64(f):
    return f * f * f if f > _EDGE64 else (f - _OFFSET64) / _KAPPA64


@_jit(inline="always")
def _linear64(L, a, b, white, matrix, rgb):
    """color.linear_from_lab of one colour, float64, into rgb (3,); whether it is in gamut."""
    fy = (L + 16) / 116
    x = _f_inverse64(fy + a / 500) * white[0]
    y = _f_inverse64(fy) * white[1]
    z = _f_inverse64(fy - b / 200) * white[2]
    inside = True
    for c in range(3):
        rgb[c] = matrix[c, 0] * x + matrix[c, 1] * y + matrix[c, 2] * z
        if abs(rgb[c] - 0.5) > 0.5 + GAMUT_TOLERANCE:
            inside = False
    return inside


@_jit(inline="always")
def _in_gamut(L, a, b, boundary_table, white, matrix, rgb):
    """color.linear_from_lab_in_gamut's mapping of one out-of-gamut colour (float64), into rgb (3,)."""
    chroma = np.sqrt(a * a + b * b)  # np.hypot's overflow guard is libm's slow path (13 ns a pixel); |a|, |b| < 200
    xx = min(max(L, 0.0), 100.0) * _L_FACTOR
    yy = np.mod(np.arctan2(b, a), 2 * np.pi) * _HUE_FACTOR
    x0 = min(np.int64(np.floor(xx)), _GAMUT_L_STEPS - 2)
    y0 = min(np.int64(np.floor(yy)), _GAMUT_HUE_STEPS - 1)
    wx, wy = xx - x0, yy - y0
    boundary = (
        boundary_table[x0, y0] * (1 - wx) * (1 - wy)
        + boundary_table[x0 + 1, y0] * wx * (1 - wy)
        + boundary_table[x0, y0 + 1] * (1 - wx) * wy
        + boundary_table[x0 + 1, y0 + 1] * wx * wy
    )
    scale = min(max(boundary * 0.999 / max(chroma, 1e-12), 0.0), 1.0)
    if not _linear64(L, a * scale, b * scale, white, matrix, rgb):  # the table overshoots
        low, high = 0.0, scale
        for _ in range(12):
            mid = (low + high) / 2
            if _linear64(L, a * mid, b * mid, white, matrix, rgb):
                low = mid
            else:
                high = mid
        _linear64(L, a * low, b * low, white, matrix, rgb)


@_jit(parallel=True, cache=True)
def _compose_kernel(
    lightness, grid_a, grid_b, x_low, x_high, x_weight, y_low, y_high, y_weight,
    white, matrix, table, white64, matrix64, boundary, out,
):  # fmt: skip
    """out (H, W, 3) uint8 from lightness (H, W), the coarse grid's a and b (h, w) and the bilinear taps.

    Each row in three loops that the compiler can vectorize (no call or branch but selects): linear
    RGB and an out-of-gamut flag for every pixel, then the rare flagged pixels mapped into the
    gamut, then the 8-bit look-up. The same operations in the same order as the reference.
    """
    height, width = lightness.shape
    grid_h = grid_a.shape[0]
    a_rows = np.empty((grid_h, width), np.float32)  # the grid interpolated along x, as _Upsampler
    b_rows = np.empty((grid_h, width), np.float32)
    for r in range(grid_h):  # serial: a few dozen rows, cheaper than waking the cores for a second parallel loop
        for j in range(width):
            a_rows[r, j] = grid_a[r, x_low[j]] * (_ONE - x_weight[j]) + grid_a[r, x_high[j]] * x_weight[j]
            b_rows[r, j] = grid_b[r, x_low[j]] * (_ONE - x_weight[j]) + grid_b[r, x_high[j]] * x_weight[j]
    m00, m01, m02 = matrix[0, 0], matrix[0, 1], matrix[0, 2]
    m10, m11, m12 = matrix[1, 0], matrix[1, 1], matrix[1, 2]
    m20, m21, m22 = matrix[2, 0], matrix[2, 1], matrix[2, 2]
    for stripe in _prange(_STRIPES):  # rows stripe, stripe + _STRIPES, ...: each core gets every part of the photo
        for i in range(stripe, height, _STRIPES):
            wy = y_weight[i]
            vy = _ONE - wy
            a_low, a_high, b_low, b_high = a_rows[y_low[i]], a_rows[y_high[i]], b_rows[y_low[i]], b_rows[y_high[i]]
            row = lightness[i]
            red, green, blue = np.empty(width, np.float32), np.empty(width, np.float32), np.empty(width, np.float32)
            outside = np.empty(width, np.uint8)
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
            rgb = np.empty(3)
            for j in range(width):
                if outside[j]:  # at constant L and hue, in float64 as the reference
                    a = a_low[j] * vy + a_high[j] * wy
                    b = b_low[j] * vy + b_high[j] * wy
                    _in_gamut(np.float64(row[j]), np.float64(a), np.float64(b), boundary, white64, matrix64, rgb)
                    red[j], green[j], blue[j] = np.float32(rgb[0]), np.float32(rgb[1]), np.float32(rgb[2])
            pixels = out[i]
            for j in range(width):
                pixels[j, 0] = table[np.int32(min(max(red[j], _ZERO), _ONE) * _STEPS + _HALF)]
                pixels[j, 1] = table[np.int32(min(max(green[j], _ZERO), _ONE) * _STEPS + _HALF)]
                pixels[j, 2] = table[np.int32(min(max(blue[j], _ZERO), _ONE) * _STEPS + _HALF)]
    return out


def warm_up() -> None:
    """Load the kernel now (from Numba's disk cache, or compile it), not at its first real use."""
    compose_fast(np.zeros((2, 2), np.float32), np.zeros((1, 1, 2), np.float32))


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
    (h, w, 2), into (H, W, 3) uint8 sRGB; on ``threads`` cores (None: all; the same pixels either way)."""
    if not numba_available():
        return compose(lightness, ab_grid)
    out = np.empty((*lightness.shape, 3), np.uint8)
    previous = numba.get_num_threads()  # a setting of the calling thread alone
    numba.set_num_threads(min(threads or numba.config.NUMBA_NUM_THREADS, numba.config.NUMBA_NUM_THREADS))
    try:
        _run_kernel(lightness, ab_grid, out)
    finally:
        numba.set_num_threads(previous)
    return out


def _run_kernel(lightness: np.ndarray, ab_grid: np.ndarray, out: np.ndarray) -> None:
    height, width = lightness.shape
    grid = ab_grid.astype(np.float32)  # (h, w, 2)
    _compose_kernel(
        np.ascontiguousarray(lightness, np.float32),
        np.ascontiguousarray(grid[..., 0]),
        np.ascontiguousarray(grid[..., 1]),
        *_linear_taps(width, grid.shape[1]),  # the reference's taps (_Upsampler)
        *_linear_taps(height, grid.shape[0]),
        D65_WHITE.astype(np.float32),
        RGB_FROM_XYZ.astype(np.float32),
        _srgb8_of_linear_step(),
        D65_WHITE,
        RGB_FROM_XYZ,
        _max_chroma_table(),
        out,
    )
