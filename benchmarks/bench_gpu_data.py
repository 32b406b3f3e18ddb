"""GPU training: where an epoch's time goes, the loader's way against samples held on the device.

    python benchmarks/bench_gpu_data.py [--copies 32] [--workers 12] [--seconds 30] [--repeat 30] [--large-batch 256]

The H200 run of ``experiment=pretrained-gpu`` trained at 300 to 650 images/s where the step alone
ran at 2,439 (benchmarks/NOTES.md). This benchmark takes that recipe's network (the
EfficientNet-Lite2 U-Net at 224×224, the whole encoder learning, bf16) and times, in one run, on
the same shards:

- ``step``: the training step alone, on one batch already on the GPU (the ceiling);
- ``loader``: the WebDataset loader alone (``--workers`` processes, pinned memory), no step;
- ``epoch_loader``: the trainer's epoch as that run had it (the loader, then the step);
- ``epoch_on_device``: the trainer's epoch with ``train.data_on_device`` (the samples read once
  into GPU memory, each epoch a seeded permutation of them), at batch 64 and 256.

Each epoch figure is the trainer's own images/s of its second epoch (the first holds cuDNN's
autotuning), with the GPU's busy fraction (NVML, sampled every 50 ms) beside it; ``--seconds``
bounds the loader-only pass. The shards come from the shard stage on the 200 photos of
benchmarks/bench_folder.py (every fourth of ``imagenet-sample``) listed ``--copies`` times: real
photos and the real format, enough samples for every loader worker. Needs a CUDA device
(``--device cpu --copies 1 --repeat 1 --large-batch 8`` runs it through on a CPU, as a check of
the script).

Target: with the samples on the device an epoch runs at >= 0.9 of the step alone.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import GpuBusy, check, folder_photos, report  # noqa: E402

from colorize_core.config import HistogramParams, ShardParams, TrainParams  # noqa: E402
from colorize_core.data.histogram import run_histogram  # noqa: E402
from colorize_core.data.sample import Record, write_list  # noqa: E402
from colorize_core.data.shard import run_shard  # noqa: E402
from colorize_core.data.shard_format import shard_urls  # noqa: E402
from colorize_core.device import available_cores  # noqa: E402
from colorize_core.train import distributed  # noqa: E402
from colorize_core.train.data import batches  # noqa: E402
from colorize_core.train.step import training_step  # noqa: E402
from colorize_core.train.trainer import Trainer  # noqa: E402

SIZE = 224
#: experiment=pretrained-gpu's training settings (conf/experiment/pretrained-gpu.yaml)
RECIPE = TrainParams(
    arch="efficientnet_lite2_unet", width=1.0, epochs=2, batch_size=64, lr=1e-3, lr_schedule="cosine",
    weight_decay=0.0, shuffle_buffer=2000, loader_workers=12, device="cuda", flip=True,
)  # fmt: skip


def build_shards(work: Path, copies: int) -> Path:
    photos = folder_photos(200)
    lists = work / "lists"
    lists.mkdir()
    write_list([Record(str(p)) for _ in range(copies) for p in photos], lists / "train.csv")
    write_list([Record(str(p)) for p in photos[:64]], lists / "val.csv")
    write_list([], lists / "test.csv")
    run_shard(ShardParams(size=SIZE, samples_per_shard=250, workers=available_cores()), lists, work / "shards", work / "reports")
    run_histogram(HistogramParams(), work / "shards", work / "bins.json", work / "bins.png")
    return work


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_alone(trainer: Trainer, batch_size: int, repeat: int) -> float:
    """Images/s of the training step on one batch already on the GPU."""
    lightness, cells = next(iter(batches(trainer.train_urls, batch_size, 0, 0, 1, shuffle=False)))
    lightness, cells = trainer._to_device(lightness, cells)
    for _ in range(5):
        training_step(trainer.network, trainer.loss, trainer.optimizer, lightness, cells, trainer.amp_dtype).item()
    synchronize(trainer.device)
    start = time.perf_counter()
    for _ in range(repeat):
        training_step(trainer.network, trainer.loss, trainer.optimizer, lightness, cells, trainer.amp_dtype).item()
    return repeat * batch_size / (time.perf_counter() - start)


def loader_alone(trainer: Trainer, seconds: float) -> float:
    """Images/s that the trainer's loader delivers to the GPU, without a step, after its first
    batch; the pass stops after ``seconds``."""
    images, start = 0, None
    for lightness, cells in trainer._batches(trainer.train_urls, 0, train=True):
        lightness, cells = trainer._to_device(lightness, cells)
        synchronize(trainer.device)
        if start is None:
            start = time.perf_counter()
            continue
        images += len(cells)
        if time.perf_counter() - start > seconds:
            break
    return images / (time.perf_counter() - start)


def second_epoch(trainer: Trainer) -> tuple[float, float | None]:
    """(images/s, GPU busy fraction) of the trainer's second epoch (the first tunes cuDNN)."""
    trainer.train_epoch(0)
    with GpuBusy() as busy:
        _, speed = trainer.train_epoch(1)
    return speed, busy.fraction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=32, help="times the 200 photos are listed (samples / 200)")
    parser.add_argument("--workers", type=int, default=RECIPE.loader_workers)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=30, help="timed steps of the step alone")
    parser.add_argument("--large-batch", type=int, default=256, help="the larger batch tried beside the recipe's 64")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_gpu_data: needs a CUDA device (--device cpu checks the script)")
    torch.backends.cudnn.benchmark = True
    runtime = distributed.start(args.device)
    work = Path(tempfile.mkdtemp(prefix="bench-gpu-data-"))
    m: dict = {"device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu", "size": SIZE}
    try:
        def note(**values) -> None:  # kept, and printed as it comes (a GPU machine's call may be cut short)
            m.update(values)
            print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()), flush=True)

        start = time.perf_counter()
        build_shards(work, args.copies)
        note(shards_and_bins_s=time.perf_counter() - start)

        def trainer(**changes) -> Trainer:
            params = replace(RECIPE, loader_workers=args.workers, device=args.device, **changes)
            return Trainer(params, work / "shards", work / "bins.json", runtime)

        start = time.perf_counter()
        held = trainer(data_on_device=True)
        note(train_samples=held.train_samples, on_device_setup_s=time.perf_counter() - start)  # every sample read once
        note(step_alone_img_s_batch64=step_alone(held, 64, args.repeat))
        note(**{f"step_alone_img_s_batch{args.large_batch}": step_alone(held, args.large_batch, args.repeat)})
        speed, busy = second_epoch(held)
        note(epoch_on_device_img_s=speed, epoch_on_device_gpu_busy=busy)
        del held
        held = trainer(data_on_device=True, batch_size=args.large_batch)
        speed, busy = second_epoch(held)
        note(**{f"epoch_on_device_img_s_batch{args.large_batch}": speed, f"epoch_on_device_gpu_busy_batch{args.large_batch}": busy})
        del held

        loading = trainer()
        note(loader_workers=args.workers, loader_alone_img_s=loader_alone(loading, args.seconds))
        speed, busy = second_epoch(loading)
        note(epoch_loader_img_s=speed, epoch_loader_gpu_busy=busy)
        del loading
        if args.device == "cuda":
            note(gpu_memory_peak_gib=torch.cuda.max_memory_allocated() / 2**30)
        checks = [
            check("epoch on device / step alone (batch 64)", m["epoch_on_device_img_s"] / m["step_alone_img_s_batch64"], 0.9),
            check("epoch on device / epoch with the loader", m["epoch_on_device_img_s"] / m["epoch_loader_img_s"], 1.0),
        ]
    finally:
        distributed.stop(runtime)
        shutil.rmtree(work)
    report("gpu_data" if args.device == "cuda" else "gpu_data_cpu_check", m, checks)


if __name__ == "__main__":
    main()
