"""Where a stage or the Python API runs: ``auto``, ``cpu`` or ``cuda``, how many CPU cores, how
much memory is free there, the one thread that runs a GPU's networks, and how the C allocator keeps
freed memory in long inference runs."""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import TYPE_CHECKING, TypeVar

from colorize_core.constants import DEVICE_CHOICES

if TYPE_CHECKING:  # torch is imported where a device is resolved: the shard stage never needs it
    import torch

Result = TypeVar("Result")


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def resolve_device(choice: str, local_rank: int = 0) -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cuda' without a GPU is an error."""
    import torch

    if choice not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {choice!r}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda was asked for but no CUDA device is available")
    if choice in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def free_memory_bytes(device: torch.device) -> int:
    """Memory free on ``device``: the GPU's (as CUDA reports it) or the machine's available RAM."""
    import torch

    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:  # Linux: what can be had without swapping (free pages and the reclaimable page cache)
        with open("/proc/meminfo") as meminfo:
            available = next(line for line in meminfo if line.startswith("MemAvailable:"))
        return int(available.split()[1]) * 1024
    except (OSError, StopIteration):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


#: glibc's mallopt parameters and the values :func:`reuse_freed_memory` sets: up to 64 MiB (the size
#: of a thread's heap) of freed memory stays with each heap (M_TOP_PAD), and blocks up to 32 MiB
#: (glibc's largest threshold) come from the heaps (M_MMAP_THRESHOLD; setting any of these fixes the
#: threshold, which would otherwise stay at 128 KiB and send every array to mmap).
_M_TOP_PAD, _M_MMAP_THRESHOLD = -2, -3
_ALLOCATOR_SETTINGS = ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TOP_PAD, 64 << 20))


def reuse_freed_memory() -> bool:
    """Let glibc's allocator keep the memory a process frees, for long runs that allocate and free
    the same large arrays in several threads (a folder of photos, a film, the web page, the decode
    stage); True when set, False where the C library is not glibc (nothing changes).

    By default a thread's heap that empties is given back to the kernel and made anew for the next
    array, and every page of it faults in again: `colorize photo` on a folder of 200 photos spent
    0.8 to 1.6 s of its 10 s of CPU in the kernel, its network streams making and deleting a 64 MiB
    heap about once a photo (strace; benchmarks/NOTES.md). With a top pad of a whole heap, glibc
    keeps it. Blocks above 32 MiB (a large photo's planes) still go back to the kernel when freed.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not Linux with glibc (musl, macOS, Windows)
        return False
    return all(mallopt(parameter, value) == 1 for parameter, value in _ALLOCATOR_SETTINGS)


_ON_GPU_THREAD = threading.local()


@lru_cache(maxsize=8)
def _gpu_thread_of(pid: int, device: str) -> ThreadPoolExecutor:
    def mark() -> None:
        _ON_GPU_THREAD.device = device

    return ThreadPoolExecutor(1, thread_name_prefix=f"network-{device}", initializer=mark)


def on_gpu_thread(device: torch.device, work: Callable[[], Result]) -> Result:
    """``work()``, on this process's one thread for ``device`` when it is a GPU (else right here).

    PyTorch keeps cuDNN's execution plans per thread (thread_local since its pull request
    #103939), and planning the bundled network for an input shape it has not seen took about 2 s
    on an H200 against 20 to 33 ms for a batch once planned (benchmarks/NOTES.md): a server's
    request threads, or a pipeline's stream threads made anew for every folder, would each plan
    again. On one thread each shape is planned once per process. Exceptions reach the caller.
    """
    if device.type != "cuda" or getattr(_ON_GPU_THREAD, "device", None) == str(device):
        return work()
    return _gpu_thread_of(os.getpid(), str(device)).submit(work).result()  # a forked child gets its own
