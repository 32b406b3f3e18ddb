"""Histogram smoothing, pruning and rebalancing weights against hand computations."""

import numpy as np
import pytest
from helpers import colour_photos, write_lists

from colorize_core.bins import Bins
from colorize_core.config import HistogramParams, ShardParams
from colorize_core.data.histogram import (
    bins_from_counts,
    keep_cells,
    nearest_kept,
    rebalancing_weights,
    run_histogram,
    smooth,
)
from colorize_core.data.shard import run_shard
from colorize_core.ab_grid import AbGrid

GRID = AbGrid(10)  # sigma 5 spans half a cell, so neighbours receive visible mass


def test_smoothing_spreads_a_delta_as_a_gaussian_in_ab_units():
    delta = np.zeros(GRID.num_cells)
    centre = 13 * GRID.cells_per_axis + 13
    delta[centre] = 1.0
    smoothed = smooth(delta, GRID, sigma=5.0).reshape(GRID.cells_per_axis, -1)
    # Neighbours one cell (10 ab units) away, relative to the centre: exp(-10² / (2·5²)).
    assert smoothed[13, 14] / smoothed[13, 13] == pytest.approx(np.exp(-100 / 50), rel=1e-6)
    assert smoothed[14, 14] / smoothed[13, 13] == pytest.approx(np.exp(-200 / 50), rel=1e-6)
    assert smoothed.sum() == pytest.approx(1.0)
    assert np.array_equal(smooth(delta, GRID, sigma=0.0), delta)


def test_pruning_drops_rare_cells_and_caps_the_count():
    counts = np.zeros(GRID.num_cells, int)
    counts[[5, 50, 100, 200, 300]] = [7, 1, 30, 3, 30]
    assert keep_cells(counts, min_count=1, num_bins=None).tolist() == [5, 50, 100, 200, 300]
    assert keep_cells(counts, min_count=3, num_bins=None).tolist() == [5, 100, 200, 300]
    assert keep_cells(counts, min_count=1, num_bins=3).tolist() == [5, 100, 300]  # the 3 most frequent


def test_pruned_cells_map_to_the_nearest_kept_bin_by_brute_force():
    kept = np.array([0, 40, 337, 675])
    mapping = nearest_kept(GRID, kept)
    for cell in range(GRID.num_cells):
        distances = [np.hypot(*(GRID.centres[cell] - GRID.centres[k])) for k in kept]
        assert distances[mapping[cell]] == min(distances)
    assert mapping[kept].tolist() == [0, 1, 2, 3]  # kept cells are their own class


def test_weights_follow_the_formula_and_average_to_one():
    prior = np.array([0.7, 0.2, 0.08, 0.02])
    w = rebalancing_weights(prior, 0.5)
    raw = 1 / (0.5 * prior + 0.5 / 4)
    assert np.allclose(w / w[0], raw / raw[0])
    assert np.sum(prior * w) == pytest.approx(1.0)
    assert np.allclose(rebalancing_weights(prior, 1.0), 1.0)  # λ = 1: no rebalancing
    assert np.allclose(prior * rebalancing_weights(prior, 0.0), 0.25)  # λ = 0: every class weighs the same


def test_bins_from_counts_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    counts = np.zeros(GRID.num_cells, int)
    counts[rng.choice(GRID.num_cells, 40, replace=False)] = rng.integers(1, 1000, 40)
    bins = bins_from_counts(counts, GRID, HistogramParams(sigma=5.0, lambda_=0.5, num_bins=30))
    assert bins.num_classes == 30
    assert bins.prior.sum() == pytest.approx(1.0)
    assert np.sum(bins.prior * bins.weights) == pytest.approx(1.0)
    assert set(bins.counts) <= set(counts[counts > 0])
    bins.save(tmp_path / "bins.json")
    again = Bins.load(tmp_path / "bins.json")
    assert np.array_equal(again.class_from_cell, bins.class_from_cell)
    assert np.allclose(again.weights, bins.weights) and np.allclose(again.centres, bins.centres)


def test_soft_targets_spread_over_five_nearest():
    counts = np.ones(GRID.num_cells, int)
    bins = bins_from_counts(counts, GRID, HistogramParams(num_bins=None))
    targets = bins.soft_targets()
    assert targets.shape == (GRID.num_cells, GRID.num_cells)
    assert np.allclose(targets.sum(1), 1.0) and np.all((targets > 0).sum(1) == 5)
    inner = 13 * GRID.cells_per_axis + 13
    row = targets[inner]
    assert row[inner] / row[inner + 1] == pytest.approx(np.exp(100 / 50), rel=1e-5)  # Gaussian, σ = 5


def test_histogram_stage_on_real_shards(tmp_path):
    photos = colour_photos(tmp_path / "img", 6)
    run_shard(ShardParams(size=32, samples_per_shard=4, workers=1), write_lists(tmp_path, photos), tmp_path / "s", tmp_path / "r")
    bins = run_histogram(HistogramParams(), tmp_path / "s", tmp_path / "bins.json", tmp_path / "bins.png")
    assert (tmp_path / "bins.png").stat().st_size > 10_000
    assert bins.counts.sum() == 6 * 32 * 32
    assert np.sum(bins.prior * bins.weights) == pytest.approx(1.0)
    assert Bins.load(tmp_path / "bins.json").num_classes == bins.num_classes <= 114
