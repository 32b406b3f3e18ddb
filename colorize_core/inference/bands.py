"""Work on one image split into bands, one per core, on a pool of threads shared by the process.

The full-resolution composition and the web page's JPEG encoding each take a few milliseconds and
release the GIL (a Numba ``nogil`` kernel, libjpeg-turbo), so plain threads run their bands at
once. Plain threads, not an OpenMP team: after a parallel region OpenMP's workers spin-wait for
the next one, and on a machine with few cores they hold a core that the next step needs (measured
in a server on 2 cores: JPEG bands encoded right after an OpenMP composition took 1.86 ms, as one
band does, against 1.2 ms with OpenMP's spinning turned off; benchmarks/NOTES.md). Idle pool
threads sleep.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import TypeVar

from colorize_core.device import available_cores

Result = TypeVar("Result")


@lru_cache(maxsize=1)
def _pool_of(pid: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max(1, available_cores() - 1), thread_name_prefix="band")


def _pool() -> ThreadPoolExecutor:
    """This process's pool: a child forked after the pool started gets its own (threads do not
    survive a fork, and the inherited pool would count its parent's as running)."""
    return _pool_of(os.getpid())


def run_in_bands(work: Callable[[int], Result], bands: int) -> list[Result]:
    """``[work(0), ..., work(bands - 1)]``: band 0 in the calling thread, the others on the pool."""
    if bands <= 1:
        return [work(0)]
    others = [_pool().submit(work, band) for band in range(1, bands)]
    first = work(0)
    return [first] + [future.result() for future in others]
