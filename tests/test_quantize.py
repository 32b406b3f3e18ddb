"""The ab grid and the O(1) encoder against scikit-image and plain arithmetic; its step tables of
L and its compiled twin bit for bit against the float64 definition."""

import subprocess
import sys

import numpy as np
import pytest
from skimage.color import rgb2lab

from colorize_core.ab_grid import AbGrid
from colorize_core.color import lab_from_xyz, lightness_from_luminance, linear_from_srgb
from colorize_core.constants import XYZ_FROM_RGB
from colorize_core.quantize import lightness_steps, srgb_lut
from colorize_core.quantize_kernel import encode_into


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


def every_colour() -> np.ndarray:
    """All 2^24 8-bit colours in table order (index r | g << 8 | b << 16), (2^24, 3) uint8."""
    index = np.arange(2**24, dtype=np.int64)
    return np.stack([index & 255, (index >> 8) & 255, index >> 16], -1).astype(np.uint8)


def float64_lab(rgb: np.ndarray) -> np.ndarray:
    """The encoder's definition, computed plainly: linearise each channel, add its share of XYZ
    (red, then green, then blue), CIE Lab in float64. (..., 3) uint8 -> (..., 3) float64."""
    linear = linear_from_srgb(rgb / 255.0)  # (..., 3)
    xyz = linear[..., 0, None] * XYZ_FROM_RGB[:, 0] + linear[..., 1, None] * XYZ_FROM_RGB[:, 1]
    xyz = xyz + linear[..., 2, None] * XYZ_FROM_RGB[:, 2]
    return lab_from_xyz(xyz)


def test_lightness_steps_step_where_float16_l_does():
    """Each step of the table sits exactly where the float16 L of the float64 Y rises: its Y has
    the higher L, the float64 just below it the lower one."""
    steps = lightness_steps()
    rising = np.isfinite(steps.step_at)
    at = steps.step_at[rising]
    just_below = np.nextafter(at, 0)
    low = steps.low_bits[rising].view(np.float16)
    assert np.array_equal(lightness_from_luminance(at).astype(np.float16), np.nextafter(low, np.float16(np.inf)))
    assert np.array_equal(lightness_from_luminance(just_below).astype(np.float16), low)
    assert np.array_equal(steps.bucket(at), steps.bucket(just_below))  # inside one bucket
    assert steps.lightness(np.array([0.0, 1.0])).tolist() == [0.0, 100.0]


@pytest.mark.parametrize("cell", [16, 10])
def test_encoding_is_bit_identical_to_float64_lab_on_random_colours(cell):
    rng = np.random.default_rng(cell + 1)
    rgb = np.concatenate([rng.integers(0, 256, (200_000, 3), dtype=np.uint8), [[0, 0, 0], [255, 255, 255], [0, 0, 1]]])
    lab = float64_lab(rgb.astype(np.uint8))
    lightness, cells = srgb_lut(cell).encode(rgb.astype(np.uint8))
    assert lightness.dtype == np.float16 and cells.dtype == AbGrid(cell).index_dtype
    assert np.array_equal(lightness.view(np.uint16), lab[:, 0].astype(np.float16).view(np.uint16))
    assert np.array_equal(cells, AbGrid(cell).cells_from_ab(lab[:, 1:]))


@pytest.mark.slow
@pytest.mark.parametrize("cell", [16, 10])
def test_encoding_is_bit_identical_to_float64_lab_for_every_colour(cell):
    rgb = every_colour()
    lightness, cells = srgb_lut(cell).encode(rgb)
    for start in range(0, 2**24, 2**22):
        part = slice(start, start + 2**22)
        lab = float64_lab(rgb[part])
        assert np.array_equal(lightness[part].view(np.uint16), lab[:, 0].astype(np.float16).view(np.uint16))
        assert np.array_equal(cells[part], AbGrid(cell).cells_from_ab(lab[:, 1:]))


@pytest.mark.parametrize("cell", [16, 10])
def test_compiled_encoder_equals_numpy_for_every_colour(cell):
    lut = srgb_lut(cell)
    rgb = every_colour().reshape(4096, 4096, 3)
    flagged = (np.arange(lut.grid.num_cells) % 3 == 0).astype(np.uint8)
    lightness, cells = np.empty((4096, 4096), np.float16), np.empty((4096, 4096), lut.grid.index_dtype)
    count = encode_into(lut, rgb, lightness, cells, flagged)
    expected_lightness, expected_cells = lut.encode(rgb)
    assert np.array_equal(lightness.view(np.uint16), expected_lightness.view(np.uint16))
    assert np.array_equal(cells, expected_cells)
    assert count == flagged[expected_cells].sum()


def test_compiled_encoder_checks_its_arrays():
    lut = srgb_lut(16)
    rgb = np.zeros((4, 6, 3), np.uint8)
    lightness, cells, flagged = np.empty((4, 6), np.float16), np.empty((4, 6), np.uint8), np.zeros(256, np.uint8)
    with pytest.raises(ValueError, match="C-contiguous uint8"):
        encode_into(lut, rgb[:, ::2], lightness[:, :3], cells[:, :3], flagged)
    with pytest.raises(ValueError, match=r"outputs must be \(4, 6\) float16 and uint8"):
        encode_into(lut, rgb, lightness.astype(np.float32), cells, flagged)
    with pytest.raises(ValueError, match=r"flagged must be \(256,\) uint8"):
        encode_into(lut, rgb, lightness, cells, flagged[:10])


def test_warm_kernel_loads_it_before_the_first_image():
    """A fresh process: the kernel has no compiled signature until warmed, one after (so forked
    shard workers inherit it instead of each loading it on their first image)."""
    script = (
        "from colorize_core.quantize import srgb_lut\n"
        "from colorize_core.quantize_kernel import compiled_kernel, warm_kernel\n"
        "lut = srgb_lut(16)\n"
        "before = len(compiled_kernel().signatures)\n"
        "warm_kernel(lut)\n"
        "print(before, len(compiled_kernel().signatures))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["0", "1"]
