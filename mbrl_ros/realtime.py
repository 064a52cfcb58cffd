"""Real-time (SCHED_FIFO) scheduling for a node's threads, where the system permits it.

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
from typing import Callable


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
