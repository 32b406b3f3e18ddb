"""Preprocessing: the shard stage against its physical limit (JPEG decode + resize) and a naive
reference (full decode, float64 skimage Lab, 5-nearest-neighbour bin search as in Zhang et al.'s
Caffe layer), on the 800 photos of ../shared/data/imagenet-sample at 256×256.

    python benchmarks/bench_shard.py [--images N] [--repeat 3]

Targets: shard >= 75% of decode-only and >= 8× naive (both with all workers); shard with 2
workers >= 1.8× shard with 1.

Like for like: with one worker the stage and decode-only run in this process; with all workers
each starts its pool of processes inside its timing, as the stage does (decode-only with a pool
started before its timing is reported beside it). What the stage wrote is deleted untimed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, check, interleaved_medians, report  # noqa: E402

from colorize_core.config import ShardParams  # noqa: E402
from colorize_core.data.sample import Record, write_list  # noqa: E402
from colorize_core.data.shard import resolve_workers, run_shard  # noqa: E402
from colorize_core.ab_grid import AbGrid  # noqa: E402
from colorize_core.quantize import srgb_lut  # noqa: E402

SIZE = 256


def decode_only(path: str) -> int:
    """The limit: JPEG decode in draft mode (DCT-domain downscale) and resize, nothing else."""
    with Image.open(path) as image:
        image.draft("RGB", (SIZE, SIZE))
        rgb = image.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    return rgb.size[0]


_tree = None


def _naive_init() -> None:
    from scipy.spatial import cKDTree

    global _tree
    grid = AbGrid(16)
    _tree = cKDTree(grid.centres[srgb_lut(16).in_gamut])


def naive(path: str) -> int:
    """The naive reference: full decode, skimage rgb2lab in float64, 5-NN over the bin centres."""
    from skimage.color import rgb2lab

    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR))
    lab = rgb2lab(rgb)  # float64
    _, nearest = _tree.query(lab[..., 1:].reshape(-1, 2), k=5)
    return int(nearest[0, 0])


def pool_run(pool, function, paths: list[str]):
    return lambda: pool.map(function, paths, chunksize=8)


def new_pool_run(context, workers: int, function, paths: list[str]):
    """As the stage runs its workers: a pool started and ended inside the run."""

    def run() -> None:
        with context.Pool(workers) as pool:
            pool.map(function, paths, chunksize=8)

    return run


def shard_run(lists: Path, out: Path, workers: int):
    """The stage as it runs on a real dataset: with the compiled encoder, which it chooses from
    COMPILED_MIN_PIXELS per worker on (800 photos at 256² are 26 M per worker with 2 workers)."""
    params = ShardParams(size=SIZE, samples_per_shard=200, workers=workers)
    return lambda: run_shard(params, lists, out / "shards", out / "reports", compiled=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=800)
    parser.add_argument("--naive-images", type=int, default=200, help="the naive reference is slow: a subset")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    photos = sorted(str(p) for p in (SHARED / "imagenet-sample" / "train").glob("*/*.JPEG"))[: args.images]
    if not photos:
        sys.exit(f"no photos under {SHARED / 'imagenet-sample'}")
    workers = resolve_workers(0)
    srgb_lut(16)  # built or read from the cache once, outside the timings
    lists = Path(tempfile.mkdtemp(prefix="bench-lists-"))
    write_list([Record(p) for p in photos], lists / "train.csv")
    write_list([], lists / "val.csv")
    write_list([], lists / "test.csv")

    out = Path(tempfile.mkdtemp(prefix="bench-shards-"))
    context = multiprocessing.get_context("fork")
    # The naive reference keeps a pool started before its timing (its workers import scikit-image
    # on their first image): the conservative side for the stage.
    with context.Pool(workers) as started, context.Pool(workers, _naive_init) as naive_pool:
        seconds = interleaved_medians(
            {
                "decode_only_1": lambda: [decode_only(path) for path in photos],
                "shard_1": shard_run(lists, out, 1),
                "decode_only_all": new_pool_run(context, workers, decode_only, photos),
                "decode_only_all_started": pool_run(started, decode_only, photos),
                "shard_all": shard_run(lists, out, workers),
                "naive_all": pool_run(naive_pool, naive, photos[: args.naive_images]),
            },
            repeat=args.repeat,
            after=lambda: shutil.rmtree(out, ignore_errors=True),
        )
    m = {
        "images": len(photos),
        "workers": workers,
        "decode_only_1_worker_img_s": len(photos) / seconds["decode_only_1"],
        f"decode_only_{workers}_workers_img_s": len(photos) / seconds["decode_only_all"],
        f"decode_only_{workers}_workers_pool_started_before_img_s": len(photos) / seconds["decode_only_all_started"],
        f"naive_{workers}_workers_img_s": min(args.naive_images, len(photos)) / seconds["naive_all"],
        "shard_1_worker_img_s": len(photos) / seconds["shard_1"],
        f"shard_{workers}_workers_img_s": len(photos) / seconds["shard_all"],
    }
    shutil.rmtree(lists)
    shard_all = m[f"shard_{workers}_workers_img_s"]
    checks = [
        check("shard / decode-only (all workers)", shard_all / m[f"decode_only_{workers}_workers_img_s"], 0.75),
        check("shard / naive (all workers)", shard_all / m[f"naive_{workers}_workers_img_s"], 8.0),
        check(f"shard {workers} workers / 1 worker", shard_all / m["shard_1_worker_img_s"], 1.8),
    ]
    report("shard", m, checks)


if __name__ == "__main__":
    main()
