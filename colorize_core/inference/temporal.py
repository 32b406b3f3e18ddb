"""Colours that hold still over time: an average of the network's predictions across video frames.

Decoding every frame on its own makes colours flicker: the same coat turns red, brown, red again,
because small changes of the input (grain, compression noise, exposure) tip the annealed mean of a
wide distribution one way or the other. The network predicts a distribution per pixel, so the
average is taken there, before the annealed mean: an exponential moving average of the per-pixel
log-probabilities at the network's resolution,

    s_t = w_t · s_{t-1} + (1 - w_t) · log Ẑ_t,    w_t = exp(-(t_t - t_{t-1}) / τ),

with τ the time constant in seconds (the weight follows the frames' own timestamps, so a 60 fps
film is smoothed over the same time as a 24 fps one). The average of log-probabilities is the log
of a (not normalised) geometric mean of the distributions, so a colour that every frame deems
likely stays confident; the annealed mean's softmax is blind to a per-pixel constant, so no
normalisation is needed. A scene cut (the L histograms of two consecutive frames far apart)
restarts the average, so a new shot takes its own colours at once; τ = 0 returns the network's
log-probabilities untouched: the frames are decoded exactly as photos are.

Motion is not compensated: a pixel averages what passed through it. On the films of
benchmarks/bench_video.py (stills, pans, zooms, and pans of 16 pixels per frame) the average
lowers the flicker and still raises the AuC against the true colours.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from colorize_core.constants import SCENE_CUT_BINS, SCENE_CUT_BLOCKS, SCENE_CUT_DISTANCE


def lightness_histograms(
    lightness: np.ndarray, blocks: int = SCENE_CUT_BLOCKS, bins: int = SCENE_CUT_BINS
) -> np.ndarray:
    """Fraction of the pixels in each of ``bins`` equal bins of L over [0, 100], in each block of a
    ``blocks`` × ``blocks`` grid, (H, W) -> (blocks², bins), blocks in row-major order.

    Per block, not over the whole frame: two shots often share a global histogram, seldom a layout.
    """
    height, width = lightness.shape
    rows = np.minimum(np.arange(height) * blocks // height, blocks - 1)
    cols = np.minimum(np.arange(width) * blocks // width, blocks - 1)
    block = (rows[:, None] * blocks + cols[None, :]).ravel()  # (H·W,) block of each pixel
    level = np.clip((lightness.ravel() * (bins / 100.0)).astype(np.int64), 0, bins - 1)  # (H·W,) bin of each pixel
    counts = np.bincount(block * bins + level, minlength=blocks * blocks * bins).reshape(blocks * blocks, bins)
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)


def histogram_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Mean over the blocks of the total-variation distance of their histograms, (blocks², bins)
    each: 0 when equal, 1 when every block's are disjoint."""
    return 0.5 * float(np.abs(p - q).sum(axis=-1).mean())


class TemporalAverage:
    """The running average of one shot's log-probabilities; feed it the frames in order.

    Use it as the ``log_probs_filter`` of :meth:`Colorizer.colorize_batch` with the batch's frame
    times bound: ``colorizer.colorize_batch(frames, [T], functools.partial(average, times=times))``.
    """

    def __init__(self, time_constant: float, cut_distance: float = SCENE_CUT_DISTANCE):
        if not time_constant >= 0:  # NaN too
            raise ValueError(f"time constant must be >= 0 seconds, got {time_constant}")
        self.time_constant = time_constant
        self.cut_distance = cut_distance
        self.state: torch.Tensor | None = None  # (Q, h, w) the average so far
        self.histogram: np.ndarray | None = None  # (blocks², bins) of the last frame
        self.time = 0.0  # of the last frame, seconds
        self.frames = 0  # seen so far
        self.cuts: list[int] = []  # frame indices at which a new shot started (the first excluded)

    def is_cut(self, histogram: np.ndarray, shape: torch.Size) -> bool:
        """Whether a frame starts a new shot: its L histogram is far from the last frame's, or its
        network shape differs (then nothing can be averaged)."""
        if self.state is None or self.state.shape != shape:
            return True
        return histogram_distance(histogram, self.histogram) > self.cut_distance

    def __call__(self, log_probs: torch.Tensor, lightness: np.ndarray, times: Sequence[float]) -> torch.Tensor:
        """The averaged log-probabilities of consecutive frames.

        Parameters
        ----------
        log_probs : (b, Q, h, w) the network's log-probabilities of b consecutive frames
        lightness : (b, H, W) the L the network saw (H = 4h, W = 4w)
        times : b presentation times in seconds, increasing

        Returns
        -------
        (b, Q, h, w): frame k's average over its shot up to frame k; ``log_probs`` itself when the
        time constant is 0.
        """
        if self.time_constant == 0:
            self.frames += len(log_probs)
            return log_probs
        averaged = torch.empty_like(log_probs)
        for k in range(len(log_probs)):
            histogram = lightness_histograms(lightness[k])
            if self.is_cut(histogram, log_probs[k].shape):
                if self.state is not None:
                    self.cuts.append(self.frames)
                self.state = log_probs[k].clone()
            else:
                weight = math.exp(-max(times[k] - self.time, 0.0) / self.time_constant)
                self.state.mul_(weight).add_(log_probs[k], alpha=1 - weight)
            averaged[k] = self.state
            self.histogram, self.time = histogram, times[k]
            self.frames += 1
        return averaged
