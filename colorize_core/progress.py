"""Progress for every long loop: a tqdm bar on a terminal; elsewhere (``dvc repro > log.txt``, CI)
a plain line when a tenth of the way is crossed and a minute has passed since the last line (each
minute when the total is unknown). A loop shorter than a minute prints nothing: the stage's own
summary line follows it. ``TQDM_DISABLE=1`` silences both."""

from __future__ import annotations

import os
import sys
import time

from tqdm.auto import tqdm

#: Seconds between two progress lines off a terminal.
LINE_INTERVAL = 60.0


class LineProgress:
    """The part of tqdm's interface the pipeline uses, printing whole lines, few of them."""

    def __init__(self, iterable=None, total=None, initial=0, desc="", unit="it", disable=False, **_):
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.n, self.initial, self.desc, self.unit, self.disable = initial, initial, desc, unit, disable
        self.start = self.last_line = time.monotonic()
        self.next_tenth = self._tenth() + 1
        self.postfix = ""
        self.closed = False

    def _tenth(self) -> int:
        return 10 * self.n // self.total if self.total else 0

    def _line(self) -> None:
        if self.disable:
            return
        seconds = time.monotonic() - self.start
        done = f"{self.n}/{self.total} {self.unit} ({100 * self.n // self.total}%)" if self.total else f"{self.n} {self.unit}"
        speed = (self.n - self.initial) / seconds if seconds >= 1 else 0.0
        rate = f", {speed:.1f} {self.unit}/s" if speed else ""
        if speed and self.total and self.n < self.total:
            rate += f", about {(self.total - self.n) / speed:.0f} s left"
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {done} in {seconds:.0f} s{rate}{extra}", file=sys.stderr, flush=True)
        self.last_line = time.monotonic()

    def update(self, count: int = 1) -> None:
        self.n += count
        crossed = not self.total or self._tenth() >= self.next_tenth
        if crossed and time.monotonic() - self.last_line >= LINE_INTERVAL:
            self.next_tenth = self._tenth() + 1
            self._line()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def write(self, text: str) -> None:
        if not self.disable:
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(iterable=None, **kwargs) -> tqdm | LineProgress:
    """A tqdm bar (refreshed at most once a second) on a terminal, :class:`LineProgress` elsewhere."""
    kwargs["disable"] = kwargs.get("disable", False) or os.environ.get("TQDM_DISABLE", "") not in ("", "0")
    if not sys.stderr.isatty():
        return LineProgress(iterable, **kwargs)
    kwargs.setdefault("mininterval", 1.0)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
