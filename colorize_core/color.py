"""sRGB <-> CIE Lab (D65) conversions in NumPy.

Each conversion is a composition of smaller ones, read right to left:
``lab_from_srgb = lab_from_xyz ∘ xyz_from_linear ∘ linear_from_srgb``.
Arrays hold colours on the last axis, shape ``(..., 3)``; sRGB values are floats in [0, 1].
float32 inputs stay float32, everything else is computed in float64.
"""

from functools import lru_cache

import numpy as np

from colorize_core.constants import (
    D65_WHITE,
    LAB_EPSILON,
    LAB_KAPPA,
    LAB_OFFSET,
    RGB_FROM_XYZ,
    SRGB_ENCODED_THRESHOLD,
    SRGB_LINEAR_THRESHOLD,
    XYZ_FROM_RGB,
)


def _float(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x if x.dtype == np.float32 else x.astype(np.float64, copy=False)


def _check_colours(x: np.ndarray, name: str) -> np.ndarray:
    x = _float(x)
    if x.ndim < 1 or x.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (..., 3), got {x.shape}")
    return x


def linear_from_srgb(srgb: np.ndarray) -> np.ndarray:
    """Undo the sRGB transfer curve (IEC 61966-2-1); any shape, values in [0, 1]."""
    srgb = _float(srgb)
    low = srgb / 12.92
    high = ((np.maximum(srgb, SRGB_LINEAR_THRESHOLD) + 0.055) / 1.055) ** 2.4
    return np.where(srgb > SRGB_LINEAR_THRESHOLD, high, low).astype(srgb.dtype, copy=False)


def srgb_from_linear(linear: np.ndarray) -> np.ndarray:
    """Apply the sRGB transfer curve; any shape. Negative values are treated as 0."""
    linear = _float(linear)
    clipped = np.maximum(linear, 0)
    high = 1.055 * np.maximum(clipped, SRGB_ENCODED_THRESHOLD) ** (1 / 2.4) - 0.055
    return np.where(clipped > SRGB_ENCODED_THRESHOLD, high, 12.92 * clipped).astype(linear.dtype, copy=False)


def _f(t: np.ndarray) -> np.ndarray:
    """CIE Lab companding f(t): cube root above epsilon, linear below."""
    return np.where(t > LAB_EPSILON, np.cbrt(t), LAB_KAPPA * t + LAB_OFFSET)


def f_inverse(f: np.ndarray) -> np.ndarray:
    """Inverse of the CIE Lab companding: t from f(t)."""
    return np.where(f > 6 / 29, f * f * f, (f - LAB_OFFSET) / LAB_KAPPA)


def lightness_from_luminance(y: np.ndarray) -> np.ndarray:
    """CIE L* in [0, 100] from relative luminance Y in [0, 1] (D65 white has Y = 1)."""
    y = _float(y)
    return (116 * _f(y) - 16).astype(y.dtype, copy=False)


def lab_from_xyz(xyz: np.ndarray) -> np.ndarray:
    """CIE XYZ -> CIE Lab under D65.

    Parameters
    ----------
    xyz : (..., 3) array

    Returns
    -------
    (..., 3) array of L in [0, 100], a and b roughly in [-128, 128].
    """
    xyz = _check_colours(xyz, "xyz")
    fx, fy, fz = np.moveaxis(_f(xyz / D65_WHITE.astype(xyz.dtype)), -1, 0)
    lab = np.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], axis=-1)
    return lab.astype(xyz.dtype, copy=False)


def xyz_from_lab(lab: np.ndarray) -> np.ndarray:
    """CIE Lab -> CIE XYZ under D65; shapes as in :func:`lab_from_xyz`."""
    lab = _check_colours(lab, "lab")
    fy = (lab[..., 0] + 16) / 116
    xyz = np.empty_like(lab)
    xyz[..., 0] = f_inverse(fy + lab[..., 1] / 500)
    xyz[..., 1] = f_inverse(fy)
    xyz[..., 2] = f_inverse(fy - lab[..., 2] / 200)
    xyz *= D65_WHITE.astype(lab.dtype)
    return xyz


def lab_from_srgb(srgb: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1], shape (..., 3) -> CIE Lab, shape (..., 3). Matches ``skimage.color.rgb2lab``."""
    srgb = _check_colours(srgb, "srgb")
    xyz = linear_from_srgb(srgb) @ XYZ_FROM_RGB.T.astype(srgb.dtype)
    return lab_from_xyz(xyz)


def linear_from_lab(lab: np.ndarray) -> np.ndarray:
    """CIE Lab -> linear RGB, unclipped (out-of-gamut colours fall outside [0, 1])."""
    lab = _check_colours(lab, "lab")
    return xyz_from_lab(lab) @ RGB_FROM_XYZ.T.astype(lab.dtype)


def srgb_from_lab(lab: np.ndarray) -> np.ndarray:
    """CIE Lab -> sRGB in [0, 1], clipped per channel. Matches ``skimage.color.lab2rgb``."""
    return np.clip(srgb_from_linear(linear_from_lab(lab)), 0, 1)


def lightness_from_srgb(srgb: np.ndarray) -> np.ndarray:
    """CIE L* of sRGB colours, shape (..., 3) -> (...): the L channel alone, without a and b."""
    srgb = _check_colours(srgb, "srgb")
    y = linear_from_srgb(srgb) @ XYZ_FROM_RGB[1].astype(srgb.dtype)
    return lightness_from_luminance(y)


def lightness_from_gray(gray: np.ndarray) -> np.ndarray:
    """CIE L* of neutral sRGB grays given as one channel in [0, 1], any shape.

    A gray (v, v, v) has luminance Y = linear(v) because the rows of ``XYZ_FROM_RGB`` for Y sum to 1.
    """
    return lightness_from_luminance(linear_from_srgb(gray))


#: How far outside [0, 1] a linear RGB value may stray before it counts as out of gamut.
GAMUT_TOLERANCE = 1e-6


def _outside(linear: np.ndarray, tolerance: float = GAMUT_TOLERANCE) -> np.ndarray:
    """Which colours of (..., 3) linear RGB fall outside [0, 1] (beyond ``tolerance``), (...) bool."""
    if linear.size == 0 or (linear.min() >= -tolerance and linear.max() <= 1 + tolerance):
        return np.zeros(linear.shape[:-1], bool)  # the common case, without per-pixel temporaries
    return np.abs(linear - 0.5).max(axis=-1) > 0.5 + tolerance


def _with_chroma_scaled(lab: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.concatenate([lab[:, :1], lab[:, 1:] * scale[:, None]], axis=1)


def _bisect_chroma(lab: np.ndarray, low: np.ndarray, high: np.ndarray, iterations: int) -> np.ndarray:
    """Largest chroma scale in [low, high] keeping each colour in gamut, (N, 3) -> (N,).

    ``low`` must be in gamut (0 always is: a neutral gray of any L in [0, 100] is).
    """
    for _ in range(iterations):
        mid = (low + high) / 2
        fits = ~_outside(linear_from_lab(_with_chroma_scaled(lab, mid)))
        low = np.where(fits, mid, low)
        high = np.where(fits, high, mid)
    return low


#: Resolution of the gamut-boundary table: L in steps of 1, hue in steps of 1°.
_GAMUT_L_STEPS, _GAMUT_HUE_STEPS = 101, 360
#: Bisection steps for the out-of-gamut colours that the table leaves outside (chroma to 1/4096).
GAMUT_BISECTION_STEPS = 12


@lru_cache(maxsize=1)
def _max_chroma_table() -> np.ndarray:
    """Largest in-gamut chroma at every (L, hue) of a grid, (101, 361) float64 (hue 360° = 0°)."""
    L, hue = np.meshgrid(np.linspace(0, 100, _GAMUT_L_STEPS), np.linspace(0, 2 * np.pi, _GAMUT_HUE_STEPS + 1), indexing="ij")
    lab = np.stack([L.ravel(), 200 * np.cos(hue.ravel()), 200 * np.sin(hue.ravel())], axis=1)  # chroma 200: outside
    scale = _bisect_chroma(lab, np.zeros(len(lab)), np.ones(len(lab)), iterations=30)
    return (200 * scale).reshape(L.shape)


def _max_chroma(L: np.ndarray, hue: np.ndarray) -> np.ndarray:
    """Bilinear look-up of the gamut boundary's chroma, L in [0, 100], hue in [0, 2π)."""
    table = _max_chroma_table()
    x = np.clip(L, 0, 100) * ((_GAMUT_L_STEPS - 1) / 100)
    y = np.mod(hue, 2 * np.pi) * (_GAMUT_HUE_STEPS / (2 * np.pi))
    x0 = np.minimum(np.floor(x).astype(np.int64), _GAMUT_L_STEPS - 2)
    y0 = np.minimum(np.floor(y).astype(np.int64), _GAMUT_HUE_STEPS - 1)
    wx, wy = x - x0, y - y0
    return (
        table[x0, y0] * (1 - wx) * (1 - wy)
        + table[x0 + 1, y0] * wx * (1 - wy)
        + table[x0, y0 + 1] * (1 - wx) * wy
        + table[x0 + 1, y0 + 1] * wx * wy
    )


def linear_from_lab_in_gamut(lab: np.ndarray, iterations: int = GAMUT_BISECTION_STEPS) -> np.ndarray:
    """CIE Lab -> linear RGB in [0, 1], bringing out-of-gamut colours in at constant L and hue.

    A per-channel clip (as in :func:`srgb_from_lab`) changes the lightness of saturated colours;
    here the chroma of each out-of-gamut pixel is scaled down to the gamut boundary instead, read
    from a precomputed (L, hue) table and, where that is not yet enough, found by bisection, so the
    output keeps the requested L exactly (up to the final 8-bit rounding).

    Parameters
    ----------
    lab : (..., 3) array
    iterations : bisection steps for the colours the table leaves outside (1/4096 at 12).

    Returns
    -------
    (..., 3) linear RGB, same dtype as ``lab``.
    """
    lab = _check_colours(lab, "lab")
    linear = linear_from_lab(lab)
    outside = _outside(linear)
    if np.any(outside):
        lab_out = lab[outside].astype(np.float64)  # (N, 3)
        chroma = np.hypot(lab_out[:, 1], lab_out[:, 2])
        boundary = _max_chroma(lab_out[:, 0], np.arctan2(lab_out[:, 2], lab_out[:, 1]))
        scale = np.clip(boundary * 0.999 / np.maximum(chroma, 1e-12), 0, 1)
        mapped = linear_from_lab(_with_chroma_scaled(lab_out, scale))
        missed = _outside(mapped)  # where the interpolated boundary still overshoots
        if np.any(missed):
            scale[missed] = _bisect_chroma(lab_out[missed], np.zeros(missed.sum()), scale[missed], iterations)
            mapped[missed] = linear_from_lab(_with_chroma_scaled(lab_out[missed], scale[missed]))
        linear[outside] = mapped
    return np.clip(linear, 0, 1)


def srgb_from_lab_in_gamut(lab: np.ndarray, iterations: int = GAMUT_BISECTION_STEPS) -> np.ndarray:
    """CIE Lab -> sRGB in [0, 1] with the gamut mapping of :func:`linear_from_lab_in_gamut`."""
    return srgb_from_linear(linear_from_lab_in_gamut(lab, iterations))


#: Linear values are quantized to this many steps to encode them to 8 bits by table look-up.
_LINEAR_STEPS = 65535


@lru_cache(maxsize=1)
def _srgb8_of_linear_step() -> np.ndarray:
    return np.round(srgb_from_linear(np.arange(_LINEAR_STEPS + 1) / _LINEAR_STEPS) * 255).astype(np.uint8)


def srgb8_from_linear(linear: np.ndarray) -> np.ndarray:
    """Linear RGB in [0, 1] -> 8-bit sRGB by table look-up, any shape, uint8.

    The linear value is first rounded to 1/65535, which moves the result by at most 0.03 of an
    8-bit step (near black, where the curve is steepest).
    """
    steps = np.clip(linear, 0, 1) * _LINEAR_STEPS + 0.5
    return np.take(_srgb8_of_linear_step(), steps.astype(np.int32))


@lru_cache(maxsize=1)
def _luminance_of_byte() -> np.ndarray:
    """Each 8-bit channel value's share of the luminance Y, (3, 256) float32."""
    return (linear_from_srgb(np.arange(256) / 255.0)[None, :] * XYZ_FROM_RGB[1][:, None]).astype(np.float32)


def lightness_from_srgb8(rgb: np.ndarray) -> np.ndarray:
    """CIE L* of 8-bit sRGB pixels, (..., 3) uint8 -> (...) float32, by per-channel tables."""
    table = _luminance_of_byte()
    y = np.take(table[0], rgb[..., 0]) + np.take(table[1], rgb[..., 1]) + np.take(table[2], rgb[..., 2])
    return lightness_from_luminance(y)
