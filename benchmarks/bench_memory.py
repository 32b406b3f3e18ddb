"""Memory: peak RSS of the shard stage (must not grow with the number of images), of training
(must not grow per epoch) and of `colorize photo` on a 40-megapixel input (target <= 2 GiB) and
on the largest input the default --max-pixels lets in, 200 megapixels (documented; <= 8 GiB).

    python benchmarks/bench_memory.py

Peak RSS comes from the kernel (``ru_maxrss`` of each measured process; for the shard stage's
worker pool, the largest single process).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inference import make_checkpoint  # noqa: E402
from common import ROOT, SHARED, check, peak_rss_of, report  # noqa: E402

from colorize_core.config import HistogramParams, ShardParams, TrainParams  # noqa: E402
from colorize_core.data.histogram import run_histogram  # noqa: E402
from colorize_core.data.sample import Record, write_list  # noqa: E402
from colorize_core.data.shard import run_shard  # noqa: E402

PYTHON = sys.executable


def current_rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def write_lists(folder: Path, photos: list[str]) -> Path:
    write_list([Record(p) for p in photos], folder / "train.csv")
    write_list([Record(p) for p in photos[:50]], folder / "val.csv")
    write_list([], folder / "test.csv")
    return folder


def params_file(folder: Path, shard: ShardParams, train: TrainParams | None = None) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["shard"].update(size=shard.size, samples_per_shard=shard.samples_per_shard, workers=shard.workers)
    if train is not None:
        params["train"].update(width=train.width, epochs=train.epochs, batch_size=train.batch_size)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def shard_peak(photos: list[str], folder: Path, workers: int) -> float:
    lists = write_lists(folder / f"lists{len(photos)}", photos)
    params = params_file(lists, ShardParams(size=256, samples_per_shard=100, workers=workers))
    command = [PYTHON, "-m", "colorize_core.cli", "shard", "--params", str(params), "--lists", str(lists),
               "--out", str(lists / "shards"), "--reports", str(lists / "reports")]  # fmt: skip
    return peak_rss_of(command, {"TQDM_DISABLE": "1"})[0]


def training_rss_per_epoch(photos: list[str], folder: Path, epochs: int = 4) -> list[float]:
    """Resident memory after each epoch of a demo-sized training run, in this process."""
    from colorize_core.train import distributed
    from colorize_core.train.trainer import Trainer

    lists = write_lists(folder / "train-lists", photos)
    run_shard(ShardParams(size=64, samples_per_shard=100), lists, lists / "shards", lists / "reports")
    run_histogram(HistogramParams(), lists / "shards", lists / "bins.json", lists / "bins.png")
    runtime = distributed.start("cpu")
    trainer = Trainer(TrainParams(width=0.25, epochs=epochs, batch_size=32, lr=1e-3), lists / "shards", lists / "bins.json", runtime)
    rss = []
    for epoch in range(epochs):
        trainer.train_epoch(epoch)
        trainer.validate(epoch)
        rss.append(current_rss_mib())
    return rss


def photo_peak(folder: Path, height: int, width: int, checkpoint: Path | None) -> float:
    """Peak RSS of `colorize photo` on a JPEG of height × width (None: the bundled model)."""
    name = f"scan_{height * width / 1e6:.0f}mp"
    y, x = np.mgrid[0:height:8, 0:width:8]
    small = np.stack([np.sin(x / 97.0), np.cos(y / 53.0), np.sin((x + y) / 151.0)], -1)
    tile = Image.fromarray(((small * 0.45 + 0.5) * 255).astype(np.uint8)).resize((width, height), Image.Resampling.BILINEAR)
    tile.save(folder / f"{name}.jpg", quality=90)
    del tile
    model = ["--checkpoint", str(checkpoint)] if checkpoint else []
    command = [PYTHON, "-m", "colorize_core.cli", "photo", str(folder / f"{name}.jpg"), *model,
               "--out", str(folder / "out"), "--device", "cpu"]  # fmt: skip
    peak, _ = peak_rss_of(command, {"TQDM_DISABLE": "1"})
    assert Image.open(folder / "out" / f"{name}_color.jpg").size == (width, height)
    return peak


def main() -> None:
    photos = sorted(str(p) for p in (SHARED / "imagenet-sample" / "train").glob("*/*.JPEG"))
    folder = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    try:
        m = {
            "shard_200_images_peak_mib": shard_peak(photos[:200], folder, workers=2),
            "shard_800_images_peak_mib": shard_peak(photos, folder, workers=2),
            "shard_800_images_1_worker_peak_mib": shard_peak(photos, folder, workers=1),
        }
        rss = training_rss_per_epoch(photos[:400], folder)
        m.update({f"train_rss_after_epoch_{i + 1}_mib": value for i, value in enumerate(rss)})
        m["photo_40mp_full_width_peak_mib"] = photo_peak(folder, 5480, 7300, make_checkpoint(1.0, 256, folder / "full.pt"))
        # the largest photo that the default --max-pixels (200 MP) lets in, with the bundled model
        m["photo_200mp_bundled_peak_mib"] = photo_peak(folder, 12250, 16320, None)
    finally:
        shutil.rmtree(folder)
    checks = [
        check("shard peak, 800 / 200 images", m["shard_800_images_peak_mib"] / m["shard_200_images_peak_mib"], 1.1, higher_is_better=False),
        check("train RSS, last / first epoch", rss[-1] / rss[0], 1.05, higher_is_better=False),
        check("colorize photo, 40 MP peak (MiB)", m["photo_40mp_full_width_peak_mib"], 2048, higher_is_better=False),
        check("colorize photo, 200 MP peak (MiB)", m["photo_200mp_bundled_peak_mib"], 8192, higher_is_better=False),
    ]
    report("memory", m, checks)


if __name__ == "__main__":
    main()
