"""Tiny seeded systems implementing the dynamics protocol, for the control-core tests."""

from __future__ import annotations

import numpy as np
import torch


class LinearModel:
    """``x' = A x + B u`` (protocol model)."""

    def __init__(self, A: np.ndarray, B: np.ndarray, dt_s: float = 0.1) -> None:
        self.A = np.asarray(A, dtype=float)
        self.B = np.asarray(B, dtype=float)
        self.nx, self.nu = self.B.shape
        self.dt_s = dt_s
        self.rollouts_started: list[int] = []

    def step(self, x, u):
        return np.asarray(x) @ self.A.T + np.asarray(u) @ self.B.T

    def step_torch(self, x, u):
        A = torch.as_tensor(self.A, dtype=x.dtype)
        B = torch.as_tensor(self.B, dtype=x.dtype)
        return x @ A.T + u @ B.T

    def linearize(self, x, u):
        batch = np.broadcast_shapes(np.shape(x)[:-1], np.shape(u)[:-1])
        return (np.broadcast_to(self.A, batch + self.A.shape).copy(), np.broadcast_to(self.B, batch + self.B.shape).copy())

    def begin_rollout(self, batch_size, generator=None):
        self.rollouts_started.append(batch_size)


def double_integrator(dt_s: float = 0.1) -> LinearModel:
    """1-D point mass: x = [position, velocity], u = force (unit mass)."""
    A = np.array([[1.0, dt_s], [0.0, 1.0]])
    B = np.array([[0.5 * dt_s**2], [dt_s]])
    return LinearModel(A, B, dt_s)


class Pendulum:
    """Torque-driven pendulum, theta = 0 hanging down, pi upright; semi-implicit Euler."""

    nx, nu = 2, 1

    def __init__(self, dt_s: float = 0.05, mass: float = 1.0, length: float = 1.0, damping: float = 0.1) -> None:
        self.dt_s, self.m, self.l, self.b, self.g = dt_s, mass, length, damping, 9.81

    def _acc(self, th, w, u):
        return (u - self.b * w - self.m * self.g * self.l * np.sin(th)) / (self.m * self.l**2)

    def step(self, x, u):
        x = np.asarray(x, dtype=float)
        u = np.asarray(u, dtype=float)
        th, w = x[..., 0], x[..., 1]
        w2 = w + self.dt_s * self._acc(th, w, u[..., 0])
        return np.stack([th + self.dt_s * w2, w2], axis=-1)

    def step_torch(self, x, u):
        th, w = x[:, 0], x[:, 1]
        acc = (u[:, 0] - self.b * w - self.m * self.g * self.l * torch.sin(th)) / (self.m * self.l**2)
        w2 = w + self.dt_s * acc
        return torch.stack([th + self.dt_s * w2, w2], dim=-1)

    def linearize(self, x, u):
        x = np.asarray(x, dtype=float)
        th = x[..., 0]
        h, I = self.dt_s, self.m * self.l**2
        da_dth = -self.m * self.g * self.l * np.cos(th) / I
        da_dw = -self.b / I
        batch = th.shape
        A = np.zeros(batch + (2, 2))
        Bm = np.zeros(batch + (2, 1))
        A[..., 1, 0] = h * da_dth
        A[..., 1, 1] = 1 + h * da_dw
        A[..., 0, 0] = 1 + h * h * da_dth
        A[..., 0, 1] = h * (1 + h * da_dw)
        Bm[..., 1, 0] = h / I
        Bm[..., 0, 0] = h * h / I
        return A, Bm


class PlanarChain:
    """End-effector kinematics of a planar chain of revolute joints about z (link lengths in m):
    ``p(q) = Σ_i l_i [cos θ_i, sin θ_i, 0]`` with ``θ_i = q_1 + … + q_i`` (the kinematics interface
    :class:`~mbrl_ros.control.costs.ReachCost` uses)."""

    def __init__(self, lengths_m) -> None:
        self.lengths = np.asarray(lengths_m, dtype=float)
        self.nq = self.lengths.size

    def ee_position(self, q):
        theta = np.cumsum(np.asarray(q, dtype=float), axis=-1)
        p = np.stack([(self.lengths * np.cos(theta)).sum(-1), (self.lengths * np.sin(theta)).sum(-1)], axis=-1)
        return np.concatenate([p, np.zeros(p.shape[:-1] + (1,))], axis=-1)

    def ee_position_jacobian(self, q):
        theta = np.cumsum(np.asarray(q, dtype=float), axis=-1)
        # dp/dq_k sums the links from k outwards (reversed cumulative sums).
        dx = np.flip(np.cumsum(np.flip(-self.lengths * np.sin(theta), -1), -1), -1)
        dy = np.flip(np.cumsum(np.flip(self.lengths * np.cos(theta), -1), -1), -1)
        return self.ee_position(q), np.stack([dx, dy, np.zeros_like(dx)], axis=-2)
