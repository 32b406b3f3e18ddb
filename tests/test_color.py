"""Colour conversions against scikit-image, the independent reference."""

import numpy as np
import pytest
from skimage.color import lab2rgb, rgb2lab

from colorize_core.color import (
    lab_from_srgb,
    lightness_from_gray,
    lightness_from_srgb,
    srgb_from_lab,
    srgb_from_lab_in_gamut,
)


@pytest.fixture
def random_srgb():
    rng = np.random.default_rng(0)
    corners = np.array(np.meshgrid([0, 1], [0, 1], [0, 1])).reshape(3, -1).T  # black, white, primaries
    near_black = rng.uniform(0, 0.05, (500, 3))  # the linear segments of sRGB and of Lab
    return np.concatenate([rng.random((20000, 3)), corners, near_black])


def test_lab_from_srgb_matches_skimage(random_srgb):
    assert np.abs(lab_from_srgb(random_srgb) - rgb2lab(random_srgb)).max() < 1e-3


def test_srgb_from_lab_matches_skimage(random_srgb):
    lab = rgb2lab(random_srgb)
    assert np.abs(srgb_from_lab(lab) - lab2rgb(lab)).max() < 1e-3


def test_round_trip_and_image_shapes(random_srgb):
    image = random_srgb[:20000].reshape(100, 200, 3)
    assert lab_from_srgb(image).shape == (100, 200, 3)
    assert np.abs(srgb_from_lab(lab_from_srgb(image)) - image).max() < 1e-6


def test_float32_stays_float32(random_srgb):
    lab = lab_from_srgb(random_srgb.astype(np.float32))
    assert lab.dtype == np.float32
    assert srgb_from_lab(lab).dtype == np.float32
    assert np.abs(lab - rgb2lab(random_srgb)).max() < 1e-3


def test_lightness_alone_matches_skimage(random_srgb):
    assert np.abs(lightness_from_srgb(random_srgb) - rgb2lab(random_srgb)[:, 0]).max() < 1e-3
    gray = np.linspace(0, 1, 1001)
    expected = rgb2lab(np.repeat(gray[:, None], 3, axis=1))[:, 0]
    assert np.abs(lightness_from_gray(gray) - expected).max() < 1e-3


def test_bad_shape_is_refused():
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        lab_from_srgb(np.zeros((4, 4)))


def test_gamut_mapping_keeps_lightness_and_in_gamut_colours(random_srgb):
    rng = np.random.default_rng(1)
    lab = np.column_stack([rng.uniform(5, 95, 5000), rng.uniform(-110, 110, (5000, 2))])
    srgb = srgb_from_lab_in_gamut(lab)
    assert srgb.min() >= 0 and srgb.max() <= 1
    # The lightness survives even where a per-channel clip would change it.
    assert np.abs(rgb2lab(srgb)[:, 0] - lab[:, 0]).max() < 0.05
    clipped_error = np.abs(rgb2lab(np.clip(srgb_from_lab(lab), 0, 1))[:, 0] - lab[:, 0]).max()
    assert clipped_error > 1  # the case the mapping exists for
    # Colours already in gamut are untouched.
    inside = rgb2lab(random_srgb)
    assert np.abs(srgb_from_lab_in_gamut(inside) - random_srgb).max() < 1e-4  # far below one 8-bit step
