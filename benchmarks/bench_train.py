"""Training step: images/s and achieved FLOP/s of a full step (forward, backward, Adam) for the
demo config and the full-width network at 256×256, against the FLOP/s of a large fp32 matrix
product measured in the same run; and the data loader alone against what the step consumes.

    python benchmarks/bench_train.py [--repeat 3]

Targets (CPU): full width >= 70% of the matmul peak, demo >= 40%; loader >= 3× the step's rate.
The same step on a GPU, in bf16: ``benchmarks/bench_gpu.py``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, check, median_seconds, report  # noqa: E402

from colorize_core.config import HistogramParams, ShardParams  # noqa: E402
from colorize_core.data.histogram import bins_from_counts  # noqa: E402
from colorize_core.data.sample import Record, write_list  # noqa: E402
from colorize_core.data.shard import run_shard  # noqa: E402
from colorize_core.data.shard_format import shard_urls  # noqa: E402
from colorize_core.model import ModelConfig, build_model  # noqa: E402
from colorize_core.ab_grid import AbGrid  # noqa: E402
from colorize_core.quantize import srgb_lut  # noqa: E402
from colorize_core.train.data import batches  # noqa: E402
from colorize_core.train.loss import RebalancedCrossEntropy  # noqa: E402
from colorize_core.train.step import training_step  # noqa: E402

CONFIGS = {  # name: (width, image size, batch size)
    "demo": (0.25, 64, 32),
    "full": (1.0, 256, 8),
}


def matmul_flops(device: torch.device, dtype: torch.dtype, n: int = 4096, repeat: int = 3) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)

    def run() -> None:
        a @ b

    return 2 * n**3 / median_seconds(run, repeat=repeat)


def demo_bins():
    grid = AbGrid(16)
    counts = np.where(srgb_lut(16).in_gamut, np.arange(grid.num_cells) % 11 + 1, 0)
    return bins_from_counts(counts, grid, HistogramParams())


def timed_training_step(width: float, size: int, batch: int, device: torch.device, amp: torch.dtype | None, repeat: int):
    """(seconds per step, FLOPs per step) of forward + backward + Adam."""
    from torch.utils.flop_counter import FlopCounterMode

    bins = demo_bins()
    torch.manual_seed(0)
    model = build_model(ModelConfig("eccv16", width, bins.num_classes)).to(device, memory_format=torch.channels_last)
    loss_fn = RebalancedCrossEntropy(bins).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    lightness = (torch.rand(batch, 1, size, size, device=device) * 100).contiguous(memory_format=torch.channels_last)
    cells = torch.as_tensor(bins.kept_cells, device=device)[torch.randint(0, bins.num_classes, (batch, size // 4, size // 4), device=device)]

    def step() -> None:
        training_step(model, loss_fn, optimizer, lightness, cells, amp)

    with FlopCounterMode(display=False) as counter:
        step()
    return median_seconds(step, repeat=repeat), counter.get_total_flops()


def loader_rate(photos: list[str], size: int, batch: int) -> float:
    """Images per second that the WebDataset loader delivers as training batches, alone."""
    folder = Path(tempfile.mkdtemp(prefix="bench-loader-"))
    try:
        write_list([Record(p) for p in photos], folder / "train.csv")
        write_list([], folder / "val.csv")
        write_list([], folder / "test.csv")
        run_shard(ShardParams(size=size, samples_per_shard=100), folder, folder / "shards", folder / "reports")
        urls = shard_urls(folder / "shards", "train")

        def run() -> int:
            return sum(len(cells) for _, cells in batches(urls, batch, seed=0, epoch=0, shuffle_buffer=200))

        images = run()
        return images / median_seconds(run, repeat=3)
    finally:
        shutil.rmtree(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cpu = torch.device("cpu")
    photos = sorted(str(p) for p in (SHARED / "imagenet-sample" / "train").glob("*/*.JPEG"))[:400]

    m: dict = {"cpu_fp32_matmul_gflop_s": matmul_flops(cpu, torch.float32) / 1e9}
    checks = []
    for name, (width, size, batch) in CONFIGS.items():
        seconds, flops = timed_training_step(width, size, batch, cpu, None, args.repeat)
        achieved = flops / seconds / 1e9
        m[f"{name}_step_img_s"] = batch / seconds
        m[f"{name}_step_gflop_per_img"] = flops / batch / 1e9
        m[f"{name}_step_gflop_s"] = achieved
        m[f"{name}_loader_img_s"] = loader_rate(photos, size, batch)
        checks.append(check(f"{name}: step FLOP/s / matmul peak", achieved / m["cpu_fp32_matmul_gflop_s"], 0.70 if name == "full" else 0.40))
        checks.append(check(f"{name}: loader / step images/s", m[f"{name}_loader_img_s"] / m[f"{name}_step_img_s"], 3.0))
    report("train", m, checks)


if __name__ == "__main__":
    main()
