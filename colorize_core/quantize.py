"""The O(1) encoder from 8-bit sRGB to (L, ab cell), and which cells are in gamut.

The cells are those of ab_grid.AbGrid. A cell is *in gamut* when at
least one of the 2^24 8-bit sRGB colours falls into it; this is computed, never hard-coded
(grid 16: 114 cells, the reference study's 114 bins; grid 10: 268 cells).

Encoding a pixel takes two look-ups, both exact: the same bits as converting the colour to Lab
in float64 (:func:`_lab_of_all_colours`) and rounding L to float16.

- Its cell: one read in a table over the 2^24 colours, one byte per colour for grids of up to 256
  cells (16 MiB, half this machine's L3 cache; the packed L and cell of before took 64 MiB). The
  table is in Morton order (:func:`colour_index_from_rgb`: the bits of r, g and b interleaved),
  so that similar colours share cache lines and pages: a 64-byte line holds a 4 × 4 × 4 cube of
  colours, a 4 KiB page a 16 × 16 × 16 one.
- Its L, which depends on the luminance Y alone. Y is the sum of one term per channel (three
  tables of 256, added in the reference's order), and float16 L is a step function of float64 Y
  (:class:`LightnessSteps`): about 35,000 buckets of Y, each holding its lowest L and the Y at
  which L rises by one float16 step, if it does (at most once per bucket: checked when built).

:mod:`colorize_core.quantize_kernel` runs the same look-ups compiled, in one pass per image.
"""

import os
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from colorize_core.ab_grid import AbGrid
from colorize_core.color import lab_from_xyz, lightness_from_luminance, linear_from_srgb
from colorize_core.constants import NUM_SRGB_COLOURS, XYZ_FROM_RGB
from colorize_core.io import atomic_output

#: Bump when the tables' definition changes, so stale disk caches are ignored.
LUT_VERSION = 4  # 4: the cells alone, in Morton order (L from the luminance); 3: L and cell packed
#: Colours converted per chunk when the look-up table is built (bounds its memory to ~0.5 GB).
_LUT_CHUNK = 2**21
#: Buckets of Y per power of two: Y's float64 exponent and the top BUCKET_BITS bits of its
#: mantissa name its bucket. 2^-11 of Y moves L by at most 2^-11 of itself, at most one float16
#: step (their spacing is 2^-11 to 2^-10 of the value).
BUCKET_BITS = 11
_FLOAT64_MANTISSA_BITS = 52
_FLOAT64_EXPONENT_BIAS = 1023


def _xyz_of_byte() -> np.ndarray:
    """XYZ that each channel's byte value contributes, (256 values, 3 channels, 3 xyz), float64.

    XYZ is linear in the linearised channels, so a colour's XYZ is the sum of its three channels'
    rows, added red + green, then + blue.
    """
    linear_of_byte = linear_from_srgb(np.arange(256) / 255.0)  # (256,)
    return linear_of_byte[:, None, None] * XYZ_FROM_RGB.T[None]


@dataclass(frozen=True)
class LightnessSteps:
    """float16 CIE L* as a step function of the luminance Y, looked up per bucket of Y.

    Bucket 0 holds Y = 0 (black) alone; bucket ``1 + k`` holds the Y whose float64 bits, shifted
    right by ``shift``, equal ``first + k``: the powers of two from the smallest non-zero Y of an
    8-bit colour up to 1, ``2**BUCKET_BITS`` buckets each.
    """

    luminance_of_byte: np.ndarray  # (3 channels, 256) float64: Y that each byte value adds
    shift: int  # float64 bits >> shift = exponent and top BUCKET_BITS mantissa bits
    first: int  # (bits of bucket 1's lowest Y) >> shift
    low_bits: np.ndarray  # (num_buckets,) uint16: float16 bits of the lowest L in each bucket
    step_at: np.ndarray  # (num_buckets,) float64: the Y from which L is one float16 step higher (inf: none)

    def luminance(self, rgb: np.ndarray) -> np.ndarray:
        """Y of uint8 pixels, (..., 3) -> (...), float64, summed as :func:`_lab_of_all_colours` does."""
        term = self.luminance_of_byte
        return term[0][rgb[..., 0]] + term[1][rgb[..., 1]] + term[2][rgb[..., 2]]

    def bucket(self, luminance: np.ndarray) -> np.ndarray:
        """Bucket of each Y, any shape, int64."""
        return np.maximum((luminance.view(np.int64) >> self.shift) - (self.first - 1), 0)

    def lightness(self, luminance: np.ndarray) -> np.ndarray:
        """float16 L* of each Y, any shape."""
        bucket = self.bucket(luminance)
        bits = self.low_bits[bucket] + (luminance >= self.step_at[bucket])
        return bits.astype(np.uint16).view(np.float16)


def _float16_lightness_bits(luminance: np.ndarray) -> np.ndarray:
    """The reference: float16 bits of L*, computed in float64 and rounded, any shape -> uint16."""
    return lightness_from_luminance(luminance).astype(np.float16).view(np.uint16)


def lightness_steps() -> LightnessSteps:
    """Build the step tables of L over Y (a few milliseconds): each bucket's lowest L, and where
    it steps up, found by bisection over the bucket's float64 values.

    Raises
    ------
    RuntimeError
        if L takes more than two values in a bucket (the definition of L changed).
    """
    luminance_of_byte = np.ascontiguousarray(_xyz_of_byte()[:, :, 1].T)  # (3, 256)
    smallest = luminance_of_byte[luminance_of_byte > 0].min()
    if luminance_of_byte.max(axis=1).sum() >= 2:
        raise RuntimeError("the luminance of white is not below 2")
    shift = _FLOAT64_MANTISSA_BITS - BUCKET_BITS
    first = int(np.array(smallest).view(np.int64)) >> shift
    last = int(np.array(1.0).view(np.int64)) >> shift | ((1 << BUCKET_BITS) - 1)  # up to Y < 2
    lows = np.arange(first, last + 1, dtype=np.int64) << shift  # bits of each bucket's lowest Y
    highs = lows + (1 << shift) - 1  # ... and of its highest
    low_bits = _float16_lightness_bits(lows.view(np.float64))
    rises = _float16_lightness_bits(highs.view(np.float64)).astype(np.int64) - low_bits
    if rises.min() < 0 or rises.max() > 1:
        raise RuntimeError(f"float16 L changes by {rises.max()} steps within a bucket of Y")
    # Bisect each rising bucket: L(below) is its low value, L(above) one step more.
    below, above = lows[rises == 1], highs[rises == 1]
    target = low_bits[rises == 1]
    while np.any(above - below > 1):
        middle = below + (above - below) // 2
        up = _float16_lightness_bits(middle.view(np.float64)) > target
        above, below = np.where(up, middle, above), np.where(up, below, middle)
    step_at = np.full(len(lows), np.inf)
    step_at[rises == 1] = above.view(np.float64)
    return LightnessSteps(
        luminance_of_byte,
        shift,
        first,
        np.concatenate([_float16_lightness_bits(np.zeros(1)), low_bits]),  # bucket 0: Y = 0
        np.concatenate([[np.inf], step_at]),
    )


@dataclass(frozen=True)
class SrgbLut:
    """The encoder's tables over all 2^24 8-bit sRGB colours: the cell of each colour, indexed by
    :func:`colour_index_from_rgb` (Morton order), and L from the luminance."""

    grid: AbGrid
    cell: np.ndarray  # (2^24,) grid.index_dtype
    steps: LightnessSteps

    @cached_property
    def in_gamut(self) -> np.ndarray:
        """Boolean mask of the grid's cells that some 8-bit sRGB colour reaches, (num_cells,)."""
        return np.bincount(self.cell, minlength=self.grid.num_cells) > 0

    def encode(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Encode 8-bit sRGB pixels (NumPy; :func:`quantize_kernel.encode_into` is the compiled twin).

        Parameters
        ----------
        rgb : (..., 3) uint8 array

        Returns
        -------
        lightness : (...) float16, CIE L*
        cell : (...) grid.index_dtype, ab cell index
        """
        if rgb.dtype != np.uint8 or rgb.shape[-1:] != (3,):
            raise ValueError(f"rgb must be uint8 of shape (..., 3), got {rgb.dtype} {rgb.shape}")
        cells = np.take(self.cell, colour_index_from_rgb(rgb))  # (...)
        return self.steps.lightness(self.steps.luminance(rgb)), cells


@lru_cache(maxsize=1)
def morton_spread() -> np.ndarray:
    """Each byte's 8 bits moved to bits 0, 3, 6, ..., 21, (256,) uint32: the colour index is
    ``spread[r] | spread[g] << 1 | spread[b] << 2``."""
    byte = np.arange(256, dtype=np.uint32)
    return sum(((byte >> bit) & 1) << (3 * bit) for bit in range(8)).astype(np.uint32)


def colour_index_from_rgb(rgb: np.ndarray) -> np.ndarray:
    """Index of uint8 pixels in the cell table: the bits of r, g and b interleaved (Morton
    order; bit 3k of the index is bit k of r, then g, then b), (..., 3) -> (...), uint32."""
    spread = morton_spread()
    return spread[rgb[..., 0]] | (spread[rgb[..., 1]] << 1) | (spread[rgb[..., 2]] << 2)


def _lab_of_all_colours(start: int, stop: int) -> np.ndarray:
    """Lab of the 8-bit colours with indices in [start, stop), shape (stop - start, 3), float64."""
    index = np.arange(start, stop, dtype=np.int64)
    xyz_of_byte = _xyz_of_byte()  # (256, 3 channels, 3 xyz)
    r, g, b = index & 255, (index >> 8) & 255, index >> 16
    return lab_from_xyz(xyz_of_byte[r, 0] + xyz_of_byte[g, 1] + xyz_of_byte[b, 2])


def _build_cells(grid: AbGrid, steps: LightnessSteps) -> np.ndarray:
    """The cell of every colour in Morton order, (2^24,) grid.index_dtype; checks ``steps``
    against every colour's float64 L on the way (the Lab is computed anyway).

    Raises
    ------
    RuntimeError
        if the step tables give some colour another float16 L than the reference.
    """
    cells = np.empty(NUM_SRGB_COLOURS, grid.index_dtype)
    offset = np.arange(_LUT_CHUNK, dtype=np.int64)
    for start in range(0, NUM_SRGB_COLOURS, _LUT_CHUNK):
        lab = _lab_of_all_colours(start, start + _LUT_CHUNK)  # (chunk, 3)
        index = start + offset  # r | g << 8 | b << 16
        rgb = np.stack([index & 255, (index >> 8) & 255, index >> 16], -1).astype(np.uint8)  # (chunk, 3)
        cells[colour_index_from_rgb(rgb)] = grid.cells_from_ab(lab[:, 1:])
        if not np.array_equal(steps.lightness(steps.luminance(rgb)), lab[:, 0].astype(np.float16)):
            raise RuntimeError("the lightness steps disagree with the float64 Lab of some colour")
    return cells


def lut_cache_path(cell: int) -> Path:
    """Where the tables of a grid are cached between runs (``$COLORIZE_CACHE``, else ~/.cache/colorize)."""
    folder = Path(os.environ.get("COLORIZE_CACHE", Path.home() / ".cache" / "colorize"))
    return folder / f"srgb_cells_v{LUT_VERSION}_grid{cell}.npy"


@lru_cache(maxsize=4)
def srgb_lut(cell: int) -> SrgbLut:
    """The encoder tables of a grid: the cells built once (a few seconds), then read from the disk
    cache; the lightness steps built each time (milliseconds)."""
    grid = AbGrid(cell)
    steps = lightness_steps()
    path = lut_cache_path(cell)
    try:
        cells = np.load(path, allow_pickle=False)
        if cells.dtype == grid.index_dtype and cells.shape == (NUM_SRGB_COLOURS,):
            return SrgbLut(grid, cells, steps)
    except (OSError, ValueError):
        pass
    cells = _build_cells(grid, steps)
    try:
        with atomic_output(path) as f:
            np.save(f, cells, allow_pickle=False)
    except OSError:
        pass  # a read-only home only costs the rebuild next time
    return SrgbLut(grid, cells, steps)
