"""A progress bar on stderr for the command-line tools (no dependency): redrawn in place on a
terminal, one line per quarter otherwise, so logs and CI output stay short."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Call it with ``(done, total)`` as work proceeds (it is a ``progress`` callback), then
    :meth:`finish`."""

    WIDTH = 24

    def __init__(self, label: str, unit: str, stream: TextIO | None = None, min_interval_s: float = 0.2) -> None:
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self.min_interval_s = min_interval_s
        self._start = time.monotonic()
        self._last_draw = -float("inf")
        self._next_quarter = 1
        self._done, self._total = 0, 0

    def _line(self) -> str:
        fraction = self._done / self._total if self._total else 1.0
        filled = int(round(self.WIDTH * min(fraction, 1.0)))
        elapsed = time.monotonic() - self._start
        rate = self._done / elapsed if elapsed > 0 else 0.0
        return (f"{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {100 * fraction:3.0f}% "
                f"{self._done}/{self._total} {self.unit} ({rate:,.{0 if rate >= 10 else 2}f} {self.unit}/s, {elapsed:.1f} s)")

    def __call__(self, done: int, total: int) -> None:
        self._done, self._total = done, total
        now = time.monotonic()
        if self.interactive:
            if now - self._last_draw >= self.min_interval_s:
                self._last_draw = now
                self.stream.write("\r" + self._line())
                self.stream.flush()
        elif total and done * 4 >= self._next_quarter * total and self._next_quarter < 4:
            self._next_quarter = done * 4 // total + 1
            self.stream.write(self._line() + "\n")
            self.stream.flush()

    def finish(self, note: str = "") -> None:
        """Draw the final state, with ``note`` after it, and end the line."""
        self.stream.write(("\r" if self.interactive else "") + self._line() + (f" {note}" if note else "") + "\n")
        self.stream.flush()
