"""Policies returned by planners: time-varying linear feedback executed at any rate.

A planner's ``optimize(x0, t0_s)`` returns a :class:`LinearFeedbackPolicy`; a torque loop calls
``policy.action(x, t_s)`` as often as it likes (MJPC Planner/Policy split)::

    u(x, t) = clip( û_i + K_i (x - x̂(t)) + k_i , u_min, u_max ),   i = floor((t - t0_s) / dt_s)

``û_i``, ``K_i``, ``k_i`` are held over a period (the model's zero-order hold), while the nominal
state ``x̂(t)`` is interpolated linearly between knots ``x̂_i`` and ``x̂_{i+1}`` so that feedback
between planning steps compares against where the plan expects the arm to be at ``t``
(``interpolate_action=True`` also interpolates ``û``). Past the horizon the last knot is held.
Sampling planners return the same class, with the feedback gains they sampled around.

A planner that cannot produce a finite plan raises :class:`PlanningFailed`; no planner returns a
policy with a non-finite entry.
"""

from __future__ import annotations

import numpy as np


class PlanningFailed(RuntimeError):
    """A planner found no finite plan (every rollout, or the linearisation, was non-finite)."""


def elapsed_steps(t0_s: float | None, t_prev_s: float | None, dt_s: float) -> int:
    """Knots of the previous plan (made at ``t_prev_s``) that have passed at ``t0_s``; one when
    either time is unknown."""
    if t0_s is None or t_prev_s is None:
        return 1
    return max(0, int(round((t0_s - t_prev_s) / dt_s)))


def closed_loop_rollout(model, x0, X_ref, U_ref, K=None, k=None, alphas=(0.0,), lower=None, upper=None):
    """Roll ``u = clip(û + α k + K (x - x̂))`` out through ``model.step`` from ``x0``, for every step
    length ``α`` in ``alphas`` at once: ``X (A, T+1, nx)``, ``U (A, T, nu)`` (numpy, float64).

    ``X_ref``, ``U_ref``: the nominal ``(T+1, nx)``, ``(T, nu)`` (``X_ref`` unused without ``K``);
    ``K`` ``(T, nu, nx)`` or ``None`` (open loop); ``k`` ``(T, nu)`` or ``None``."""
    alphas = np.asarray(alphas, dtype=float)
    T, nu = U_ref.shape
    X = np.empty((len(alphas), T + 1, np.shape(x0)[-1]))
    U = np.empty((len(alphas), T, nu))
    X[:, 0] = x0
    clip = lower is not None or upper is not None
    for t in range(T):
        u = np.broadcast_to(U_ref[t], (len(alphas), nu)).copy()
        if k is not None:
            u += alphas[:, None] * k[t]
        if K is not None:
            u += (X[:, t] - X_ref[t]) @ K[t].T
        U[:, t] = np.clip(u, lower, upper) if clip else u
        X[:, t + 1] = model.step(X[:, t], U[:, t])
    return X, U


def shift_held(a, shift: int, fill=None):
    """``a[shift:]`` followed by ``a[-1]`` (or ``fill``) repeated ``shift`` times, as a new array of
    the same length (numpy array or torch tensor): a plan's warm start ``shift`` knots later."""
    n = a.shape[0]
    shift = min(max(0, int(shift)), n)
    out = a[np.minimum(np.arange(n) + shift, n - 1)]
    if fill is not None and shift:
        out[n - shift:] = fill
    return out


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

    def retimed(self, t0_s: float) -> "LinearFeedbackPolicy":
        """The same plan with knot 0 at ``t0_s``."""
        return LinearFeedbackPolicy(self.X, self.U, self.K, self.k, t0_s, self.dt_s, self.u_lower, self.u_upper,
                                    self.interpolate_action)

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
