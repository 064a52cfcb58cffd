"""Held-out prediction error of dynamics models: one-step and k-step, per joint.

A k-step prediction starts at the recorded state ``x_t0`` of a held-out episode and applies the
model k times open loop with the recorded torques ``u_t0 .. u_t0+k-1``; its error is the difference
to the recorded ``x_t0+k``. Every start ``t0 = 0 .. T - k`` of every episode counts once, and the
error is the root mean square over all of them, per state dimension (joint positions in rad, joint
velocities in rad/s).

Time-varying models (TVLG) are indexed by the step within an episode: the step applied at ``t`` is
the model's step ``t``, so they can only be evaluated on episodes of their own length ``T`` that
start where their training episodes started (the same trial start, or the same window start).

Models enter as *predictors* ``predict(t, x, u) -> x_next`` with ``t`` ``(S,)`` the step index of
each start, ``x`` ``(N, S, nx)`` and ``u`` ``(N, S, nu)``; :func:`time_varying`,
:func:`time_invariant` and :func:`hold` make them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from mbrl_ros.data.episodes import Episodes
from mbrl_ros.dynamics.tvlg import TVLGDynamics

Predictor = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def time_varying(model: TVLGDynamics) -> Predictor:
    """A TVLG model: step ``t`` of the model at step ``t`` of the episode."""

    def predict(t: np.ndarray, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        z = np.concatenate([x, u], axis=-1)
        return np.einsum("sij,nsj->nsi", model.Fm[t], z) + model.fv[t]

    return predict


def time_invariant(model) -> Predictor:
    """Any model of the dynamics protocol (``step(x, u)``, batched)."""

    def predict(t: np.ndarray, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        return np.asarray(model.step(x.reshape(-1, x.shape[-1]), u.reshape(-1, u.shape[-1]))).reshape(x.shape)

    return predict


def hold() -> Predictor:
    """The trivial baseline ``x_{t+1} = x_t``: what a model must beat to have learned anything."""
    return lambda t, x, u: x


def k_step_predictions(predict: Predictor, episodes: Episodes, k: int) -> np.ndarray:
    """Open-loop ``k``-step predictions of ``x[:, k:]`` from every start ``t0 = 0 .. T - k``: ``(N, T - k + 1, nx)``."""
    T = episodes.horizon_steps
    if not 1 <= k <= T:
        raise ValueError(f"k must be in 1..{T} (the episodes' length), got {k}")
    starts = np.arange(T - k + 1)
    x = episodes.x[:, starts].copy()
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging model's error is reported, not raised
        for j in range(k):
            x = predict(starts + j, x, episodes.u[:, starts + j])
    return x


def k_step_errors(predict: Predictor, episodes: Episodes, k: int) -> np.ndarray:
    """Predicted minus recorded state of every k-step prediction, ``(N (T - k + 1), nx)``."""
    with np.errstate(over="ignore", invalid="ignore"):
        return (k_step_predictions(predict, episodes, k) - episodes.x[:, k:]).reshape(-1, episodes.nx)


@dataclass(frozen=True)
class PredictionError:
    """Root-mean-square k-step error per joint over ``n_predictions`` predictions (non-finite when
    the model diverged)."""

    k: int
    position_rad: np.ndarray
    velocity_rad_s: np.ndarray
    n_predictions: int

    @classmethod
    def of(cls, k: int, errors: np.ndarray) -> "PredictionError":
        """From the errors ``(n, nx)`` of ``n`` k-step predictions (state ``[q; qd]``)."""
        with np.errstate(over="ignore", invalid="ignore"):
            rms = np.sqrt(np.mean(errors**2, axis=0))
        nq = errors.shape[1] // 2
        return cls(k, rms[:nq], rms[nq:], errors.shape[0])

    @property
    def mean_position_rad(self) -> float:
        return float(np.sqrt(np.mean(self.position_rad**2)))

    @property
    def mean_velocity_rad_s(self) -> float:
        return float(np.sqrt(np.mean(self.velocity_rad_s**2)))
