"""Stage 3, ``histogram``: the empirical ab distribution, its smoothing and pruning, and the
class-rebalancing weights of Zhang et al., Eq. 3-4 (the reference study's section 3.2).

1. p: fraction of training pixels in every cell of the full grid;
2. p̃ = G_σ * p: smoothed with a Gaussian of σ ab units (5 by default) over the ab plane;
3. pruning: cells hit by fewer than ``min_count`` pixels are dropped, then at most ``num_bins``
   of the most frequent are kept; a pixel of a pruned cell maps to the nearest kept bin;
4. w ∝ ((1 - λ) p̃ + λ / Q)⁻¹, normalised so that Σ_q p̃_q w_q = 1.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from colorize_core.ab_grid import AbGrid
from colorize_core.bins import Bins
from colorize_core.config import HistogramParams
from colorize_core.data.shard_format import CELL_KEY, read_index, read_samples, shard_urls
from colorize_core.figures import pyplot, save_figure
from colorize_core.progress import progress

log = logging.getLogger(__name__)


def count_cells(urls: list[str], grid: AbGrid) -> np.ndarray:
    """Pixels per full-grid cell over every sample of the shards, (num_cells,) int64."""
    counts = np.zeros(grid.num_cells, np.int64)
    for sample in progress(read_samples(urls), desc="histogram", unit="img"):
        counts += np.bincount(sample[CELL_KEY].ravel(), minlength=grid.num_cells)
    return counts


def smooth(distribution: np.ndarray, grid: AbGrid, sigma: float) -> np.ndarray:
    """Gaussian smoothing of a full-grid distribution over the ab plane, (num_cells,) -> (num_cells,).

    ``sigma`` is in ab units (one cell is ``grid.cell`` units); mass that would leave the grid is
    dropped, so renormalise after restricting to the kept bins.
    """
    if sigma == 0:
        return distribution.astype(np.float64)
    plane = distribution.reshape(grid.cells_per_axis, grid.cells_per_axis).astype(np.float64)
    return gaussian_filter(plane, sigma=sigma / grid.cell, mode="constant", cval=0.0).ravel()


def keep_cells(counts: np.ndarray, min_count: int, num_bins: int | None) -> np.ndarray:
    """Cells that survive pruning, ascending, (Q,) int64.

    Cells with fewer than ``min_count`` pixels go; of the rest, the ``num_bins`` most frequent stay
    (ties broken by the lower cell index).
    """
    candidates = np.flatnonzero(counts >= min_count)
    if num_bins is not None and len(candidates) > num_bins:
        order = np.argsort(-counts[candidates], kind="stable")
        candidates = candidates[order[:num_bins]]
    return np.sort(candidates)


def nearest_kept(grid: AbGrid, kept_cells: np.ndarray) -> np.ndarray:
    """Class of every grid cell: the kept bin whose centre is nearest, (num_cells,) int64."""
    d2 = ((grid.centres[:, None, :] - grid.centres[kept_cells][None, :, :]) ** 2).sum(-1)  # (num_cells, Q)
    return np.argmin(d2, axis=1)


def rebalancing_weights(prior: np.ndarray, lambda_: float) -> np.ndarray:
    """Zhang et al. Eq. 4: w ∝ ((1 - λ) p̃ + λ / Q)⁻¹ with E_p̃[w] = Σ p̃ w = 1, (Q,) -> (Q,)."""
    q = len(prior)
    w = 1.0 / ((1 - lambda_) * prior + lambda_ / q)
    return w / np.sum(prior * w)


def bins_from_counts(counts: np.ndarray, grid: AbGrid, params: HistogramParams) -> Bins:
    """Smooth, prune and weight a full-grid pixel count into the kept :class:`Bins`."""
    if counts.sum() == 0:
        raise ValueError("histogram: the training shards hold no pixels")
    kept = keep_cells(counts, params.min_count, params.num_bins)
    if len(kept) < 2:
        raise ValueError(f"histogram: only {len(kept)} colour bin(s) survive pruning; need at least 2")
    smoothed = smooth(counts / counts.sum(), grid, params.sigma)[kept]
    prior = smoothed / smoothed.sum()
    return Bins(
        grid=grid,
        kept_cells=kept,
        class_from_cell=nearest_kept(grid, kept),
        counts=counts[kept],
        prior=prior,
        weights=rebalancing_weights(prior, params.lambda_),
        sigma=params.sigma,
        lambda_=params.lambda_,
    )


def plot_bins(bins: Bins, path: Path) -> None:
    """The kept bins on the ab plane: their colours, and log10 of their smoothed frequency.

    The swatches are painted with scikit-image's Lab -> sRGB (clipped), not color.py: the stage
    only counts cells, so the pipeline's own conversion is not one of its dependencies.
    """
    plt = pyplot()

    from skimage.color import lab2rgb

    grid = bins.grid
    n = grid.cells_per_axis
    extent = (grid.low, grid.low + n * grid.cell)
    colours = np.ones((n * n, 3))
    lab = np.concatenate([np.full((bins.num_classes, 1), 60.0), bins.centres], axis=1)
    colours[bins.kept_cells] = np.clip(lab2rgb(lab[None])[0], 0, 1)
    log_prior = np.full(n * n, np.nan)
    log_prior[bins.kept_cells] = np.log10(bins.prior)

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), constrained_layout=True)
    # Rows of the images are b (top = +b), columns are a.
    axes[0].imshow(colours.reshape(n, n, 3).transpose(1, 0, 2)[::-1], extent=(*extent, *extent))
    axes[0].set_title(f"{bins.num_classes} kept bins (grid {grid.cell}), at L = 60")
    shown = axes[1].imshow(log_prior.reshape(n, n).T[::-1], extent=(*extent, *extent), cmap="jet")
    axes[1].set_title("log10 of the smoothed prior p̃")
    fig.colorbar(shown, ax=axes[1], shrink=0.85)
    for ax in axes:
        ax.set_xlabel("a")
        ax.set_ylabel("b")
        ax.grid(color="0.85", linewidth=0.4)
    save_figure(fig, path)


def run_histogram(params: HistogramParams, shards_dir: Path, out_path: Path, figure_path: Path) -> Bins:
    """Count the training shards, write the bins file and the figure."""
    index = read_index(shards_dir)
    grid = AbGrid(int(index["grid"]))
    counts = count_cells(shard_urls(shards_dir, "train"), grid)
    bins = bins_from_counts(counts, grid, params)
    bins.save(out_path)
    plot_bins(bins, figure_path)
    log.info(
        "histogram: %d of %d grid cells hit, %d kept; weights from %.3g to %.3g",
        int((counts > 0).sum()),
        grid.num_cells,
        bins.num_classes,
        bins.weights.min(),
        bins.weights.max(),
    )
    return bins
