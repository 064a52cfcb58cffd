"""Policies returned by planners: time-varying linear feedback executed at any rate.

A planner's ``optimize(x0, t0_s)`` returns a :class:`LinearFeedbackPolicy`; a torque loop calls
``policy.action(x, t_s)`` as often as it likes (MJPC Planner/Policy split)::

    u(x, t) = clip( û_i + K_i (x - x̂(t)) + k_i , u_min, u_max ),   i = floor((t - t0_s) / dt_s)

``û_i``, ``K_i``, ``k_i`` are held over a period (the model's zero-order hold), while the nominal
state ``x̂(t)`` is interpolated linearly between knots ``x̂_i`` and ``x̂_{i+1}`` so that feedback
between planning steps compares against where the plan expects the arm to be at ``t``
(``interpolate_action=True`` also interpolates ``û``). Past the horizon the last knot is held.
Sampling planners return the same class with ``K = 0``.
"""

from __future__ import annotations

import numpy as np


class LinearFeedbackPolicy:
    """Time-varying linear feedback around a nominal trajectory.

    Args:
        X: nominal states ``(T+1, nx)``.
        U: nominal actions ``(T, nu)``.
        K: gains ``(T, nu, nx)`` or ``None`` (open loop).
        k: feed-forward corrections ``(T, nu)`` or ``None`` (zeros).
        t0_s: time of knot 0 (seconds, the clock ``action`` is called with).
        dt_s: knot spacing (the planning model's period).
        u_lower, u_upper: action box ``(nu,)`` or ``None``.
        interpolate_action: linearly interpolate ``û`` between knots as well.
    """

    def __init__(self, X, U, K=None, k=None, t0_s: float = 0.0, dt_s: float = 0.05, u_lower=None,
                 u_upper=None, interpolate_action: bool = False) -> None:
        self.X = np.array(X, dtype=float)
        self.U = np.array(U, dtype=float)
        T, nu = self.U.shape
        nx = self.X.shape[1]
        if self.X.shape != (T + 1, nx):
            raise ValueError(f"X must be (T+1, nx) = ({T + 1}, nx), got {self.X.shape}")
        self.K = np.zeros((T, nu, nx)) if K is None else np.array(K, dtype=float)
        self.k = np.zeros((T, nu)) if k is None else np.array(k, dtype=float)
        if self.K.shape != (T, nu, nx) or self.k.shape != (T, nu):
            raise ValueError(f"K must be {(T, nu, nx)} and k {(T, nu)}, got {self.K.shape}, {self.k.shape}")
        if not (np.isfinite(dt_s) and dt_s > 0):
            raise ValueError(f"dt_s must be > 0, got {dt_s}")
        self.T, self.nx, self.nu = T, nx, nu
        self.t0_s = float(t0_s)
        self.dt_s = float(dt_s)
        self.u_lower = None if u_lower is None else np.asarray(u_lower, dtype=float)
        self.u_upper = None if u_upper is None else np.asarray(u_upper, dtype=float)
        self.interpolate_action = interpolate_action
        self._dx = np.empty(nx)
        self._u = np.empty(nu)

    @property
    def horizon_s(self) -> float:
        return self.T * self.dt_s

    def _knot(self, t_s: float) -> tuple[int, float]:
        tau = (t_s - self.t0_s) / self.dt_s
        if tau <= 0.0:
            return 0, 0.0
        i = int(np.floor(tau))
        if i >= self.T:
            return self.T - 1, 1.0
        return i, tau - i

    def nominal_state(self, t_s: float) -> np.ndarray:
        """``x̂(t)`` (linear interpolation between knots)."""
        i, a = self._knot(t_s)
        return (1.0 - a) * self.X[i] + a * self.X[i + 1]

    def action(self, x: np.ndarray, t_s: float) -> np.ndarray:
        """Torque for measured state ``x`` ``(nx,)`` at time ``t_s`` (a new array)."""
        i, a = self._knot(t_s)
        np.subtract(x, (1.0 - a) * self.X[i] + a * self.X[i + 1], out=self._dx)
        if self.interpolate_action and i + 1 < self.T:
            u = (1.0 - a) * self.U[i] + a * self.U[i + 1]
        else:
            u = self.U[i]
        np.add(u, self.k[i], out=self._u)
        self._u += self.K[i] @ self._dx
        if self.u_lower is not None or self.u_upper is not None:
            np.clip(self._u, self.u_lower, self.u_upper, out=self._u)
        return self._u.copy()
