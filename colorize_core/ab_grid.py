"""The ab plane cut into square cells: geometry only, no colour conversion.

Cells are ``cell`` × ``cell`` ab units with edges on multiples of ``cell``, covering
[-128, 128) and extended outwards to whole cells. Which cells are in gamut (hold some 8-bit
sRGB colour) is computed by quantize.py, which converts colours; this module stays free of
that, so stages that only need cell indices (histogram, train) do not depend on color.py.
"""

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from colorize_core.constants import AB_EXTENT


@dataclass(frozen=True)
class AbGrid:
    """A square grid over the ab plane.

    Cells are numbered row-major: ``cell = i * cells_per_axis + j`` with ``i`` along a and
    ``j`` along b.
    """

    cell: int  # edge of one cell in ab units (reference study: 16, Zhang et al.: 10)

    def __post_init__(self) -> None:
        if not isinstance(self.cell, int) or not 2 <= self.cell <= 64:
            raise ValueError(f"grid cell size must be an integer in [2, 64], got {self.cell!r}")

    @property
    def low(self) -> int:
        """Lowest cell edge on both axes, a multiple of ``cell`` (grid 16: -128; grid 10: -130)."""
        return self.cell * int(np.floor(-AB_EXTENT / self.cell))

    @property
    def cells_per_axis(self) -> int:
        return int(np.ceil(AB_EXTENT / self.cell)) - int(np.floor(-AB_EXTENT / self.cell))

    @property
    def num_cells(self) -> int:
        return self.cells_per_axis**2

    def near_gray_cells(self, max_chroma: float) -> np.ndarray:
        """Cells that hold some ab with |ab| <= max_chroma, (num_cells,) bool.

        A pixel in any other cell is certainly more colourful than ``max_chroma``.
        """
        low = self.centres - self.cell / 2  # (num_cells, 2) lower corners
        nearest = np.clip(0.0, low, low + self.cell)  # the cell's point nearest to the origin
        return np.hypot(nearest[:, 0], nearest[:, 1]) <= max_chroma

    @property
    def index_dtype(self) -> np.dtype:
        """Smallest unsigned dtype that holds every cell index."""
        return np.dtype(np.uint8 if self.num_cells <= 256 else np.uint16)

    @cached_property
    def centres(self) -> np.ndarray:
        """ab centre of every cell, shape (num_cells, 2), float64."""
        axis = self.low + self.cell * (np.arange(self.cells_per_axis) + 0.5)
        a, b = np.meshgrid(axis, axis, indexing="ij")
        return np.stack([a.ravel(), b.ravel()], axis=1)

    def cells_from_ab(self, ab: np.ndarray) -> np.ndarray:
        """Cell index of ab values by arithmetic, shape (..., 2) -> (...), int64.

        Values outside the grid are clamped to its border cells.
        """
        ab = np.asarray(ab, dtype=np.float64)
        ij = np.floor((ab - self.low) / self.cell).astype(np.int64)
        ij = np.clip(ij, 0, self.cells_per_axis - 1)
        return ij[..., 0] * self.cells_per_axis + ij[..., 1]
