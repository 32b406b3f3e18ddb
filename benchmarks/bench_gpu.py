"""GPU training step: the full-width network at 256×256 with bf16 autocast and channels_last,
against a bf16 matrix product's measured peak on the same card, in the same run.

    python benchmarks/bench_gpu.py [--batches 32 64 128] [--compile]

Needs a CUDA device (exits with a message otherwise). Every number is written next to the
card's name. Timing: CUDA events around each step after warm-up, median of ``--repeat`` steps.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import demo_bins  # noqa: E402
from common import report  # noqa: E402

from colorize_core.model import ModelConfig, build_model  # noqa: E402
from colorize_core.train.loss import RebalancedCrossEntropy  # noqa: E402
from colorize_core.train.step import training_step  # noqa: E402


def event_median_ms(run, repeat: int, warmup: int = 3) -> float:
    """Median milliseconds of ``run()`` timed with CUDA events, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        run()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def bf16_matmul_tflop_s(n: int = 8192, sets: int = 4, repeat: int = 20) -> float:
    """Peak of a large bf16 matrix product on random data, rotating over several input sets."""
    pairs = [(torch.randn(n, n, device="cuda", dtype=torch.bfloat16), torch.randn(n, n, device="cuda", dtype=torch.bfloat16)) for _ in range(sets)]
    counter = iter(range(10**9))

    def run() -> None:
        a, b = pairs[next(counter) % sets]
        a @ b

    return 2 * n**3 / (event_median_ms(run, repeat) / 1e3) / 1e12


def training_step_ms(batch: int, compile_model: bool, repeat: int) -> tuple[float, float]:
    """(median ms per step, FLOPs per step) of forward + backward + Adam, bf16 autocast, channels_last."""
    from torch.utils.flop_counter import FlopCounterMode

    bins = demo_bins()
    torch.manual_seed(0)
    model = build_model(ModelConfig("eccv16", 1.0, bins.num_classes)).cuda().to(memory_format=torch.channels_last)
    loss_fn = RebalancedCrossEntropy(bins).cuda()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-5, betas=(0.9, 0.99), weight_decay=1e-3, fused=True)
    network = torch.compile(model) if compile_model else model
    lightness = (torch.rand(batch, 1, 256, 256, device="cuda") * 100).contiguous(memory_format=torch.channels_last)
    cells = torch.as_tensor(bins.kept_cells, device="cuda")[torch.randint(0, bins.num_classes, (batch, 64, 64), device="cuda")]

    def step() -> None:
        training_step(network, loss_fn, optimizer, lightness, cells, torch.bfloat16)

    with FlopCounterMode(display=False) as counter:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(lightness)
        loss_fn(logits, cells).backward()
    optimizer.zero_grad(set_to_none=True)
    return event_median_ms(step, repeat, warmup=5), counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile at the largest batch")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu: no CUDA device; this benchmark runs only on a GPU machine")
    torch.backends.cudnn.benchmark = True
    card = torch.cuda.get_device_name(0)
    m: dict = {"gpu": card, "bf16_matmul_tflop_s": bf16_matmul_tflop_s()}
    variants = [(b, False) for b in args.batches] + ([(max(args.batches), True)] if args.compile else [])
    best = 0.0
    for batch, compiled in variants:
        ms, flops = training_step_ms(batch, compiled, args.repeat)
        name = f"full_bf16_b{batch}" + ("_compiled" if compiled else "")
        tflop_s = flops / (ms / 1e3) / 1e12
        m[f"{name}_step_ms"] = ms
        m[f"{name}_img_s"] = batch / (ms / 1e3)
        m[f"{name}_tflop_s"] = tflop_s
        m[f"{name}_share_of_matmul_peak"] = tflop_s / m["bf16_matmul_tflop_s"]
        m.setdefault("full_step_gflop_per_img", flops / batch / 1e9)
        best = max(best, tflop_s / m["bf16_matmul_tflop_s"])
        print(f"{card}: {name}: {ms:.1f} ms/step, {batch / (ms / 1e3):.0f} img/s, {tflop_s:.0f} TFLOP/s", flush=True)
        torch.cuda.empty_cache()
    m["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    # No target was set for the GPU; the share of the bf16 peak is reported, not judged.
    report("gpu", m, [])


if __name__ == "__main__":
    main()
