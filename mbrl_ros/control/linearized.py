"""A fast rollout model for sampling planners: any protocol model linearised along the plan's nominal.

``LinearizedRolloutModel(base, horizon_steps)`` implements the dynamics protocol. Before each plan a
sampling planner calls ``prepare_plan(x0, U_nominal)`` (the hook :mod:`.sampling` calls when a
model has it): the exact ``base`` model is rolled out along the nominal actions ``Û`` ``(T, nu)``
from ``x0`` and linearised there (``base.linearize``, analytic for the physics model), giving the
time-varying linear model

    x_{t+1} = x̂_{t+1} + A_t (x_t - x̂_t) + B_t (u_t - û_t),   t = 0 .. T-1.

``begin_rollout`` resets the rollout clock and every ``step_torch`` call advances it, so a batch of
``K`` samples costs one small matrix product per step instead of ``K`` rigid-body evaluations (a
first-order model of the known physics around the plan; it is exact along the nominal and its error
grows with the squared deviation of a sample from it). Past the horizon the last linearisation is
reused. ``step`` and ``linearize`` (numpy) delegate to the exact base model.

``step_torch_at(x, u, t)`` is the same map with an explicit step index (for step-dependent APIs
such as pytorch-mppi's ``dynamics(state, action, t)``).
"""

from __future__ import annotations

import numpy as np
import torch


class LinearizedRolloutModel:
    """Time-varying linearisation of ``base`` along a nominal trajectory (protocol model).

    Args:
        base: a dynamics-protocol model with ``step`` and ``linearize``.
        horizon_steps: ``T``, the number of linearisation points.
        dtype: torch dtype of the rollout when ``prepare_plan`` is not given one; ``step_torch``
            inputs must have the prepared dtype.
    """

    def __init__(self, base, horizon_steps: int, dtype: torch.dtype = torch.float32) -> None:
        if int(horizon_steps) != horizon_steps or horizon_steps < 1:
            raise ValueError(f"horizon_steps must be an integer >= 1, got {horizon_steps}")
        self.base = base
        self.nx, self.nu, self.dt_s = base.nx, base.nu, base.dt_s
        self.horizon_steps = int(horizon_steps)
        self.dtype = dtype
        T, nx, nu = self.horizon_steps, self.nx, self.nu
        self.X_nominal = np.zeros((T + 1, nx))
        # Per step: G_t = [A_t B_t]^T (nx+nu, nx) and offset c_t = x̂_{t+1} - A_t x̂_t - B_t û_t.
        self._G = torch.zeros(T, nx + nu, nx, dtype=dtype)
        self._c = torch.zeros(T, nx, dtype=dtype)
        self._t = 0
        self.prepared = False

    def prepare_plan(self, x0: np.ndarray, U_nominal: np.ndarray, dtype: torch.dtype | None = None,
                     X_nominal: np.ndarray | None = None) -> None:
        """Roll the exact model out along ``U_nominal`` ``(T, nu)`` from ``x0`` (or take that rollout,
        ``X_nominal`` ``(T+1, nx)``, when the caller has it) and linearise it there; the rollout
        constants are stored in ``dtype`` (the planner's; default the constructor's)."""
        U = np.asarray(U_nominal, dtype=float)
        if U.shape != (self.horizon_steps, self.nu):
            raise ValueError(f"U_nominal must be {(self.horizon_steps, self.nu)}, got {U.shape}")
        X = self.X_nominal
        fused = getattr(self.base, "step_and_linearize", None)
        if X_nominal is not None:
            X[:] = X_nominal
            A, B = self.base.linearize(X[:-1], U)
        elif fused is not None:  # one pass per step (the physics model has it)
            X[0] = x0
            A = np.empty((self.horizon_steps, self.nx, self.nx))
            B = np.empty((self.horizon_steps, self.nx, self.nu))
            for t in range(self.horizon_steps):
                X[t + 1], A[t], B[t] = fused(X[t], U[t])
        else:
            X[0] = x0
            for t in range(self.horizon_steps):
                X[t + 1] = self.base.step(X[t], U[t])
            A, B = self.base.linearize(X[:-1], U)
        G = np.concatenate([A, B], axis=2).transpose(0, 2, 1)
        c = X[1:] - np.einsum("tij,tj->ti", A, X[:-1]) - np.einsum("tij,tj->ti", B, U)
        # Cast once here: step_torch_at runs K x T times per plan.
        dtype = self.dtype if dtype is None else dtype
        self._G = torch.from_numpy(G).to(dtype)
        self._c = torch.from_numpy(c).to(dtype)
        self.prepared = True
        self._t = 0

    def begin_rollout(self, batch_size: int, generator: torch.Generator | None = None) -> None:
        """Start a batch of rollouts at step 0."""
        self._t = 0

    def step_torch_at(self, x: torch.Tensor, u: torch.Tensor, t: int) -> torch.Tensor:
        """``x_{t+1}`` for a batch ``(B, nx)``, ``(B, nu)`` at step index ``t``."""
        if not self.prepared:
            raise RuntimeError("call prepare_plan(x0, U_nominal) before rolling out")
        i = min(int(t), self.horizon_steps - 1)
        xu = torch.cat([x, u], dim=-1)
        return torch.addmm(self._c[i], xu, self._G[i])

    def step_torch(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Protocol step: uses the rollout clock (reset by ``begin_rollout``) and advances it."""
        out = self.step_torch_at(x, u, self._t)
        self._t += 1
        return out

    def step(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Exact next state from the base model (numpy)."""
        return self.base.step(x, u)

    def linearize(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact Jacobians from the base model."""
        return self.base.linearize(x, u)

    def observe(self, transitions) -> None:
        """Executed steps for the base model's disturbance estimate (a no-op when it keeps none)."""
        observe = getattr(self.base, "observe", None)
        if observe is not None:
            observe(transitions)
