"""`colorize photo` on a folder: throughput against the network alone, and peak memory.

    python benchmarks/bench_folder.py [--photos 200] [--batch-size 1] [--repeat 3] [--device cpu] [--no-memory]

The folder: ``--photos`` photos of mixed sizes from ``../shared/data/imagenet-sample/train`` (every
fourth of the sorted 800, linked into a temporary folder, never copied), colorized by the bundled
model at its own view (224) and temperature on the CPU, written as JPEG beside nothing (``--out``
a temporary folder, ``--overwrite``), through `colorize photo`'s code path in this process
(`colorize_files`: readers, the network, writers). The network alone: the same batches (formed
by the same :class:`Batcher` from the same views, computed beforehand), through
`Colorizer.log_probs` and nothing else, both ways it can run: one batch at a time on all cores,
and as the folder runs it, one stream per core (each op on one core). They alternate, ``--repeat``
times each; the target is the folder's median against the faster of the two network-only medians.

Memory: peak RSS of the whole `colorize photo` command (a new process) on the first 50 and on all
the photos, measured first (a child's peak RSS counts its parent's at the fork): with the queues
bounded, the longer folder must not need more (within 10 %).

Targets: the folder runs at >= 0.8 of the network's own throughput; peak memory flat.

On a GPU (``--device cuda``, results in ``results/folder_cuda.json``), the same figures with the
GPU's busy fraction (NVML's utilization, sampled every 50 ms) during the folder and during the
network alone; the network then runs as one stream. ``--no-memory`` skips the two commands
whose peak memory is compared (on a GPU each new process plans every input shape anew, about 2 s
each: benchmarks/bench_gpu_shapes.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import ROOT, GpuBusy, check, folder_photos, interleaved_medians, peak_rss_of, report  # noqa: E402

SMALL_FOLDER = 50  # photos in the folder whose peak memory the full one's is compared with


def photo_folder(folder: Path, count: int) -> Path:
    """``count`` imagenet-sample photos (every fourth, mixed sizes) as links in a new folder."""
    sources = folder_photos(count)
    folder.mkdir(parents=True)
    for i, source in enumerate(sources):
        (folder / f"{i:04d}_{source.name}").symlink_to(source)
    return folder


def command_peak_mib(folder: Path, out: Path, batch_size: int, device: str) -> float:
    """Peak RSS of `colorize photo FOLDER` (bundled model) in a new process."""
    command = [sys.executable, "-m", "colorize_core.cli", "photo", str(folder), "--out", str(out), "--overwrite",
               "--batch-size", str(batch_size), "--device", device]  # fmt: skip
    env = {"TQDM_DISABLE": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return peak_rss_of(command, env)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory commands")
    args = parser.parse_args()
    m: dict = {"load_average_1min_at_start": round(os.getloadavg()[0], 2), "photos": args.photos}
    m["batch_size"] = args.batch_size
    m["device"] = args.device
    work = Path(tempfile.mkdtemp(prefix="bench-folder-"))
    try:
        folder = photo_folder(work / "photos", args.photos)
        small = photo_folder(work / "small", min(SMALL_FOLDER, args.photos))
        if not args.no_memory:
            m[f"peak_rss_{small.name}_{len(list(small.iterdir()))}_photos_mib"] = small_peak = command_peak_mib(
                small, work / "out_small", args.batch_size, args.device
            )
            m[f"peak_rss_{args.photos}_photos_mib"] = full_peak = command_peak_mib(
                folder, work / "out_full", args.batch_size, args.device
            )
            m["peak_rss_full_over_small"] = full_peak / small_peak
            print(f"peak memory: {small_peak:.0f} and {full_peak:.0f} MiB", flush=True)

        from colorize_core.device import reuse_freed_memory
        from colorize_core.images import load_pixels, open_image
        from colorize_core.inference.colorizer import Colorizer
        from colorize_core.inference.photo import PhotoOptions, colorize_files
        from colorize_core.inference.pipeline import Batcher, PipelineSizes, network_streams, stream_setup

        reuse_freed_memory()  # as `colorize photo` does (for the network alone too: one process)
        colorizer = Colorizer.pretrained(args.device)
        sizes = PipelineSizes(batch_size=args.batch_size)
        views = []
        for path in sorted(folder.iterdir()):
            with open_image(path) as image:
                views.append(colorizer.view(load_pixels(image)))
        batcher = Batcher(sizes.batch_size, sizes.held)
        batches = [b for v in views for b in batcher.add(v.batch_key, v)] + batcher.drain()
        stacks = [np.stack([v.network_lightness for v in batch]) for batch in batches]  # (b, H', W') each
        del views
        options = PhotoOptions([colorizer.default_T], out_dir=work / "out", overwrite=True, batch_size=args.batch_size)

        busy: dict[str, list[float]] = {"network": [], "folder": []}

        def network_only() -> None:
            with GpuBusy() as gpu:
                for stack in stacks:
                    colorizer.log_probs(stack)
            busy["network"].append(gpu.fraction)

        streams = network_streams(args.device, len(stacks))
        stream_pool = ThreadPoolExecutor(streams, "infer", initializer=stream_setup(streams))

        def network_streamed() -> None:  # as the folder's pipeline runs it: `streams` batches at once
            list(stream_pool.map(colorizer.log_probs, stacks))

        def whole_folder() -> None:
            with GpuBusy() as gpu:
                summary = colorize_files([folder], colorizer, options)
            busy["folder"].append(gpu.fraction)
            if len(summary.done) != args.photos:
                raise RuntimeError(f"colorized {len(summary.done)} of {args.photos}: {summary.report()}")

        def shown(name: str, run):
            def timed() -> None:  # a line per run as it ends (a GPU machine's call may be cut short)
                start = time.perf_counter()
                run()
                print(f"{name}: {time.perf_counter() - start:.2f} s", flush=True)

            return timed

        runs = {"network": network_only, "network_streams": network_streamed, "folder": whole_folder}
        runs = {name: shown(name, run) for name, run in runs.items()}
        with stream_pool:
            times = interleaved_medians(runs, args.repeat)
        m["network_batches"] = len(stacks)
        m["network_shapes"] = len({s.shape[1:] for s in stacks})
        m["network_streams"] = streams
        m["network_only_s"] = times["network"]
        m["network_only_streamed_s"] = times["network_streams"]
        m["folder_s"] = times["folder"]
        m["network_only_photos_per_s"] = args.photos / times["network"]
        m["network_only_streamed_photos_per_s"] = args.photos / times["network_streams"]
        m["folder_photos_per_s"] = args.photos / times["folder"]
        m["folder_over_network_throughput"] = min(times["network"], times["network_streams"]) / times["folder"]
        if args.device == "cuda":
            for name, fractions in busy.items():
                known = [f for f in fractions if f is not None]
                m[f"gpu_busy_fraction_{name}"] = sorted(known)[len(known) // 2] if known else "not readable (no NVML)"
        m["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
        checks = [
            check(
                "folder / network-only throughput (same batches, the faster way)",
                m["folder_over_network_throughput"],
                0.8,
            ),
        ]
        if not args.no_memory:
            checks.append(check(f"peak RSS, {args.photos} / {SMALL_FOLDER} photos", m["peak_rss_full_over_small"], 1.1, higher_is_better=False))
    finally:
        shutil.rmtree(work)
    report("folder" if args.device == "cpu" else f"folder_{args.device}", m, checks)


if __name__ == "__main__":
    main()
