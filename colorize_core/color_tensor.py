"""CIE Lab (D65) -> sRGB in PyTorch, differentiable: what a training loss needs to show a
classifier the colours the network paints. The NumPy conversions of :mod:`colorize_core.color`
stay the reference (and the only path for images); this one follows the same formulas and
constants, on (B, C, H, W) tensors."""

from __future__ import annotations

import torch

from colorize_core.constants import D65_WHITE, LAB_KAPPA, LAB_OFFSET, RGB_FROM_XYZ, SRGB_ENCODED_THRESHOLD

#: f(t) at the junction of the cube and the linear segment of CIE's f⁻¹.
_F_JUNCTION = 6 / 29


def srgb_from_lab_tensor(lightness: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] of L (B, 1, H, W) in [0, 100] and ab (B, 2, H, W) -> (B, 3, H, W), float32.

    Colours outside the sRGB gamut are clipped per channel in linear light (gradients are zero
    through a clipped channel), as ``skimage.color.lab2rgb`` does.
    """
    fy = (lightness.float() + 16) / 116
    fz = (fy - ab[:, 1:].float() / 200).clamp_min(0)  # as scikit-image's lab2xyz clips a negative f(Z)
    f = torch.cat([fy + ab[:, :1].float() / 500, fy, fz], dim=1)  # (B, 3, H, W)
    xyz_over_white = torch.where(f > _F_JUNCTION, f.clamp_min(_F_JUNCTION) ** 3, (f - LAB_OFFSET) / LAB_KAPPA)
    white = torch.as_tensor(D65_WHITE, dtype=torch.float32, device=f.device).view(1, 3, 1, 1)
    rgb_from_xyz = torch.as_tensor(RGB_FROM_XYZ, dtype=torch.float32, device=f.device)
    linear = torch.einsum("ij,bjhw->bihw", rgb_from_xyz, xyz_over_white * white).clamp(0, 1)
    curve = 1.055 * linear.clamp_min(SRGB_ENCODED_THRESHOLD) ** (1 / 2.4) - 0.055
    return torch.where(linear > SRGB_ENCODED_THRESHOLD, curve, 12.92 * linear)
