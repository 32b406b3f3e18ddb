"""The O(1) encoder from 8-bit sRGB to (L, ab cell), and which cells are in gamut.

The cells are those of ab_grid.AbGrid. A cell is *in gamut* when at
least one of the 2^24 8-bit sRGB colours falls into it; this is computed, never hard-coded
(grid 16: 114 cells, the reference study's 114 bins; grid 10: 268 cells).

Encoding a pixel is one look-up in a table indexed by its 24-bit colour ``r | g << 8 | b << 16``
(the pixel's three bytes read as a little-endian integer), whose entry packs its L and its cell.
"""

import os
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from colorize_core.ab_grid import AbGrid
from colorize_core.color import lab_from_xyz, linear_from_srgb
from colorize_core.constants import NUM_SRGB_COLOURS, XYZ_FROM_RGB
from colorize_core.io import atomic_output

#: Bump when the tables' definition changes, so stale disk caches are ignored.
LUT_VERSION = 3
#: Colours converted per chunk when the look-up table is built (bounds its memory to ~0.5 GB).
_LUT_CHUNK = 2**21


#: One table entry: the colour's L (float16) and its ab cell (uint16), 4 bytes, so that a pixel
#: costs a single memory access.
LUT_ENTRY = np.dtype([("lightness", "<f2"), ("cell", "<u2")])


@dataclass(frozen=True)
class SrgbLut:
    """Look-up table over all 2^24 8-bit sRGB colours, indexed by :func:`colour_index_from_rgb`."""

    grid: AbGrid
    table: np.ndarray  # (2^24,) LUT_ENTRY

    @property
    def lightness(self) -> np.ndarray:
        """CIE L* of every colour, (2^24,) float16 (a view)."""
        return self.table["lightness"]

    @property
    def cell(self) -> np.ndarray:
        """ab cell of every colour, (2^24,) uint16 (a view)."""
        return self.table["cell"]

    @cached_property
    def in_gamut(self) -> np.ndarray:
        """Boolean mask of the grid's cells that some 8-bit sRGB colour reaches, (num_cells,)."""
        return np.bincount(self.cell, minlength=self.grid.num_cells) > 0

    def encode(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Encode 8-bit sRGB pixels.

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
        entries = np.take(self.table, colour_index_from_rgb(rgb))  # (...) LUT_ENTRY
        return np.ascontiguousarray(entries["lightness"]), entries["cell"].astype(self.grid.index_dtype)


def colour_index_from_rgb(rgb: np.ndarray) -> np.ndarray:
    """24-bit colour index ``r | g << 8 | b << 16`` of uint8 pixels, (..., 3) -> (...), uint32.

    Reads each pixel's three bytes (and the next byte, masked off) as one little-endian integer,
    instead of combining three channels arithmetically.
    """
    flat = np.ascontiguousarray(rgb).reshape(-1)
    padded = np.empty(flat.size + 1, np.uint8)  # room for the byte read past the last pixel
    padded[:-1] = flat
    padded[-1] = 0
    words = np.ndarray((flat.size // 3,), dtype="<u4", buffer=padded, strides=(3,))
    return (words & 0xFFFFFF).reshape(rgb.shape[:-1])


def _lab_of_all_colours(start: int, stop: int) -> np.ndarray:
    """Lab of the 8-bit colours with indices in [start, stop), shape (stop - start, 3), float64."""
    index = np.arange(start, stop, dtype=np.int64)
    # XYZ is linear in the linearised channels: add up one (256, 3) table per channel.
    linear_of_byte = linear_from_srgb(np.arange(256) / 255.0)  # (256,)
    xyz_of_channel = linear_of_byte[:, None, None] * XYZ_FROM_RGB.T[None]  # (256, 3 channels, 3 xyz)
    r, g, b = index & 255, (index >> 8) & 255, index >> 16
    return lab_from_xyz(xyz_of_channel[r, 0] + xyz_of_channel[g, 1] + xyz_of_channel[b, 2])


def _build_lut(grid: AbGrid) -> SrgbLut:
    table = np.empty(NUM_SRGB_COLOURS, LUT_ENTRY)
    for start in range(0, NUM_SRGB_COLOURS, _LUT_CHUNK):
        stop = start + _LUT_CHUNK
        lab = _lab_of_all_colours(start, stop)
        table["lightness"][start:stop] = lab[:, 0]
        table["cell"][start:stop] = grid.cells_from_ab(lab[:, 1:])
    return SrgbLut(grid, table)


def lut_cache_path(cell: int) -> Path:
    """Where the tables of a grid are cached between runs (``$COLORIZE_CACHE``, else ~/.cache/colorize)."""
    folder = Path(os.environ.get("COLORIZE_CACHE", Path.home() / ".cache" / "colorize"))
    return folder / f"srgb_lut_v{LUT_VERSION}_grid{cell}.npy"


@lru_cache(maxsize=4)
def srgb_lut(cell: int) -> SrgbLut:
    """The encoder tables of a grid: built once (a few seconds), then read from the disk cache."""
    grid = AbGrid(cell)
    path = lut_cache_path(cell)
    try:
        table = np.load(path, allow_pickle=False)
        if table.dtype == LUT_ENTRY and table.shape == (NUM_SRGB_COLOURS,):
            return SrgbLut(grid, table)
    except (OSError, ValueError):
        pass
    lut = _build_lut(grid)
    try:
        with atomic_output(path) as f:
            np.save(f, lut.table, allow_pickle=False)
    except OSError:
        pass  # a read-only home only costs the rebuild next time
    return lut
