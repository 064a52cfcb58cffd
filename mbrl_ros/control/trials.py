"""Executing a time-varying linear-Gaussian controller as trials at any torque rate (no ROS).

A trial of ``T`` steps of ``dt_s`` starts at ``start_s``. The torque loop asks for an action at
its own, faster rate; the action of step ``s`` is drawn once, at the first tick inside that step
(the policy mean at the state measured then, plus the step's pre-drawn exploration noise), and
held until the next step: a zero-order hold at ``dt_s``, exactly the transition the local models
are fitted to.
"""

from __future__ import annotations

import math

import numpy as np

from mbrl_ros.control.lg_policy import LinearGaussianPolicy


class TrialExecution:
    """One trial of ``policy`` starting at ``start_s`` (seconds on the caller's clock)."""

    def __init__(self, policy: LinearGaussianPolicy, start_s: float, dt_s: float, rng: np.random.Generator) -> None:
        if not dt_s > 0.0:
            raise ValueError(f"dt_s must be > 0, got {dt_s}")
        self.policy = policy
        self.start_s = float(start_s)
        self.dt_s = float(dt_s)
        self.steps = policy.horizon_steps
        self._noise = rng.standard_normal((self.steps, policy.nu))
        self._held = np.zeros(policy.nu)
        self._held_step = -1

    def step_index(self, t_s: float) -> int:
        # The small epsilon keeps a tick that lands exactly on a step boundary in the new step.
        return math.floor((t_s - self.start_s) / self.dt_s + 1e-9)

    def finished(self, t_s: float) -> bool:
        return self.step_index(t_s) >= self.steps

    def action(self, x: np.ndarray, t_s: float) -> np.ndarray:
        """Torque at ``t_s`` for the measured state ``x``; zero before the start, the last held
        action after the end."""
        s = self.step_index(t_s)
        if s < 0:
            return np.zeros(self.policy.nu)
        s = min(s, self.steps - 1)
        if s != self._held_step:
            self._held = self.policy.action(x, s, self._noise[s])
            self._held_step = s
        return self._held
