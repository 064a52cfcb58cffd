"""The controller's torque thread, without ROS: a torque goes out every period, whatever planning does.

Every tick :class:`TorqueLoop` takes the latest joint state, asks the
:class:`~mbrl_ros.control.learning_run.LearningRun` for the torque (clipped, finite, zero on a
stale state), publishes it, and cuts the ticks executed under a plan into model steps for the
model's disturbance estimate (:class:`~mbrl_ros.control.disturbance.StepWindows`). A failing tick
publishes zero torque: a bug must never leave the last torque applied.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

import numpy as np

from mbrl_ros.control.disturbance import StepWindows
from mbrl_ros.control.learning_run import LearningRun
from mbrl_ros.realtime import PeriodStats, run_periodic


class TorqueLoop:
    """Args:
        run: decides the torque.
        executed: receives the ticks executed under a plan.
        state: ``() -> (x, x_time_s)`` the latest joint state (``None``: none yet) and when it came.
        publish: sends a torque ``(nq,)``.
        now: the node's clock (s): simulated time under ``use_sim_time``.
        rate_hz: ticks per second.
        nq: number of joints.
        report_error: logs a failed tick.
    """

    def __init__(self, run: LearningRun, executed: StepWindows, state: Callable[[], tuple[np.ndarray | None, float]],
                 publish: Callable[[np.ndarray], None], now: Callable[[], float], rate_hz: float, nq: int,
                 report_error: Callable[[str], None]) -> None:
        self._run, self._executed, self._state = run, executed, state
        self._publish, self._now, self._report_error = publish, now, report_error
        self.period_s = 1.0 / rate_hz
        self._zero = np.zeros(nq)
        self._periods = PeriodStats(window=int(5 * rate_hz))
        self._compute_s: deque[float] = deque(maxlen=10000)  # drained by statistics()
        self.lost_ticks = 0
        self.running = True

    def run(self, clock_advanced: threading.Event | None = None) -> None:
        """Tick until :attr:`running` is cleared: against the steady clock, or, on simulated time,
        against the node's clock, looked at whenever ``clock_advanced`` is set (each /clock)."""
        run_periodic(self.period_s, time.monotonic if clock_advanced is None else self._now, lambda: self.running,
                     self.tick, self._count_lost, clock_advanced)

    def _count_lost(self, slots: int) -> None:
        self.lost_ticks += slots

    def tick(self) -> None:
        started = time.perf_counter()
        now = self._now()
        self._periods.tick(time.monotonic())
        x, x_time_s = self._state()
        try:
            u, from_plan = self._run.tick(now, x, x_time_s)
        except Exception as err:
            self._report_error(f"torque tick failed: {err!r}; zero torque")
            u, from_plan = self._zero, False
        self._publish(u)
        if from_plan:
            self._executed.add(now, x, u)
        else:
            self._executed.clear()
        self._compute_s.append(time.perf_counter() - started)

    def statistics(self) -> dict:
        """Tick periods over the last 5 s, the tick's compute time p99 since the last call, lost ticks."""
        compute, self._compute_s = np.asarray(self._compute_s), deque(maxlen=10000)
        return {**self._periods.summary().as_dict(),
                "tick_compute_p99_ms": float(np.percentile(compute, 99) * 1e3) if compute.size else 0.0,
                "deadline_misses": self.lost_ticks}
