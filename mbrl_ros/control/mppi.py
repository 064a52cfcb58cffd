"""Model-predictive path integral control (MPPI), batched in torch over any protocol model.

One iteration draws ``K`` noise sequences ``E_k`` ``(T, nu)`` (Gaussian, per-joint ``sigma``,
optionally AR(1)-smoothed), forms clamped samples ``U_k = clip(Û + E_k)`` (sample 0 is the current
mean, noise-free), rolls them out (``begin_rollout(model, K, generator)`` first, then
``model.step_torch``) and updates

    w_k = exp(-(S_k - min S) / λ) / Σ_j exp(-(S_j - min S) / λ),     Û ← Σ_k w_k U_k,

with ``S_k`` the total trajectory cost (``cost.evaluate_torch``) and ``λ`` the temperature (in cost
units). Several iterations per plan are allowed; the mean is warm-started by shifting. The shared
buffers, noise and rollout code live in :mod:`.sampling`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from .policy import LinearFeedbackPolicy
from .sampling import SamplingPlanner, _check_common


@dataclass(frozen=True)
class MPPISettings:
    """MPPI settings.

    Attributes:
        num_samples: ``K`` rollouts per iteration.
        horizon_steps: ``T``.
        temperature: ``λ`` > 0 (cost units).
        noise_sigma_nm: per-joint noise standard deviation (N·m), scalar or one per joint.
        noise_smoothing: AR(1) coefficient of the noise over time (0 = white, < 1).
        iterations: MPPI updates per ``optimize``.
        warm_start: shift the previous mean; seed: generator seed; dtype: ``float32``/``float64``.
    """

    num_samples: int = 512
    horizon_steps: int = 30
    temperature: float = 1.0
    noise_sigma_nm: float | tuple[float, ...] = 1.0
    noise_smoothing: float = 0.0
    iterations: int = 1
    warm_start: bool = True
    seed: int = 0
    dtype: str = "float32"

    def __post_init__(self) -> None:
        _check_common(self)
        if not (np.isfinite(self.temperature) and self.temperature > 0.0):
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


class MPPI(SamplingPlanner):
    """MPPI planner; ``optimize(x0, t0_s) -> LinearFeedbackPolicy`` (open loop, ``K = 0``).

    Args:
        model: dynamics-protocol model; cost: object with ``evaluate_torch``;
        settings: :class:`MPPISettings`; u_lower, u_upper: torque box ``(nu,)`` or ``None``.
    """

    def __init__(self, model, cost, settings: MPPISettings | None = None, u_lower=None, u_upper=None, device="cpu") -> None:
        super().__init__(model, cost, settings or MPPISettings(), u_lower, u_upper, device)
        self._weights = torch.empty(self.settings.num_samples, dtype=self.dtype, device=self.device)

    def optimize(self, x0, t0_s: float | None = None) -> LinearFeedbackPolicy:
        s = self.settings
        start = time.perf_counter()
        timing = {"rollout": 0.0, "cost": 0.0}
        x0t = self._begin_plan(x0, t0_s)
        history: list[float] = []
        best = float("nan")
        for _ in range(s.iterations):
            E = self._draw_noise(self.sigma)
            E[0] = 0.0
            U = self._clamp(torch.add(self.mean, E, out=self._samples))
            costs = self._rollout_costs(x0t, U, self._X, timing)
            best = float(costs.min())
            w = self._weights
            torch.sub(costs, costs.min(), out=w)
            w.mul_(-1.0 / s.temperature).exp_()
            w.div_(w.sum())
            self.mean.copy_((w @ U.reshape(U.shape[0], -1)).reshape(self.mean.shape))
            if s.iterations > 1:
                history.append(self._mean_cost(x0t, self.mean, timing))
        return self._finish(x0t, self.mean.clone(), history, best, s.iterations, start, timing, t0_s)
