"""The ab grid and the O(1) encoder against scikit-image and plain arithmetic."""

import numpy as np
import pytest
from skimage.color import rgb2lab

from colorize_core.ab_grid import AbGrid

from colorize_core.quantize import srgb_lut


def test_grid_geometry():
    g16, g10 = AbGrid(16), AbGrid(10)
    assert (g16.low, g16.cells_per_axis, g16.num_cells) == (-128, 16, 256)
    assert (g10.low, g10.cells_per_axis, g10.num_cells) == (-130, 26, 676)
    assert g16.centres[0].tolist() == [-120, -120]
    assert g16.centres[1].tolist() == [-120, -104]  # row-major: j (b) varies fastest


@pytest.mark.slow
@pytest.mark.parametrize("cell, expected", [(16, 114), (10, 268)])
def test_in_gamut_cells_counted_from_all_srgb_colours(cell, expected):
    assert srgb_lut(cell).in_gamut.sum() == expected


@pytest.mark.slow
def test_in_gamut_cells_match_skimage_over_all_colours():
    """Independent count: skimage's Lab of all 2^24 colours, cells by arithmetic."""
    index = np.arange(2**24, dtype=np.int64)
    hits = set()
    for start in range(0, 2**24, 2**22):
        part = index[start : start + 2**22]
        rgb = np.stack([part >> 16, (part >> 8) & 255, part & 255], -1) / 255.0
        lab = rgb2lab(rgb[None])[0]
        cells = np.floor((lab[:, 1] + 128) / 16).astype(int) * 16 + np.floor((lab[:, 2] + 128) / 16).astype(int)
        hits |= set(np.unique(cells).tolist())
    assert len(hits) == 114
    assert hits == set(np.flatnonzero(srgb_lut(16).in_gamut).tolist())


@pytest.mark.parametrize("cell", [16, 10])
def test_lut_encoding_equals_brute_force(cell):
    rng = np.random.default_rng(cell)
    rgb = rng.integers(0, 256, (200_000, 3), dtype=np.uint8)
    lightness, cells = srgb_lut(cell).encode(rgb)

    lab = rgb2lab(rgb[None] / 255.0)[0]
    low = cell * np.floor(-128 / cell)
    n = int(np.ceil(128 / cell) - np.floor(-128 / cell))
    i = np.floor((lab[:, 1] - low) / cell).astype(int)
    j = np.floor((lab[:, 2] - low) / cell).astype(int)
    expected = i * n + j
    # Our Lab uses the exact CIE constants (6/29)^3 where skimage rounds to 0.008856; the two agree
    # to 2e-4, so only a pixel that close to a cell edge may fall on the other side.
    distance_to_edge = np.minimum(
        np.abs((lab[:, 1:] - low) / cell - np.round((lab[:, 1:] - low) / cell)).min(axis=1) * cell, np.inf
    )
    disagree = cells.astype(int) != expected
    assert np.all(distance_to_edge[disagree] < 1e-3)
    assert disagree.sum() <= 2
    assert np.abs(lightness.astype(float) - lab[:, 0]).max() < 0.05  # float16 storage


@pytest.mark.parametrize("cell", [16, 10])
@pytest.mark.parametrize("max_chroma", [0.0, 5.0, 12.0])
def test_near_gray_cells_by_brute_force(cell, max_chroma):
    """A cell is near gray when some ab inside it (sampled finely) has |ab| <= max_chroma."""
    grid = AbGrid(cell)
    offsets = np.linspace(0, cell, 81)
    expected = []
    for a0, b0 in grid.centres - cell / 2:
        a, b = np.meshgrid(a0 + offsets, b0 + offsets)
        expected.append(np.hypot(a, b).min() <= max_chroma + 1e-9)
    assert grid.near_gray_cells(max_chroma).tolist() == expected


def test_encode_refuses_non_uint8():
    with pytest.raises(ValueError, match="uint8"):
        srgb_lut(16).encode(np.zeros((2, 2, 3), np.float32))


def test_absurd_grid_is_refused():
    with pytest.raises(ValueError, match="cell size"):
        AbGrid(0)
