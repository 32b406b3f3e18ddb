"""Training batches from the WebDataset shards.

The order of an epoch is a function of (seed, epoch) alone: the shard list is permuted with that
seed, split by distributed rank and by DataLoader worker, and the samples pass through a
WebDataset shuffle buffer seeded the same way. An interrupted run therefore sees, after resuming,
exactly the batches an uninterrupted run would have seen.

With ``train.data_on_device`` the samples are read once into the training device's memory
(:class:`SamplesOnDevice`) and each epoch is a seeded permutation of them
(:func:`batches_on_device`): no tar reading, decoding, collation or passing of batches between
processes after the first read, which is what a GPU waits for when the loader is slower than the
network.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import webdataset as wds

from colorize_core.constants import OUTPUT_STRIDE
from colorize_core.data.shard_format import CELL_KEY, LIGHTNESS_KEY, raise_shard_error, with_arrays
from colorize_core.device import free_memory_bytes

log = logging.getLogger(__name__)

#: The share of a device's free memory that samples held there may take (the network, its
#: activations and the optimizer need the rest).
DEVICE_MEMORY_SHARE_FOR_SAMPLES = 0.5

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


@dataclass
class SamplesOnDevice:
    """A split's samples, in shard order, held in one device's memory.

    ``lightness`` (N, 1, S, S) float16 (the shards' own L, exactly); ``cells`` (N, S/4, S/4)
    int32, the ab cells on the loss's ¼ grid (as :func:`decode_sample` takes them).
    """

    lightness: torch.Tensor
    cells: torch.Tensor

    def __len__(self) -> int:
        return len(self.cells)

    @classmethod
    def load(cls, urls: list[str], samples: int, size: int, device: torch.device, name: str) -> "SamplesOnDevice":
        """Read ``samples`` samples of ``size`` × ``size`` from the shards ``urls`` onto ``device``.

        Raises
        ------
        ValueError
            naming ``train.data_on_device`` when they would take more than
            :data:`DEVICE_MEMORY_SHARE_FOR_SAMPLES` of the device's free memory, or when the
            shards hold another number of samples than their index says.
        """
        cell_side = size // OUTPUT_STRIDE
        needed = samples * (size * size * 2 + cell_side * cell_side * 4)
        free = free_memory_bytes(device)
        if needed > DEVICE_MEMORY_SHARE_FOR_SAMPLES * free:
            raise ValueError(
                f"train.data_on_device: the {samples} {name} samples need {needed / 2**30:.1f} GiB, more than "
                f"{DEVICE_MEMORY_SHARE_FOR_SAMPLES:.0%} of the {free / 2**30:.1f} GiB free on {device}; "
                "set train.data_on_device: false (the loader streams them from the shards)"
            )
        start = time.perf_counter()
        lightness = torch.empty((samples, 1, size, size), dtype=torch.float16, device=device)
        cells = torch.empty((samples, cell_side, cell_side), dtype=torch.int32, device=device)
        held = 0
        mismatch = ValueError(f"train.data_on_device: the {name} shards hold other than the {samples} samples their index lists")
        for batch_lightness, batch_cells in epoch_pipeline(urls, 256, seed=0, epoch=0, shuffle_buffer=1, shuffle=False):
            end = held + len(batch_cells)  # (b, 1, S, S) float32 and (b, S/4, S/4) int64, in shard order
            if end > samples:
                raise mismatch
            lightness[held:end].copy_(batch_lightness)  # float16 -> float32 -> float16: exact
            cells[held:end].copy_(batch_cells)
            held = end
        if held != samples:
            raise mismatch
        log.info(
            "train: %d %s samples held on %s (%.2f GiB), read in %.1f s",
            samples, name, device, needed / 2**30, time.perf_counter() - start,
        )  # fmt: skip
        return cls(lightness, cells)


def batches_on_device(
    samples: SamplesOnDevice,
    batch_size: int,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
    shuffle: bool = True,
    steps: int | None = None,
    flip: bool = False,
) -> Iterator[Batch]:
    """One epoch's batches of samples held on a device, as :func:`batches` gives them from shards:
    (B, 1, S, S) float32 L and (B, S/4, S/4) int64 cells, on that device.

    The order is a permutation drawn from (seed, epoch) alone, dealt round-robin to the ranks;
    ``flip`` mirrors a half of the samples drawn from the same generator. With ``steps`` the
    rank's share repeats until that many batches (distributed ranks take equal steps).
    """
    generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
    count, device = len(samples), samples.cells.device
    order = torch.randperm(count, generator=generator) if shuffle else torch.arange(count)
    mirrored = torch.rand(count, generator=generator) < 0.5 if flip else None  # per sample
    order = order[rank::world_size].to(device)
    if len(order) == 0:
        return
    if mirrored is not None:
        mirrored = mirrored.to(device)
    starts = range(0, len(order), batch_size)
    for start in starts if steps is None else itertools.islice(itertools.cycle(starts), steps):
        index = order[start : start + batch_size]
        lightness, cells = samples.lightness[index].float(), samples.cells[index].long()
        if mirrored is not None:
            mirror = mirrored[index]
            lightness = torch.where(mirror[:, None, None, None], lightness.flip(-1), lightness)
            cells = torch.where(mirror[:, None, None], cells.flip(-1), cells)
        yield lightness, cells
