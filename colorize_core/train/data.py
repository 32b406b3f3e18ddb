"""Training batches from the WebDataset shards.

The order of an epoch is a function of (seed, epoch) alone: the shard list is permuted with that
seed, split by distributed rank and by DataLoader worker, and the samples pass through a
WebDataset shuffle buffer seeded the same way. An interrupted run therefore sees, after resuming,
exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import itertools
import random
from typing import Iterator

import numpy as np
import torch
import webdataset as wds

from colorize_core.constants import OUTPUT_STRIDE
from colorize_core.data.shard_format import CELL_KEY, LIGHTNESS_KEY, raise_shard_error, with_arrays

Batch = tuple[torch.Tensor, torch.Tensor]  # lightness (B, 1, S, S) float32, cells (B, S/4, S/4) int64


def decode_sample(sample: dict) -> tuple[np.ndarray, np.ndarray]:
    """Raw tar members -> (L (S, S) float16, ab cells on the ¼ grid (S/4, S/4)).

    The targets are taken at the loss's ¼-resolution grid by sampling every 4th pixel, as Zhang
    et al.'s training layer does.
    """
    arrays = with_arrays(sample)
    return arrays[LIGHTNESS_KEY], arrays[CELL_KEY][::OUTPUT_STRIDE, ::OUTPUT_STRIDE]


def mirrored_at_random(rng: random.Random):
    """A map over samples that mirrors each (L, cells) pair left-right with probability ½, drawn from ``rng``."""

    def maybe_mirror(sample: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        lightness, cells = sample
        if rng.random() < 0.5:
            return lightness[:, ::-1], cells[:, ::-1]
        return lightness, cells

    return maybe_mirror


def collate(samples: list[tuple[np.ndarray, np.ndarray]]) -> Batch:
    lightness = torch.from_numpy(np.stack([s[0] for s in samples])).float().unsqueeze(1)  # (B, 1, S, S)
    cells = torch.from_numpy(np.stack([s[1] for s in samples]).astype(np.int64))  # (B, S/4, S/4)
    return lightness, cells


def epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch


def rank_shards(urls: list[str], seed: int, epoch: int, rank: int, world_size: int, shuffle: bool) -> list[str]:
    """The shards one rank reads in an epoch: the seeded permutation, dealt round-robin.

    May be empty for a small validation split; that rank then adds nothing.
    """
    if shuffle:
        order = np.random.default_rng(epoch_seed(seed, epoch)).permutation(len(urls))
        urls = [urls[i] for i in order]
    return urls[rank::world_size]


def epoch_pipeline(
    shards: list[str], batch_size: int, seed: int, epoch: int, shuffle_buffer: int, shuffle: bool, flip: bool = False
):
    """One epoch of batches from the given shards (inside a DataLoader, WebDataset's
    ``split_by_worker`` deals them to the workers); ``flip`` mirrors a seeded half of the samples."""
    stages = [wds.SimpleShardList(shards), wds.split_by_worker, wds.tarfile_to_samples(handler=raise_shard_error)]
    if shuffle:
        stages.append(wds.shuffle(shuffle_buffer, initial=shuffle_buffer, rng=random.Random(epoch_seed(seed, epoch))))
    stages.append(wds.map(decode_sample))
    if flip:
        stages.append(wds.map(mirrored_at_random(random.Random(epoch_seed(seed, epoch) + 1))))
    stages.append(wds.batched(batch_size, collation_fn=collate, partial=True))
    return wds.DataPipeline(*stages)


def batches(
    urls: list[str],
    batch_size: int,
    seed: int,
    epoch: int,
    shuffle_buffer: int,
    rank: int = 0,
    world_size: int = 1,
    loader_workers: int = 0,
    shuffle: bool = True,
    steps: int | None = None,
    pin_memory: bool = False,
    flip: bool = False,
) -> Iterator[Batch]:
    """Iterate one epoch's batches; with ``steps`` the stream repeats until that many batches.

    Distributed ranks must take the same number of steps (DDP synchronises every step), so the
    trainer passes ``steps`` there; a single process reads every sample exactly once.
    """

    shards = rank_shards(urls, seed, epoch, rank, world_size, shuffle)

    def one_pass() -> Iterator[Batch]:
        if not shards:
            return iter(())
        pipeline = epoch_pipeline(shards, batch_size, seed, epoch, shuffle_buffer, shuffle, flip)
        if loader_workers == 0:
            return iter(pipeline)
        return iter(wds.WebLoader(pipeline, batch_size=None, num_workers=loader_workers, pin_memory=pin_memory))

    def repeated() -> Iterator[Batch]:
        while True:
            count = 0
            for count, batch in enumerate(one_pass(), 1):
                yield batch
            if count == 0:
                raise ValueError(f"rank {rank}: its shards hold no samples")

    return one_pass() if steps is None else itertools.islice(repeated(), steps)
