"""Where a stage or the Python API runs: ``auto``, ``cpu`` or ``cuda``, how many CPU cores, and how
much memory is free there."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from colorize_core.constants import DEVICE_CHOICES

if TYPE_CHECKING:  # torch is imported where a device is resolved: the shard stage never needs it
    import torch


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
