"""A bounded pipeline around one model: reader threads, batches of one network shape, writer threads.

    items (feeder) ─▶ read (reader threads) ─▶ batches by key ─▶ infer (stream threads) ─▶ finish (writer threads)

``colorize photo`` runs its files through it: the feeder plans each input (its header, its
outputs), readers decode a photo and compute its network view and full-resolution lightness, the
network runs on batches of views of one padded shape, writers compose, encode and write the
colours. Decoding, the network, and composing or encoding overlap (PIL, NumPy, Numba and torch
release the GIL in their loops). The decode stage uses it too; the web page and a film's frames
could (their three steps are the same).

The network runs on ``streams`` batches at once. On a CPU the fastest is one stream per core, each
op on one core (:func:`network_streams`): ops spread over all cores wait at every op for their slowest
core, and with readers and writers on the same cores that core is often busy elsewhere (a folder of
200 photos on 2 cores: 0.59 of the network's own throughput with one stream on both cores, see
benchmarks/NOTES.md).

Deterministic: items are read ahead in parallel but taken in their order, batches are formed
from that order alone (:class:`Batcher`), never from thread timing, and their results are taken
in that order too; with ``batch_size=1`` every batch is one item, exactly as a one-at-a-time loop.
Bounded: at most ``read_ahead`` (+ 1) items are being read, ``max_held`` wait in batches,
``streams`` batches are in the network with as many queued behind them (so that a stream that ends
a batch starts the next one without waiting for this thread) and ``write_behind`` items are being
finished, so memory does not grow with the number of items.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")
Prepared = TypeVar("Prepared")
Result = TypeVar("Result")

#: Reader and writer threads of a pipeline (2 each: the machines this runs on have 2 cores or more,
#: and the work they overlap is mostly outside the GIL).
DEFAULT_THREADS = 2


@dataclass(frozen=True)
class PipelineSizes:
    """Threads and queue bounds: at most read_ahead + 1 + max_held + batches_in_flight × batch_size +
    write_behind items are alive at once (being read or waiting, in batches, being inferred, being
    finished)."""

    batch_size: int = 1  # items per network batch (of one key)
    readers: int = DEFAULT_THREADS
    writers: int = DEFAULT_THREADS
    streams: int = 1  # batches in the network at once (threads calling infer)
    read_ahead: int = 0  # items being read at once; 0: readers + batch_size
    max_held: int = 0  # items waiting in unfinished batches; 0: 2 × batch_size
    write_behind: int = 0  # items being finished at once; 0: 2 × writers

    def __post_init__(self) -> None:
        for name in ("batch_size", "readers", "writers", "streams"):
            if getattr(self, name) < 1:
                raise ValueError(f"pipeline {name} must be >= 1, got {getattr(self, name)}")
        for name in ("read_ahead", "max_held", "write_behind"):
            if getattr(self, name) < 0:
                raise ValueError(f"pipeline {name} must be >= 0 (0: the default), got {getattr(self, name)}")

    @property
    def reads(self) -> int:
        return self.read_ahead or self.readers + self.streams * self.batch_size

    @property
    def held(self) -> int:
        return max(self.max_held or 2 * self.batch_size, self.batch_size)

    @property
    def batches_in_flight(self) -> int:
        """Batches submitted to the streams at once: one running on each, one queued behind it."""
        return 2 * self.streams

    @property
    def writes(self) -> int:
        return self.write_behind or 2 * self.writers


class Batcher(Generic[Prepared]):
    """Groups items, in the order they are added, into batches of one key.

    A group is emitted when it holds ``batch_size`` items; when more than ``max_held`` items wait,
    the group whose first item is the oldest is emitted as it is; :meth:`drain` emits the rest,
    oldest first. The batches depend only on the order and keys of the items.
    """

    def __init__(self, batch_size: int, max_held: int):
        self.batch_size, self.max_held = batch_size, max(max_held, batch_size)
        self.groups: dict[Hashable, list[Prepared]] = {}  # insertion order = age of each group's first item
        self.held = 0

    def add(self, key: Hashable, item: Prepared) -> list[list[Prepared]]:
        """Add one item; the batches that are now complete (usually none or one)."""
        group = self.groups.setdefault(key, [])
        group.append(item)
        self.held += 1
        ready = []
        if len(group) >= self.batch_size:
            ready.append(self._pop(key))
        while self.held > self.max_held:
            ready.append(self._pop(next(iter(self.groups))))
        return ready

    def drain(self) -> list[list[Prepared]]:
        return [self._pop(key) for key in list(self.groups)]

    def _pop(self, key: Hashable) -> list[Prepared]:
        group = self.groups.pop(key)
        self.held -= len(group)
        return group


def run_pipeline(
    items: Iterable[Item],
    read: Callable[[Item], Prepared | None],
    key: Callable[[Prepared], Hashable],
    infer: Callable[[list[Prepared]], list[Result]],
    finish: Callable[[Prepared, Result], object],
    sizes: PipelineSizes = PipelineSizes(),
    on_done: Callable[[], None] | None = None,
    setup_stream: Callable[[], None] | None = None,
) -> None:
    """Run every item through read -> infer (in batches) -> finish.

    Parameters
    ----------
    items : consumed lazily, in a feeder thread, as the read-ahead allows (a generator may plan
        them: its file-system calls then stay off the network's thread)
    read : in a reader thread, item -> prepared item, or None to drop it (the caller records why)
    key : items of one key may share a batch (e.g. the padded network shape)
    infer : in a stream thread (``sizes.streams`` at once), a batch of prepared items -> one result
        per item, in their order
    finish : in a writer thread, (prepared item, its result) -> anything (the caller records it)
    on_done : in this thread, once per item, after its finish returned or its read dropped it
        (a progress bar)
    setup_stream : run once in each stream thread before its first batch (None:
        :func:`stream_setup`, the calling thread's torch threads shared among the streams)

    An exception raised by items, read, infer or finish stops the pipeline (items not yet started
    are not started, those running end) and is raised here.
    """
    batcher: Batcher[Prepared] = Batcher(sizes.batch_size, sizes.held)
    done = on_done or (lambda: None)
    with (
        ThreadPoolExecutor(sizes.readers, "read") as readers,
        ThreadPoolExecutor(sizes.streams, "infer", initializer=setup_stream or stream_setup(sizes.streams)) as streams,
        ThreadPoolExecutor(sizes.writers, "write") as writers,
    ):
        feeder = _Feeder(items, lambda item: readers.submit(read, item), sizes.reads)
        inferring: deque[tuple[list[Prepared], Future]] = deque()  # in the batches' order
        writing: deque[Future] = deque()

        def reap(limit: int) -> None:
            while len(writing) > limit:
                writing.popleft().result()  # re-raises the writer's exception
                done()

        def collect(limit: int) -> None:
            """Hand the oldest batches' results to the writers, in order, until ``limit`` are left."""
            while len(inferring) > limit:
                batch, future = inferring.popleft()
                results = future.result()  # re-raises infer's exception
                if len(results) != len(batch):
                    raise RuntimeError(f"infer returned {len(results)} results for a batch of {len(batch)}")
                for prepared, result in zip(batch, results):
                    writing.append(writers.submit(finish, prepared, result))
                    reap(sizes.writes)

        def run(batch: list[Prepared]) -> None:
            inferring.append((batch, streams.submit(infer, batch)))
            collect(sizes.batches_in_flight - 1)

        try:
            for future in feeder:  # in the items' order
                prepared = future.result()  # re-raises the reader's exception
                if prepared is None:
                    done()
                    continue
                for batch in batcher.add(key(prepared), prepared):
                    run(batch)
            for batch in batcher.drain():
                run(batch)
            collect(0)
            reap(0)
        except BaseException:
            feeder.stop()
            for _, future in inferring:
                future.cancel()
            for future in writing:
                future.cancel()
            raise


def network_streams(device_type: str, items: int) -> int:
    """How many network streams a run of ``items`` on ``device_type`` should use: on the CPU, for
    several items, one per core of torch's (each op then on one core, :func:`stream_setup`); else 1."""
    import torch

    return torch.get_num_threads() if device_type == "cpu" and items > 1 else 1


def stream_setup(streams: int) -> Callable[[], None]:
    """What each of ``streams`` stream threads runs first: the calling thread's torch threads shared
    among them. Torch's setting is per thread for its OpenMP ops, and a new thread does not inherit
    it.

    An op on one core can round its last float bits apart from the same op on several (its
    summation order), so a folder's colours (one core per stream) may differ by one 8-bit level,
    in rare pixels, from one photo's alone (all cores); on one core they no longer depend on how
    many cores the machine has.
    """
    import torch

    threads = max(1, torch.get_num_threads() // streams)
    return lambda: torch.set_num_threads(threads)


class _Feeder:
    """Iterates the items in its own thread, submitting each one's read; yields the reads' futures
    in order, at most ``depth`` waiting (the feeder blocks beyond), then ends or raises as the items did."""

    _END = object()

    def __init__(self, items: Iterable[Item], submit: Callable[[Item], Future], depth: int):
        self.futures: queue.Queue = queue.Queue(maxsize=depth)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._feed, args=(iter(items), submit), name="feed", daemon=True)
        self.thread.start()

    def _feed(self, items: Iterator[Item], submit: Callable[[Item], Future]) -> None:
        try:
            for item in items:
                if self.stopped.is_set() or not self._put(submit(item)):
                    return
            self._put(self._END)
        except Exception as error:  # noqa: BLE001 (handed to the consumer, raised there)
            self._put(_Failure(error))

    def _put(self, entry: object) -> bool:
        while not self.stopped.is_set():
            try:
                self.futures.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        if isinstance(entry, Future):
            entry.cancel()
        return False

    def __iter__(self) -> Iterator[Future]:
        while True:
            entry = self.futures.get()
            if entry is self._END:
                return
            if isinstance(entry, _Failure):
                raise entry.error
            yield entry

    def stop(self) -> None:
        """Stop feeding and cancel the reads not yet started."""
        self.stopped.set()
        while True:
            try:
                entry = self.futures.get_nowait()
            except queue.Empty:
                break
            if isinstance(entry, Future):
                entry.cancel()
        self.thread.join()


@dataclass
class _Failure:
    error: BaseException
