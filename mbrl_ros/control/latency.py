"""Plans that are on time by construction: plan from where the arm will be when the plan takes effect.

A plan asked for at ``t`` from the state ``x(t)`` reaches the torque loop a planning latency ``L``
later, when the arm has moved on under the plan in force. Planned from ``x(t)``, its first knots
are already in the past when it arrives, and the longer planning takes (2 cores shared by four
nodes), the more of it is stale. Instead the request looks ahead: with ``L`` estimated from the
recent latencies (:class:`LatencyEstimate`), :func:`predict_start` rolls ``x(t)`` forward on the
planning model under the policy in force for ``n = ceil(L / dt)`` model steps and the plan starts at
``t + n dt`` from that predicted state; the torque loop switches to it at that time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from collections import deque

import numpy as np

from mbrl_ros.control.policy import LinearFeedbackPolicy


class LatencyEstimate:
    """A high quantile of the last ``window`` plan latencies (request to acceptance, seconds)."""

    def __init__(self, window: int = 20, quantile: float = 0.9) -> None:
        if window < 1 or not 0.0 < quantile <= 1.0:
            raise ValueError(f"need window >= 1 and 0 < quantile <= 1, got {window}, {quantile}")
        self._latencies: deque[float] = deque(maxlen=window)
        self.quantile = quantile

    def add(self, latency_s: float) -> None:
        if np.isfinite(latency_s) and latency_s >= 0.0:
            self._latencies.append(float(latency_s))

    def lead_s(self, cap_s: float) -> float:
        """How far ahead to plan: the quantile of the recent latencies, at most ``cap_s`` (0 before
        the first plan)."""
        if not self._latencies:
            return 0.0
        return float(min(np.quantile(np.asarray(self._latencies), self.quantile), cap_s))


def predict_start(model, policies: Sequence[LinearFeedbackPolicy], x: np.ndarray, t_s: float, lead_s: float
                  ) -> tuple[np.ndarray, float]:
    """``(x0, t0_s)``: the state the arm is predicted to reach ``lead_s`` after ``t_s``, rounded up
    to whole model steps, and that time. ``policies``: the plan in force, then any plan accepted to
    take over at its own ``t0_s`` (in that order); each step holds the torque the plan in force at
    the step's start gives there, its feedback included and clipped to the plan's box (a pending
    plan's feedback, applied before its start, drives the arm towards a state it is not in: the
    prediction then diverges). Without a plan (a PD hold keeps the arm at rest), or with
    ``lead_s <= 0``, the plan starts from ``x`` at ``t_s``."""
    x = np.asarray(x, dtype=float)
    if not policies or lead_s <= 0.0:
        return x, t_s
    dt = float(model.dt_s)
    steps = math.ceil(lead_s / dt - 1e-9)
    for k in range(steps):
        t = t_s + k * dt
        policy = next((p for p in reversed(policies) if p.t0_s <= t + 1e-9), policies[0])
        x_next = model.step(x, policy.action(x, t))
        if not np.all(np.isfinite(x_next)):
            return np.asarray(x, dtype=float), t  # trust the prediction only as far as it is finite
        x = x_next
    return x, t_s + steps * dt
