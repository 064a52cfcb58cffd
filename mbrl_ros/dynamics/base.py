"""The dynamics protocol every planner and controller update uses.

State ``x = [q; qd]`` (joint positions in rad, velocities in rad/s), shape ``(nx,)`` with
``nx = 2 nq``; action ``u`` = joint torques in N·m, shape ``(nu,)``. When the arm compensates
gravity itself (the Panda default), ``u`` is the torque on top of gravity compensation. One step
advances time by ``dt_s`` (the control period, a zero-order hold on ``u``).

Implementations: the Pinocchio physics model, the time-varying linear-Gaussian model and the
neural-network ensemble. Planners never own a simulator; they only see this protocol.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class DynamicsModel(Protocol):
    """Discrete-time dynamics ``x_{t+1} = f(x_t, u_t)``.

    Attributes:
        nx: state dimension.
        nu: action dimension.
        dt_s: time advanced by one step, in seconds.
    """

    nx: int
    nu: int
    dt_s: float

    def step(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Next state (numpy). ``x``: ``(..., nx)``, ``u``: ``(..., nu)`` → ``(..., nx)``."""
        ...

    def step_torch(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Next state (torch, batched for sampling planners). ``(B, nx)``, ``(B, nu)`` → ``(B, nx)``.

        Returns a tensor of the input's dtype and device. Stochastic models draw from their own
        generator (see ``begin_rollout``).
        """
        ...

    def linearize(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Jacobians ``A = df/dx`` ``(..., nx, nx)`` and ``B = df/du`` ``(..., nx, nu)`` at ``(x, u)``."""
        ...


def begin_rollout(model: DynamicsModel, batch_size: int, generator: torch.Generator | None = None) -> None:
    """Tell a model that a batch of ``batch_size`` independent rollouts starts now.

    Models with per-rollout state (an ensemble assigning each sample a member for trajectory
    sampling) define ``begin_rollout(batch_size, generator)``; for the others this does nothing.
    """
    hook = getattr(model, "begin_rollout", None)
    if hook is not None:
        hook(batch_size, generator)
