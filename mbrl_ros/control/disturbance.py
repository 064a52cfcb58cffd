"""Offset-free receding-horizon control: plan with the learned model's recent error as a disturbance.

A model learnt from trials is slightly wrong where a hold spends its time, at rest at the goal. A
planner that trusts it there asks for the torque that the model says keeps the arm still; the arm
creeps under it, off the data the model knows, and the hold diverges (measured on the Panda with
the demo's ensemble and plans applied 0.4 s late: 0.1 cm for 13 s, then 90 cm). The standard remedy
(offset-free MPC) treats the model's recent one-step error as a constant disturbance ``d``,

    x_{k+1} = f(x_k, u_k) + d,    d <- d + gain (x_{k+1} - f(x_k, ū_k) - d)   per executed step,

with ``ū_k`` the mean torque the arm received during the step. Planned with ``d``, the same run holds
the goal at 0.00 cm for 30 s, also with plans 0.7 s late.

:class:`StepWindows` (the torque loop's side) cuts what was executed into model steps;
:class:`DisturbanceModel` (the planner's side) wraps the planning model. No ROS here.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch


class StepWindows:
    """Cuts the torque loop's ticks into executed model steps ``(x_start, mean torque, x_end)``.

    ``add(t_s, x, u)`` on every tick with the measured state and the torque sent from then on;
    ``clear()`` when the ticks stop describing one continuous run (a reset, another action source).
    Thread-safe for one adding and one taking thread (deque operations are atomic).
    """

    def __init__(self, dt_s: float, keep: int = 16) -> None:
        if not dt_s > 0.0:
            raise ValueError(f"dt_s must be > 0, got {dt_s}")
        self.dt_s = float(dt_s)
        self._transitions: deque = deque(maxlen=keep)
        self._start_s: float | None = None
        self._x_start = np.zeros(0)
        self._u_sum = np.zeros(0)
        self._ticks = 0
        self._last_s, self._x_last = 0.0, np.zeros(0)

    def add(self, t_s: float, x: np.ndarray, u: np.ndarray) -> None:
        x = np.array(x, dtype=float)
        if self._start_s is not None and t_s >= self._start_s + self.dt_s - 1e-9:
            # Steps must be exactly dt_s long, as the model's are: ticks rarely land on the boundary
            # (12.5 per 50 ms step at 250 Hz), and a step 52 ms long reads as a model error
            # proportional to the velocity, which misled the plans of a reaching arm.
            end_s = self._start_s + self.dt_s
            a = (end_s - self._last_s) / (t_s - self._last_s) if t_s > self._last_s else 1.0
            x_end = self._x_last + a * (x - self._x_last)
            self._transitions.append((self._x_start, self._u_sum / self._ticks, x_end))
            self._open(end_s, x_end, u)
        elif self._start_s is None:
            self._open(t_s, x, u)
        self._u_sum += u
        self._ticks += 1
        self._last_s, self._x_last = t_s, x

    def _open(self, t_s: float, x: np.ndarray, u: np.ndarray) -> None:
        self._start_s, self._x_start = t_s, x
        self._u_sum, self._ticks = np.zeros_like(u, dtype=float), 0

    def clear(self) -> None:
        self._start_s = None
        self._transitions.clear()

    def take(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The completed steps since the last call, oldest first."""
        return [self._transitions.popleft() for _ in range(len(self._transitions))]


class DisturbanceModel:
    """``model`` plus the disturbance estimate ``d`` (the dynamics protocol, for iLQR and MPPI).

    ``gain`` in (0, 1] weighs each new one-step error; the Jacobians are the model's own (``d`` is
    constant). Call :meth:`observe` with executed steps before planning.

    An ensemble that samples a member per rollout (``step_elites``, ``sample_members``) gets one
    estimate per member, and each sampled rollout the estimate of its own member: with the mean's
    estimate only, the members that happen to err towards the goal look best, and MPPI followed
    them off the goal (measured on the Panda's learned ensemble, see docs/benchmarks.md).
    """

    def __init__(self, model, gain: float) -> None:
        if not 0.0 < gain <= 1.0:
            raise ValueError(f"gain must be in (0, 1], got {gain}")
        self.model = model
        self.gain = float(gain)
        self.nx, self.nu, self.dt_s = model.nx, model.nu, model.dt_s
        self.batched_step_is_cheap = bool(getattr(model, "batched_step_is_cheap", False))
        self.d = np.zeros(self.nx)
        self._step_members = getattr(model, "step_elites", None)
        self.d_members: np.ndarray | None = None

    def observe(self, transitions) -> None:
        for x, u, x_next in transitions:
            error = np.asarray(x_next) - self.model.step(np.asarray(x), np.asarray(u))
            if np.all(np.isfinite(error)):
                self.d += self.gain * (error - self.d)
            if self._step_members is not None:
                errors = np.asarray(x_next) - self._step_members(np.asarray(x), np.asarray(u))
                if self.d_members is None or self.d_members.shape != errors.shape:
                    self.d_members = np.zeros_like(errors)
                ok = np.all(np.isfinite(errors), axis=-1)
                self.d_members[ok] += self.gain * (errors[ok] - self.d_members[ok])

    def step(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        return self.model.step(x, u) + self.d

    def linearize(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.model.linearize(x, u)

    def begin_rollout(self, batch_size: int, generator: torch.Generator | None = None) -> None:
        begin = getattr(self.model, "begin_rollout", None)
        if begin is not None:
            begin(batch_size, generator)

    def step_torch(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        out = self.model.step_torch(x, u)
        members = None if self.d_members is None else self.model.sample_members()
        if members is not None and members.shape[0] == x.shape[0]:
            return out + torch.from_numpy(self.d_members).to(x)[members]
        return out + torch.from_numpy(self.d).to(x)
