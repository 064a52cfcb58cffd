"""The time a recorder logs a message at: the moment it was sent, on the arm's clock."""

from __future__ import annotations

import bisect
from collections import deque
from typing import Any

#: Joint states kept to interpolate between (4 s at 250 Hz: longer than a recorder is ever behind).
_HISTORY = 1000


class SendTimeLog:
    """Gives every message a recorder handles the time it was sent, on the arm's clock.

    A recorder on a busy machine handles messages late (seconds, when its process gets no CPU) and
    out of order between topics, and on simulated time its own clock only moves when it gets to
    ``/clock``: its clock at handling time, less the wait, was off by up to 0.9 s after a 2 s stall
    of a sim running at a quarter of real time. What it knows exactly is each message's source
    timestamp (the sender's system clock when it wrote it, from DDS); joint states also carry their
    stamp on the arm's clock. So a joint state is logged at its stamp, and any other message at the
    stamp interpolated, by source timestamp, between the joint states sent just before and after
    it. One sent after the newest joint state heard waits (in :meth:`add`) for the next one, one
    publish period, or for ``max_wait_s`` of system time when the arm is silent: then it is
    extrapolated from the last joint states at the rate the arm's clock was running.

    Items come back as ``(log_ns, key, item)`` in send order; each key's log times strictly
    increase (a bag replays in log-time order, and equal times would let messages swap).
    """

    def __init__(self, max_wait_s: float = 0.5) -> None:
        self.max_wait_ns = int(max_wait_s * 1e9)
        self._source: deque[int] = deque(maxlen=_HISTORY)
        self._stamp: deque[int] = deque(maxlen=_HISTORY)
        self._pending: list[tuple[int, int, str, Any]] = []  # (source, fallback, key, item), by source
        self._last: dict[str, int] = {}

    def _emit(self, log_ns: int, key: str, item: Any) -> tuple[int, str, Any]:
        log_ns = max(0, int(log_ns), self._last.get(key, -1) + 1)
        self._last[key] = log_ns
        return log_ns, key, item

    def _rate(self) -> float:
        """Arm seconds per system second over the history (1 in real time)."""
        if len(self._source) < 2 or self._source[-1] == self._source[0]:
            return 1.0
        return (self._stamp[-1] - self._stamp[0]) / (self._source[-1] - self._source[0])

    def _on_arm_clock(self, source_ns: int) -> float:
        """``source_ns`` on the arm's clock, interpolated (or extrapolated at the arm's rate)."""
        sources = self._source
        i = bisect.bisect_left(sources, source_ns)
        if 0 < i < len(sources):
            s0, s1, t0 = sources[i - 1], sources[i], self._stamp[i - 1]
            return t0 + (source_ns - s0) * (self._stamp[i] - t0) / (s1 - s0)
        j = 0 if i == 0 else len(sources) - 1
        return self._stamp[j] + (source_ns - sources[j]) * self._rate()

    def add_state(self, source_ns: int, stamp_ns: int, key: str, item: Any) -> list[tuple[int, str, Any]]:
        """A joint state, stamped on the arm's clock: what waited for it, then itself."""
        if not self._source or source_ns > self._source[-1]:
            self._source.append(source_ns)
            self._stamp.append(stamp_ns)
        out = []
        while self._pending and self._pending[0][0] <= source_ns:
            source, _, pending_key, pending = self._pending.pop(0)
            out.append(self._emit(self._on_arm_clock(source), pending_key, pending))
        out.append(self._emit(stamp_ns, key, item))
        return out

    def add(self, source_ns: int, fallback_ns: int, key: str, item: Any) -> list[tuple[int, str, Any]]:
        """Any other message. ``fallback_ns``: its log time if no joint state is ever heard."""
        if self._source and source_ns <= self._source[-1]:
            return [self._emit(self._on_arm_clock(source_ns), key, item)]
        # Sent after the newest joint state heard, so its neighbours in time are not known yet: a
        # recorder that takes one message per topic in turn gets ahead on the sparser topics.
        bisect.insort(self._pending, (source_ns, fallback_ns, key, item), key=lambda p: p[0])
        return []

    def due(self, now_source_ns: int) -> list[tuple[int, str, Any]]:
        """What has waited ``max_wait_s`` (system time) for a joint state that has not come."""
        out = []
        while self._pending and now_source_ns - self._pending[0][0] >= self.max_wait_ns:
            source, fallback, key, item = self._pending.pop(0)
            out.append(self._emit(self._on_arm_clock(source) if self._source else fallback, key, item))
        return out

    def remaining(self) -> list[tuple[int, str, Any]]:
        """Everything still waiting (at shutdown), placed as :meth:`due` places it."""
        return self.due(self._pending[-1][0] + self.max_wait_ns) if self._pending else []
