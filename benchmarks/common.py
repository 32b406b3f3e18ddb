"""Small helpers shared by the benchmarks: medians of repeated timings, the machine, results.

Timings are medians of several repetitions measured side by side in one run, and the targets
are ratios between them, so a shared, noisy machine moves both sides of a ratio together.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from colorize_core.device import available_cores

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
SHARED = ROOT.parent / "shared" / "data"
#: Names a folder (``<synset>/<photo>.JPEG``) holding exactly the photos of :func:`folder_photos`:
#: a GPU machine's copy, where the shared data are not (benchmarks/gpu_throughput.sh).
PHOTOS_ENV = "COLORIZE_BENCH_PHOTOS"


def folder_photos(count: int = 200) -> list[Path]:
    """``count`` photos of mixed sizes: every fourth of imagenet-sample's sorted 800 (or, with
    :data:`PHOTOS_ENV` set, every photo of the folder it names, sorted)."""
    copy = os.environ.get(PHOTOS_ENV)
    root = Path(copy) if copy else SHARED / "imagenet-sample" / "train"
    photos = sorted(root.glob("*/*.JPEG"))[:: 1 if copy else 4]
    if len(photos) < count:
        raise SystemExit(f"{root}: {len(photos)} photos, {count} asked for")
    return photos[:count]


def median_seconds(run: Callable[[], object], repeat: int = 3, warmup: int = 1) -> float:
    """Median wall time of ``run()`` over ``repeat`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(
    runs: dict[str, Callable[[], object]],
    repeat: int = 3,
    warmup: int = 1,
    after: Callable[[], object] = lambda: None,
) -> dict[str, float]:
    """Median wall time of each run, the runs alternating (A B C A B C ...) so that a noisy,
    shared machine slows every side of a ratio alike; ``after()`` follows every run, untimed
    (deleting what it wrote, say)."""
    for run in runs.values():
        for _ in range(warmup):
            run()
            after()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
            after()
    return {name: statistics.median(values) for name, values in times.items()}


def machine() -> dict:
    import torch

    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": available_cores(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def peak_rss_of(command: list[str], env: dict | None = None) -> tuple[float, str]:
    """Run a command; return its peak resident memory in MiB (ru_maxrss of the child) and its stderr."""
    process = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    stderr = process.stderr.read()
    process.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{stderr[-2000:]}")
    return usage.ru_maxrss / 1024, stderr  # Linux reports KiB


def self_peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def check(name: str, value: float, target: float, higher_is_better: bool = True) -> dict:
    ok = value >= target if higher_is_better else value <= target
    return {"name": name, "value": round(value, 3), "target": target, "met": bool(ok), "direction": ">=" if higher_is_better else "<="}


def report(benchmark: str, measurements: dict, checks: list[dict]) -> None:
    """Print a short table and write ``results/<benchmark>.json``."""
    print(f"\n== {benchmark} ({machine()['cores']} cores, torch {machine()['torch']})")
    width = max(len(k) for k in measurements) if measurements else 10
    for key, value in measurements.items():
        print(f"  {key:<{width}}  {value:.3f}" if isinstance(value, float) else f"  {key:<{width}}  {value}")
    for c in checks:
        print(f"  [{'ok ' if c['met'] else 'MISS'}] {c['name']}: {c['value']} (target {c['direction']} {c['target']})")
    RESULTS.mkdir(exist_ok=True)
    result = {"benchmark": benchmark, "command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine(),
              "measurements": measurements, "checks": checks, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    (RESULTS / f"{benchmark}.json").write_text(json.dumps(result, indent=2) + "\n")


class GpuBusy:
    """The GPU's busy fraction while the block runs: NVML's utilization (the share of time a kernel
    was running, as nvidia-smi shows it) sampled every ``interval`` seconds in a thread; None
    where NVML cannot be read.

        with GpuBusy() as busy:
            work()
        busy.fraction
    """

    def __init__(self, interval: float = 0.05):
        self.interval, self.samples, self.fraction = interval, [], None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        import torch

        while not self._stop.wait(self.interval):
            self.samples.append(torch.cuda.utilization())

    def __enter__(self) -> "GpuBusy":
        import torch

        try:
            torch.cuda.utilization()
        except Exception:  # no NVML (pynvml) or no GPU: nothing to sample
            return self
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self.fraction = sum(self.samples) / len(self.samples) / 100 if self.samples else None


def copy_folder_photos(destination: Path) -> None:
    """Copy :func:`folder_photos` to ``destination/<synset>/<photo>`` (what :data:`PHOTOS_ENV` names
    on a machine without the shared data)."""
    import shutil

    for photo in folder_photos(200):
        (destination / photo.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(photo, destination / photo.parent.name / photo.name)


if __name__ == "__main__":  # python benchmarks/common.py copy-photos DESTINATION
    if len(sys.argv) != 3 or sys.argv[1] != "copy-photos":
        raise SystemExit("usage: python benchmarks/common.py copy-photos DESTINATION")
    copy_folder_photos(Path(sys.argv[2]))
