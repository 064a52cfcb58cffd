"""Receding-horizon reaching in the simulated arm, timed as the controller node runs it (no ROS).

:func:`receding_horizon_reach` steps the PyBullet arm at its physics rate, applies the current
policy's ``action(x, t)`` at the torque loop's rate (250 Hz: every 4 ms) and replans every control
step ``dt_s``. With ``latency_s = 0`` a plan is made from the state at that instant and takes effect
at once (the best case). With a latency, as in the node: a plan is asked for from the state at that
instant, is made from the state predicted ``latency_s`` ahead under the plan in force
(:func:`~mbrl_ros.control.latency.predict_start`), and takes over only then; the next is asked for
when it has. The torque loop's ticks are cut into executed model steps
(:class:`~mbrl_ros.control.disturbance.StepWindows`) and handed to the next plan, as the node hands
them to its planner process. Used by ``bench/mpc.py`` and the tests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from mbrl_ros.control.disturbance import StepWindows
from mbrl_ros.control.latency import predict_start
from mbrl_ros.control.policy import PlanningFailed

from .arm import SimulatedArm


@dataclass
class ReachRun:
    """One reach: end-effector distance after every control step (m), the wall time of every plan
    after the first (s), the states at the control steps ``(steps+1, nx)``, the mean torque of
    every step ``(steps, nu)``, plans that failed, and non-finite torques (replaced by zero)."""

    distances_m: np.ndarray
    plan_s: np.ndarray
    X: np.ndarray
    U: np.ndarray
    plan_failures: int
    nonfinite_torques: int
    dt_s: float

    def time_to_s(self, tolerance_m: float = 0.02) -> float | None:
        """Time of the first control step that ends within ``tolerance_m`` (``None``: never)."""
        below = np.flatnonzero(self.distances_m < tolerance_m)
        return None if below.size == 0 else float((below[0] + 1) * self.dt_s)


def receding_horizon_reach(arm: SimulatedArm, plan: Callable, goal, steps: int, dt_s: float = 0.05,
                           control_rate_hz: float = 250.0, q0=None, until_settled_s: float | None = None,
                           tolerance_m: float = 0.02, latency_s: float = 0.0) -> ReachRun:
    """Reset ``arm`` to ``q0`` and reach ``goal`` for ``steps`` control steps.

    ``plan(x, t_s, executed) -> policy`` (an object with ``action(x, t_s)``) is called every
    ``dt_s`` with the executed steps since the last call; a plan that raises
    :class:`~mbrl_ros.control.policy.PlanningFailed` keeps the previous policy (as the node does).
    ``until_settled_s``: stop early once the distance has stayed below ``tolerance_m`` that long.
    ``latency_s``: from a plan's request to its taking over (rounded up to whole control steps);
    then ``plan`` is called as ``plan(x, t_s, executed, in_force, lead_s)`` (``in_force``: the
    policy in force or ``None``; see :func:`planner_callback`).
    """
    rate = arm.settings.physics_rate_hz
    per_step, per_tick = int(round(dt_s * rate)), int(round(rate / control_rate_hz))
    arm.reset(q0, 0.0)
    windows = StepWindows(dt_s)
    policy, u = None, np.zeros(arm.nq)
    distances, plan_s, X, U = [], [], [arm.state().x], []
    failures = bad = 0
    u_sum = np.zeros(arm.nq)
    settled_steps = None if until_settled_s is None else int(round(until_settled_s / dt_s))
    lead_steps = int(np.ceil(latency_s / dt_s - 1e-9))
    pending, takes_over = None, None  # a plan made, waiting for its time
    for i in range(steps * per_step):
        t = i / rate
        x = arm.state().x
        if pending is not None and i >= takes_over:
            # A plan asked for at rest (no plan in force, the arm held still) starts on arrival, as the node retimes it.
            policy, pending = (pending if policy is not None else pending.retimed(t)), None
        if i % per_step == 0 and pending is None:
            start = time.perf_counter()
            try:
                if lead_steps == 0:
                    policy = plan(x, t, windows.take())
                else:
                    pending = plan(x, t, windows.take(), policy, lead_steps * dt_s)
                    takes_over = i + lead_steps * per_step
            except PlanningFailed:
                failures += 1
            plan_s.append(time.perf_counter() - start)
        if i % per_tick == 0 and policy is not None:
            u = np.asarray(policy.action(x, t), dtype=float)
            if not np.all(np.isfinite(u)):
                bad += 1
                u = np.zeros(arm.nq)
            windows.add(t, x, u)
        arm.step(u, 1)
        u_sum += u
        if (i + 1) % per_step == 0:
            distances.append(float(np.linalg.norm(arm.ee_position() - np.asarray(goal))))
            X.append(arm.state().x)
            U.append(u_sum / per_step)
            u_sum = np.zeros(arm.nq)
            if settled_steps and len(distances) >= settled_steps and max(distances[-settled_steps:]) < tolerance_m:
                break
    return ReachRun(np.array(distances), np.array(plan_s[1:]), np.array(X), np.array(U), failures, bad, dt_s)


def planner_callback(planner, goal) -> Callable:
    """The ``plan`` of :func:`receding_horizon_reach` for a planner of
    :func:`~mbrl_ros.control.planners.build_planner`, as the planner process runs it: executed
    steps into the disturbance estimate (when the planner has one), ``goal`` as the target."""
    planner.cost.set_ee_target(goal)

    def plan(x, t_s, executed, in_force=None, lead_s=0.0):
        if hasattr(planner.model, "observe"):  # a disturbance estimate, perhaps inside a linearisation
            planner.model.observe(executed)
        x0, t0_s = predict_start(planner.model, [] if in_force is None else [in_force], x, t_s, lead_s)
        return planner.optimize(x0, t0_s)

    return plan
