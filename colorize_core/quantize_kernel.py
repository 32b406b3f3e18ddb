"""The encoder of :mod:`colorize_core.quantize` compiled (Numba): one pass per image.

:meth:`SrgbLut.encode` is the reference, in NumPy: about ten array passes with float64 and
index temporaries. This kernel reads each pixel once, adds its luminance from the three channel
tables, looks up its L step and its cell, and writes both straight into the caller's arrays (the
shard stage's ``.npy`` buffers); on the way it counts the pixels whose cell is flagged. Its
reads of the 16 MiB cell table follow the colours' Morton order (similar colours, nearby bytes). Every
output equals the reference's bit for bit: the same float64 additions in the same order, the
same tables, and integer work otherwise (tests/test_quantize.py, over all 2^24 colours).

Importing Numba and reading the compiled kernel from its disk cache take about half a second
(compiling it the first time a few seconds), so the shard stage uses it only for runs with many
pixels (:data:`colorize_core.data.shard.COMPILED_MIN_PIXELS`) and only where Numba is installed.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from colorize_core.quantize import SrgbLut, morton_spread

_kernel = None


def numba_available() -> bool:
    """Whether Numba is installed (found without importing it: the import alone takes 0.2 s)."""
    return importlib.util.find_spec("numba") is not None


def kernel_loaded() -> bool:
    """Whether this process has loaded the kernel already (then using it costs nothing more)."""
    return _kernel is not None


def compiled_kernel():
    """The Numba kernel, compiled (or read from Numba's disk cache) on first use in this process."""
    global _kernel
    if _kernel is None:
        import numba

        @numba.njit(cache=True, nogil=True)
        def encode_pixels(
            rgb,
            spread,
            luminance_of_byte,
            shift,
            first,
            low_bits,
            step_at,
            cell_of_colour,
            flagged,
            lightness_bits,
            cells,
        ):
            # Unsigned indices throughout: Numba then skips the check for negative ones.
            height, width = cells.shape
            luminance = np.empty(width)  # one row of Y, read back as its float64 bits
            luminance_bits = luminance.view(np.uint64)
            shift, below_first, one, two = np.uint64(shift), np.uint64(first - 1), np.uint32(1), np.uint32(2)
            count = 0
            for i in range(height):
                for j in range(width):
                    r, g, b = np.uint64(rgb[i, j, 0]), np.uint64(rgb[i, j, 1]), np.uint64(rgb[i, j, 2])
                    luminance[j] = (luminance_of_byte[0, r] + luminance_of_byte[1, g]) + luminance_of_byte[2, b]
                    cell = cell_of_colour[np.uint64(spread[r] | (spread[g] << one) | (spread[b] << two))]
                    cells[i, j] = cell
                    count += flagged[cell]
                for j in range(width):
                    high_bits = luminance_bits[j] >> shift
                    bucket = high_bits - below_first if high_bits > below_first else np.uint64(0)  # 0: Y = 0
                    step = 1 if luminance[j] >= step_at[bucket] else 0
                    lightness_bits[i, j] = low_bits[bucket] + step
            return count

        _kernel = encode_pixels
    return _kernel


def warm_kernel(lut: SrgbLut) -> None:
    """Load the kernel for ``lut``'s dtypes now, in this process: Numba compiles it, or reads it
    from its disk cache, on the first call with new types, which takes about 0.25 s. A parent that
    does this before forking spares each worker that first slow image."""
    flagged = np.zeros(lut.grid.num_cells, np.uint8)
    pixel = np.zeros((1, 1, 3), np.uint8)
    encode_into(lut, pixel, np.empty((1, 1), np.float16), np.empty((1, 1), lut.cell.dtype), flagged)


def encode_into(lut: SrgbLut, rgb: np.ndarray, lightness: np.ndarray, cells: np.ndarray, flagged: np.ndarray) -> int:
    """As :meth:`SrgbLut.encode`, into given arrays; returns how many pixels have a flagged cell.

    Parameters
    ----------
    lut : the grid's tables (:func:`quantize.srgb_lut`)
    rgb : (H, W, 3) uint8, C-contiguous
    lightness : (H, W) float16, written: CIE L*
    cells : (H, W) lut.grid.index_dtype, written: ab cell index
    flagged : (num_cells,) uint8, 1 for the cells to count
    """
    height, width = rgb.shape[:2]
    if rgb.dtype != np.uint8 or rgb.shape != (height, width, 3) or not rgb.flags.c_contiguous:
        raise ValueError(f"rgb must be C-contiguous uint8 of shape (H, W, 3), got {rgb.dtype} {rgb.shape}")
    if (
        lightness.dtype != np.float16
        or cells.dtype != lut.cell.dtype
        or lightness.shape != cells.shape != (height, width)
    ):
        raise ValueError(
            f"outputs must be ({height}, {width}) float16 and {lut.cell.dtype}, got {lightness.dtype} {cells.dtype}"
        )
    if flagged.dtype != np.uint8 or flagged.shape != (lut.grid.num_cells,):
        raise ValueError(f"flagged must be ({lut.grid.num_cells},) uint8, got {flagged.dtype} {flagged.shape}")
    steps = lut.steps
    return int(
        compiled_kernel()(
            rgb,
            morton_spread(),
            steps.luminance_of_byte,
            steps.shift,
            steps.first,
            steps.low_bits,
            steps.step_at,
            lut.cell,
            flagged,
            lightness.view(np.uint16),
            cells,
        )
    )
