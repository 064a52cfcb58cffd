"""Scheduling of a node process's threads, for the real-time tests."""

import os


def real_time_permitted() -> bool:
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
    except OSError:
        return False
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    return True


def thread_policies(pid: int) -> dict[int, tuple[int, int]]:
    """``{thread id: (policy, priority)}`` of every thread of process ``pid``."""
    policies = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            policies[int(tid)] = (os.sched_getscheduler(int(tid)), os.sched_getparam(int(tid)).sched_priority)
        except ProcessLookupError:  # a short-lived thread that has just ended
            continue
    return policies
