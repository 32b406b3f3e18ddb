"""The full-resolution composition as one compiled pass (Numba), for long-running callers.

:func:`annealed_mean.compose_many` is the reference: numpy, strip by strip, about 40 array passes
per pixel. This kernel does the same arithmetic per pixel in one pass over the image, on every
core: bilinear ab from the coarse grid, Lab -> linear RGB in float32 with the same operations in
the same order, and the 8-bit table look-up. Pixels outside the sRGB gamut (a small share) are
brought in at constant L and hue as :func:`color.linear_from_lab_in_gamut` does (its (L, hue)
boundary table, then bisection where the table overshoots), per pixel in float64. In-gamut
pixels come out bit for bit as the reference's; a gamut-mapped one may differ by one 8-bit level,
where numpy and Numba round the last bit of float64 atan2 or the 3×3 product differently (4 of
872,000 pixels of a demo photo at T = 0.09; tests/test_decode.py).

Importing Numba costs about half a second, and compiling the kernel a few seconds the first time
(then it is cached on disk), so one-photo commands keep the numpy reference; the long-running
callers use this (``Colorizer(compiled=True)``: the decode stage and the web page; ``colorize
video`` keeps the reference, so that its frames equal ``colorize photo``'s bit for bit).
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
from colorize_core.inference.annealed_mean import _Upsampler, compose, compose_many

_kernel = None


def numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _compiled():
    """The Numba kernel, compiled (or read from Numba's cache) on first use."""
    global _kernel
    if _kernel is None:
        import numba

        f32 = np.float32
        edge, offset, kappa = f32(6 / 29), f32(LAB_OFFSET), f32(LAB_KAPPA)
        sixteen, l_scale, a_scale, b_scale = f32(16), f32(116), f32(500), f32(200)
        one, low_limit, high_limit = f32(1), f32(-GAMUT_TOLERANCE), f32(1 + GAMUT_TOLERANCE)
        steps, half = f32(_LINEAR_STEPS), f32(0.5)

        @numba.njit(inline="always")
        def f_inverse(f):
            return f * f * f if f > edge else (f - offset) / kappa

        edge64, offset64, kappa64 = 6 / 29, LAB_OFFSET, LAB_KAPPA
        l_factor, hue_factor = (_GAMUT_L_STEPS - 1) / 100, _GAMUT_HUE_STEPS / (2 * np.pi)

        @numba.njit(inline="always")
        def f_inverse64(f):
            return f * f * f if f > edge64 else (f - offset64) / kappa64

        @numba.njit(inline="always")
        def linear64(L, a, b, white, matrix, rgb):
            """color.linear_from_lab of one colour, float64, into rgb (3,); whether it is in gamut."""
            fy = (L + 16) / 116
            x = f_inverse64(fy + a / 500) * white[0]
            y = f_inverse64(fy) * white[1]
            z = f_inverse64(fy - b / 200) * white[2]
            inside = True
            for c in range(3):
                rgb[c] = matrix[c, 0] * x + matrix[c, 1] * y + matrix[c, 2] * z
                if abs(rgb[c] - 0.5) > 0.5 + GAMUT_TOLERANCE:
                    inside = False
            return inside

        @numba.njit(inline="always")
        def in_gamut(L, a, b, boundary_table, white, matrix, rgb):
            """color.linear_from_lab_in_gamut's mapping of one out-of-gamut colour (float64), into rgb (3,)."""
            chroma = np.hypot(a, b)
            xx = min(max(L, 0.0), 100.0) * l_factor
            yy = np.mod(np.arctan2(b, a), 2 * np.pi) * hue_factor
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
            if not linear64(L, a * scale, b * scale, white, matrix, rgb):  # the table overshoots
                low, high = 0.0, scale
                for _ in range(12):
                    mid = (low + high) / 2
                    if linear64(L, a * mid, b * mid, white, matrix, rgb):
                        low = mid
                    else:
                        high = mid
                linear64(L, a * low, b * low, white, matrix, rgb)

        @numba.njit(parallel=True, cache=True)
        def compose_kernel(
            lightness, a_rows, b_rows, y_low, y_high, y_weight, white, matrix, table, white64, matrix64, boundary, out
        ):
            height, width = lightness.shape
            for i in numba.prange(height):
                wy = y_weight[i]
                linear = np.empty(3, np.float32)
                rgb = np.empty(3)
                for j in range(width):
                    a = a_rows[y_low[i], j] * (one - wy) + a_rows[y_high[i], j] * wy
                    b = b_rows[y_low[i], j] * (one - wy) + b_rows[y_high[i], j] * wy
                    fy = (lightness[i, j] + sixteen) / l_scale
                    y = f_inverse(fy)
                    x = f_inverse(fy + a / a_scale) * white[0]
                    z = f_inverse(fy - b / b_scale) * white[2]
                    inside = True
                    for c in range(3):
                        linear[c] = matrix[c, 0] * x + matrix[c, 1] * y + matrix[c, 2] * z
                        if linear[c] < low_limit or linear[c] > high_limit:
                            inside = False
                    if not inside:  # at constant L and hue, in float64 as the reference
                        in_gamut(np.float64(lightness[i, j]), np.float64(a), np.float64(b), boundary, white64, matrix64, rgb)
                        for c in range(3):
                            linear[c] = np.float32(rgb[c])
                    for c in range(3):
                        clipped = min(max(linear[c], f32(0)), one)
                        out[i, j, c] = table[np.int32(clipped * steps + half)]
            return out

        _kernel = compose_kernel
    return _kernel


def compose_many_fast(lightness: np.ndarray, ab_grids: list[np.ndarray]) -> list[np.ndarray]:
    """As :func:`annealed_mean.compose_many` (the same pixels), compiled; the reference itself
    where Numba is not installed."""
    if not numba_available():
        return compose_many(lightness, ab_grids)
    return [compose_fast(lightness, grid) for grid in ab_grids]


def compose_fast(lightness: np.ndarray, ab_grid: np.ndarray) -> np.ndarray:
    """As :func:`annealed_mean.compose`: full-resolution L, (H, W), with a coarse ab grid,
    (h, w, 2), into (H, W, 3) uint8 sRGB."""
    if not numba_available():
        return compose(lightness, ab_grid)
    height, width = lightness.shape
    upsampler = _Upsampler(ab_grid, height, width)  # the reference's taps and row-interpolated grid
    out = np.empty((height, width, 3), np.uint8)
    _compiled()(
        np.ascontiguousarray(lightness, np.float32),
        upsampler.a_rows,
        upsampler.b_rows,
        upsampler.y_low,
        upsampler.y_high,
        upsampler.y_weight,
        D65_WHITE.astype(np.float32),
        RGB_FROM_XYZ.astype(np.float32),
        _srgb8_of_linear_step(),
        D65_WHITE,
        RGB_FROM_XYZ,
        _max_chroma_table(),
        out,
    )
    return out
