"""A thread-safe cache of per-photo predictions, least recently used first out, bounded by bytes and age."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class Sized(Protocol):
    @property
    def nbytes(self) -> int: ...


Item = TypeVar("Item", bound=Sized)


class PredictionCache(Generic[Item]):
    """Items by key, holding at most ``max_bytes`` in all (by each item's ``nbytes``), each dropped
    ``max_age_seconds`` after its last use. An item larger than the whole budget is not kept."""

    def __init__(self, max_bytes: int, max_age_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.max_bytes = max_bytes
        self.max_age_seconds = max_age_seconds
        self.clock = clock
        self._items: OrderedDict[str, tuple[Item, float]] = OrderedDict()  # key -> (item, last use), oldest first
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> Item | None:
        """The item (now the most recently used), or None when absent or expired."""
        with self._lock:
            self._drop_expired()
            if key not in self._items:
                return None
            item, _ = self._items.pop(key)
            self._items[key] = (item, self.clock())
            return item

    def put(self, key: str, item: Item) -> None:
        """Keep ``item``, dropping the least recently used ones until the total fits."""
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[0].nbytes
            self._drop_expired()
            if item.nbytes > self.max_bytes:
                return
            self._items[key] = (item, self.clock())
            self._bytes += item.nbytes
            while self._bytes > self.max_bytes:
                _, (oldest, _) = self._items.popitem(last=False)
                self._bytes -= oldest.nbytes

    def _drop_expired(self) -> None:
        deadline = self.clock() - self.max_age_seconds
        while self._items and next(iter(self._items.values()))[1] < deadline:  # oldest use first
            _, (item, _) = self._items.popitem(last=False)
            self._bytes -= item.nbytes

    def stats(self) -> dict:
        with self._lock:
            self._drop_expired()
            return {"entries": len(self._items), "bytes": self._bytes, "max_bytes": self.max_bytes}
