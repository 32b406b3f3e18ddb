"""The kept colour bins: the Q classes that the network predicts, and everything tied to them.

A :class:`Bins` is self-describing: it carries the quantization grid, the kept cells and their ab
centres, the full-grid -> class mapping, the smoothed prior p̃ and the rebalancing weights w.
It is written by the histogram stage (``data/bins.json``) and copied into every checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from colorize_core.constants import SOFT_ENCODING_NEIGHBOURS, SOFT_ENCODING_SIGMA
from colorize_core.io import atomic_write_json
from colorize_core.ab_grid import AbGrid

BINS_FORMAT = 1


@dataclass(frozen=True)
class Bins:
    grid: AbGrid
    kept_cells: np.ndarray  # (Q,) int64, grid cell of each class, ascending
    class_from_cell: np.ndarray  # (num_cells,) int64, class of every grid cell (nearest kept bin)
    counts: np.ndarray  # (Q,) int64, training pixels whose cell is the class's cell
    prior: np.ndarray  # (Q,) float64, smoothed empirical distribution p̃ over the kept bins, sums to 1
    weights: np.ndarray  # (Q,) float64, rebalancing weights w, with sum(prior * weights) == 1
    sigma: float  # smoothing used for the prior, ab units
    lambda_: float  # mix with the uniform distribution used for the weights

    @property
    def num_classes(self) -> int:
        return len(self.kept_cells)

    @property
    def centres(self) -> np.ndarray:
        """ab centre of every class, (Q, 2) float64."""
        return self.grid.centres[self.kept_cells]

    def soft_targets(
        self, neighbours: int = SOFT_ENCODING_NEIGHBOURS, sigma: float = SOFT_ENCODING_SIGMA
    ) -> np.ndarray:
        """Zhang et al.'s soft-encoding of every grid cell, (num_cells, Q) float32.

        The target of a cell spreads over the ``neighbours`` kept bins nearest to the cell's
        centre, with Gaussian weights exp(-d² / 2σ²) normalised to sum to 1.
        """
        d2 = ((self.grid.centres[:, None, :] - self.centres[None, :, :]) ** 2).sum(-1)  # (num_cells, Q)
        k = min(neighbours, self.num_classes)
        nearest = np.argsort(d2, axis=1, kind="stable")[:, :k]  # (num_cells, k)
        w = np.exp(-np.take_along_axis(d2, nearest, axis=1) / (2 * sigma**2))
        w /= w.sum(axis=1, keepdims=True)
        targets = np.zeros_like(d2, dtype=np.float32)
        np.put_along_axis(targets, nearest, w.astype(np.float32), axis=1)
        return targets

    # --- serialisation ------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """Plain JSON-able mapping (also what checkpoints store)."""
        return {
            "format": BINS_FORMAT,
            "grid": self.grid.cell,
            "num_classes": self.num_classes,
            "kept_cells": self.kept_cells.tolist(),
            "centres": self.centres.tolist(),
            "class_from_cell": self.class_from_cell.tolist(),
            "counts": self.counts.tolist(),
            "prior": self.prior.tolist(),
            "weights": self.weights.tolist(),
            "sigma": self.sigma,
            "lambda": self.lambda_,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Bins":
        if data.get("format") != BINS_FORMAT:
            raise ValueError(f"unsupported bins format {data.get('format')!r}")
        grid = AbGrid(int(data["grid"]))
        bins = cls(
            grid=grid,
            kept_cells=np.asarray(data["kept_cells"], np.int64),
            class_from_cell=np.asarray(data["class_from_cell"], np.int64),
            counts=np.asarray(data["counts"], np.int64),
            prior=np.asarray(data["prior"], np.float64),
            weights=np.asarray(data["weights"], np.float64),
            sigma=float(data["sigma"]),
            lambda_=float(data["lambda"]),
        )
        if len(bins.class_from_cell) != grid.num_cells or bins.class_from_cell.max() >= bins.num_classes:
            raise ValueError("bins: class_from_cell does not match the grid and the kept cells")
        return bins

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Bins":
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"{path}: not a bins file ({error})") from None
