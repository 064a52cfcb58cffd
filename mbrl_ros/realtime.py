"""Timing for the nodes' loops: real-time (SCHED_FIFO) scheduling where the system permits it, a
periodic loop against absolute deadlines, and period statistics. No ROS here.

A Python loop is only as punctual as the thread that holds the GIL: if the torque thread is
real-time but the executor or DDS thread holding the GIL is an ordinary thread, any busy process
(a planner, the learner) can preempt that holder and the torque thread waits for it (measured:
ticks 1-3 ms late at p99 on 2 cores). So a real-time node puts *every* thread of its process on
SCHED_FIFO, one priority below its time-critical thread, and moves its heavy work to ordinary
threads or child processes. Real-time throttling (``kernel.sched_rt_runtime_us``) still keeps a
runaway real-time thread from freezing the machine.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np


def process_thread_ids() -> list[int]:
    """Kernel ids of every thread of this process (including DDS's own threads)."""
    return [int(tid) for tid in os.listdir("/proc/self/task")]


def _set_scheduler(policy: int, priority: int, thread_ids: list[int] | None) -> None:
    for tid in thread_ids if thread_ids is not None else [threading.get_native_id()]:
        try:
            os.sched_setscheduler(tid, policy, os.sched_param(priority))
        except ProcessLookupError:  # a thread that has just ended
            continue


def use_fifo(priority: int, thread_ids: list[int] | None = None) -> None:
    """SCHED_FIFO at ``priority`` for the given threads (default: the calling thread). Threads
    and processes they create later inherit it. Raises :class:`OSError` where real-time
    scheduling is refused."""
    _set_scheduler(os.SCHED_FIFO, priority, thread_ids)


def use_normal_scheduling(thread_ids: list[int] | None = None) -> None:
    """Ordinary time sharing again for the given threads (default: the calling thread): for heavy
    work that must not compete with real-time threads for the CPU."""
    _set_scheduler(os.SCHED_OTHER, 0, thread_ids)


def use_realtime_process(priority: int, warn: Callable[[str], None]) -> bool:
    """Every thread of this process at SCHED_FIFO ``priority - 1``, for a node whose time-critical
    thread then takes ``priority`` with :func:`use_fifo`. ``priority`` 0 means normal scheduling;
    where the system refuses real-time scheduling, ``warn`` says so. Returns whether it is on."""
    if priority == 0:
        return False
    try:
        use_fifo(max(1, priority - 1), process_thread_ids())
    except OSError as err:
        warn(f"normal scheduling: SCHED_FIFO {priority} refused ({err})")
        return False
    # A woken real-time thread waits at most this long for the GIL (default 5 ms: a whole tick).
    sys.setswitchinterval(0.0001)
    return True


def run_periodic(period_s: float, now: Callable[[], float], running: Callable[[], bool], tick: Callable[[], None],
                 on_lost: Callable[[int], None], advanced: threading.Event | None = None) -> None:
    """Call ``tick`` every ``period_s`` of the clock ``now`` (seconds) against absolute deadlines
    while ``running()``; when the thread wakes a whole period late, ``on_lost(slots)`` counts the
    lost slots and the deadlines re-align (no burst of catch-up ticks).

    ``advanced``: for a clock that is not the one ``time.sleep`` follows (simulated time), an event
    set whenever the clock moves: the loop looks at the clock then (and at least every period),
    instead of polling it.
    """
    next_s = now()
    while running():
        next_s += period_s
        while running():
            if advanced is not None:
                advanced.clear()  # before reading the clock: a later advance wakes the wait below
            remaining = next_s - now()
            if remaining <= 0.0:
                break
            if advanced is None:
                time.sleep(remaining)
            else:
                advanced.wait(period_s)
        late_s = now() - next_s
        if late_s > period_s:
            on_lost(int(late_s // period_s))
            next_s = now()
        tick()


@dataclass(frozen=True)
class PeriodSummary:
    """Statistics of the intervals between events, in seconds, over a window."""

    count: int
    rate_hz: float
    mean_s: float
    std_s: float
    p99_s: float
    max_s: float

    def as_dict(self) -> dict[str, float]:
        return {
            "samples": self.count,
            "rate_hz": self.rate_hz,
            "period_mean_ms": self.mean_s * 1e3,
            "period_std_ms": self.std_s * 1e3,
            "period_p99_ms": self.p99_s * 1e3,
            "period_max_ms": self.max_s * 1e3,
        }


class PeriodStats:
    """Keeps the last ``window`` event times and summarises the periods between them."""

    def __init__(self, window: int = 2000) -> None:
        self._times: deque[float] = deque(maxlen=window)

    def tick(self, t_s: float) -> None:
        self._times.append(t_s)

    def summary(self) -> PeriodSummary:
        t = np.asarray(self._times)
        if t.size < 2:
            return PeriodSummary(int(t.size), 0.0, float("nan"), float("nan"), float("nan"), float("nan"))
        dt = np.diff(t)
        return PeriodSummary(
            count=int(dt.size),
            rate_hz=float(dt.size / (t[-1] - t[0])) if t[-1] > t[0] else 0.0,
            mean_s=float(dt.mean()),
            std_s=float(dt.std()),
            p99_s=float(np.percentile(dt, 99)),
            max_s=float(dt.max()),
        )
