"""sRGB <-> CIE Lab (D65) conversions in NumPy.

Each conversion is a composition of smaller ones, read right to left:
``lab_from_srgb = lab_from_xyz ∘ xyz_from_linear ∘ linear_from_srgb``.
Arrays hold colours on the last axis, shape ``(..., 3)``; sRGB values are floats in [0, 1].
float32 inputs stay float32, everything else is computed in float64.
"""

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


def _f_inverse(f: np.ndarray) -> np.ndarray:
    return np.where(f > 6 / 29, f**3, (f - LAB_OFFSET) / LAB_KAPPA)


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
    L, a, b = np.moveaxis(lab, -1, 0)
    fy = (L + 16) / 116
    f = np.stack([fy + a / 500, fy, fy - b / 200], axis=-1)
    return (_f_inverse(f) * D65_WHITE.astype(lab.dtype)).astype(lab.dtype, copy=False)


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


def srgb_from_lab_in_gamut(lab: np.ndarray, iterations: int = 12) -> np.ndarray:
    """CIE Lab -> sRGB in [0, 1], bringing out-of-gamut colours into gamut at constant L and hue.

    A per-channel clip (as in :func:`srgb_from_lab`) changes the lightness of saturated colours;
    here the chroma of each out-of-gamut pixel is scaled down by bisection until it fits, so the
    output keeps the requested L exactly (up to the final 8-bit rounding).

    Parameters
    ----------
    lab : (..., 3) array
    iterations : bisection steps; 12 steps pin the chroma scale to 1/4096.

    Returns
    -------
    (..., 3) array of sRGB in [0, 1], same dtype as ``lab``.
    """
    lab = _check_colours(lab, "lab")
    linear = linear_from_lab(lab)
    tolerance = 1e-6
    outside = np.any((linear < -tolerance) | (linear > 1 + tolerance), axis=-1)
    if np.any(outside):
        lab_out = lab[outside]  # (N, 3)
        lo = np.zeros(len(lab_out), lab.dtype)  # chroma scales known to be in gamut
        hi = np.ones(len(lab_out), lab.dtype)  # chroma scales known to be outside
        for _ in range(iterations):
            mid = (lo + hi) / 2
            trial = linear_from_lab(np.concatenate([lab_out[:, :1], lab_out[:, 1:] * mid[:, None]], axis=1))
            fits = np.all((trial >= -tolerance) & (trial <= 1 + tolerance), axis=-1)
            lo = np.where(fits, mid, lo)
            hi = np.where(fits, hi, mid)
        scaled = np.concatenate([lab_out[:, :1], lab_out[:, 1:] * lo[:, None]], axis=1)
        linear[outside] = linear_from_lab(scaled)
    return np.clip(srgb_from_linear(linear), 0, 1)
