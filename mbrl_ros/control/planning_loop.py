"""The controller's planner thread, without ROS: what to plan, when, and what happens to a plan.

Every cycle :class:`PlanningLoop` asks the :class:`~mbrl_ros.control.learning_run.LearningRun` for a
:class:`~mbrl_ros.control.learning_run.PlanRequest` (nothing while the run is not planning, has no
model or no fresh state), sends the learned model to the planner child when a new one has arrived,
plans there with the steps the arm executed since the last plan (the model's disturbance estimate),
and hands the policy back to the run, which accepts it or says why not. Replans are paced at
``plan_rate_hz``; a wake-up (new goal, model or settings) starts the next cycle at once.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

import numpy as np

from mbrl_ros.control.controller_settings import ControllerSettings
from mbrl_ros.control.disturbance import StepWindows
from mbrl_ros.control.latency import LatencyEstimate
from mbrl_ros.control.learning_run import LearningRun
from mbrl_ros.control.planner_process import PlannerProcess, PlanningError
from mbrl_ros.control.policy import LinearFeedbackPolicy


class PlanningLoop:
    """Runs in the thread that calls :meth:`run` until :meth:`stop`.

    Args:
        run: the controller's learning run (requests plans, accepts them).
        planner: the planning child process.
        executed: the torque loop's executed model steps.
        settings: the current controller settings (called every cycle: live parameters).
        state: ``() -> (now_s, x)`` the node's clock and its latest fresh state (``None`` when stale).
        on_accepted: called with every accepted policy (e.g. to publish its path).
        log_error: called with a message when a plan fails.
    """

    def __init__(self, run: LearningRun, planner: PlannerProcess, executed: StepWindows,
                 settings: Callable[[], ControllerSettings], state: Callable[[], tuple[float, np.ndarray | None]],
                 on_accepted: Callable[[LinearFeedbackPolicy], None], log_error: Callable[[str], None]) -> None:
        self._run, self._planner, self._executed = run, planner, executed
        self._settings, self._state = settings, state
        self._on_accepted, self._log_error = on_accepted, log_error
        self._wakeup = threading.Event()
        self._running = True
        self._ensemble: bytes | None = None
        self._ensemble_sent = False
        self._plan_times_s: deque[float] = deque(maxlen=10000)
        self._latencies_s: deque[float] = deque(maxlen=10000)
        self._latency = LatencyEstimate()
        self.failures = 0

    def set_learned_model(self, ensemble: bytes) -> None:
        """Plan on this serialized ensemble from the next plan on (when ``model_source`` is learned)."""
        self._ensemble, self._ensemble_sent = ensemble, False
        self.wake()

    def wake(self) -> None:
        self._wakeup.set()

    def stop(self) -> None:
        self._running = False
        self._wakeup.set()

    def take_statistics(self) -> dict:
        """Of the plans returned since the last call (accepted or stale): compute time (planner
        thread, ms) and latency (from the state they were asked for to their arrival, node clock,
        ms); the failures so far."""
        out = {}
        for name, attr in (("plan_time", "_plan_times_s"), ("plan_latency", "_latencies_s")):
            values = np.asarray(getattr(self, attr)) * 1e3
            setattr(self, attr, deque(maxlen=10000))
            p50, p95, high = np.percentile(values, [50, 95, 100]) if values.size else (0.0, 0.0, 0.0)
            out.update({f"{name}_p50_ms": float(p50), f"{name}_p95_ms": float(p95), f"{name}_max_ms": float(high)})
        return {**out, "plan_failures": self.failures}

    def _wait(self, timeout_s: float) -> None:
        self._wakeup.wait(timeout=max(0.0, timeout_s))
        self._wakeup.clear()

    def run(self) -> None:
        while self._running:
            s = self._settings()
            request = self._run.plan_request(*self._state())
            if request is None:
                self._wait(0.1)
                continue
            started = time.perf_counter()
            try:
                if s.model_source == "learned" and not self._ensemble_sent:
                    ensemble = self._ensemble
                    self._planner.set_learned_model(ensemble)
                    self._ensemble_sent = self._ensemble is ensemble
                # Planned from where the arm will be when the plan arrives (mbrl_ros.control.latency).
                lead_s = self._latency.lead_s(cap_s=0.5 * s.horizon_steps * s.dt_s)
                policy = self._planner.plan(s, request.x, request.t0_s, request.goal, self._executed.take(),
                                            request.policies, lead_s, request.epoch)
            except PlanningError as err:
                self.failures += 1
                self._log_error(f"planning failed: {err}")
                self._wait(1.0 / s.plan_rate_hz)
                continue
            elapsed = time.perf_counter() - started
            now = self._state()[0]
            outcome = self._run.on_plan(policy, request, now)
            if outcome != "obsolete":  # a stale plan says the most about how late plans arrive
                self._plan_times_s.append(elapsed)
                self._latencies_s.append(now - request.t0_s)
                self._latency.add(now - request.t0_s)
            if outcome == "accepted":
                self._on_accepted(policy)
            self._wait(1.0 / s.plan_rate_hz - elapsed)
