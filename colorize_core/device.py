"""Where a stage or the Python API runs: ``auto``, ``cpu`` or ``cuda``, and how many CPU cores."""

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
