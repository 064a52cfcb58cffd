"""Model-predictive path integral control (MPPI), batched in torch over any protocol model.

One iteration draws ``K`` noise sequences ``E_k`` ``(T, nu)`` (Gaussian, per-joint ``sigma``,
optionally AR(1)-smoothed; sample 0 is noise-free), rolls the samples out in closed loop around the
nominal plan (``u_k,t = clip(Û_t + E_k,t + K_t (x_k,t - X̂_t))``, see :mod:`.sampling`) and updates
the feed-forward torques by the weighted noise,

    w_k = exp(-(S_k - min S) / λ) / Σ_j exp(-(S_j - min S) / λ),     Û ← Û + Σ_k w_k E_k,

then rolls the updated policy out in closed loop from ``x0`` in the model: the new nominal ``X̂``
and the torques it applies along it (for linear dynamics the weighted mean of the samples'
trajectories and applied torques). Rolled out open loop instead, the averaged torques of a
feedback loop drift off the samples they came from.

with ``S_k`` the total trajectory cost (``cost.evaluate_torch``; a non-finite sample has
``S_k = inf`` and no weight). ``λ`` is ``temperature`` in cost units, or with ``temperature_relative``
``temperature`` times the spread ``median S - min S`` of the iteration's costs, which keeps the
weights equally selective whether the arm is far from the goal (costs in the hundreds) or at it
(costs near zero). Several iterations per plan are allowed; the plan is warm-started by shifting.
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
        temperature: ``λ`` > 0 (cost units; a fraction of the cost spread with ``temperature_relative``).
        temperature_relative: scale ``λ`` by each iteration's cost spread ``median S - min S``.
        noise_sigma_nm: per-joint noise standard deviation (N·m), scalar or one per joint.
        noise_smoothing: AR(1) coefficient of the noise over time (0 = white, < 1).
        iterations: MPPI updates per ``optimize``.
        warm_start: shift the previous plan; seed: generator seed; dtype: ``float32``/``float64``.
    """

    num_samples: int = 512
    horizon_steps: int = 30
    temperature: float = 1.0
    temperature_relative: bool = False
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
    """MPPI planner; ``optimize(x0, t0_s) -> LinearFeedbackPolicy`` (with ``feedback_gain``, if given).

    Args:
        model: dynamics-protocol model; cost: object with ``evaluate_torch`` and ``evaluate``;
        settings: :class:`MPPISettings`; u_lower, u_upper: torque box ``(nu,)`` or ``None``;
        device: torch device; feedback_gain: ``(nu, nx)`` or ``(T, nu, nx)`` or ``None``.
    """

    def __init__(self, model, cost, settings: MPPISettings | None = None, u_lower=None, u_upper=None, device="cpu",
                 feedback_gain=None) -> None:
        super().__init__(model, cost, settings or MPPISettings(), u_lower, u_upper, device, feedback_gain)

    def weights(self, costs: torch.Tensor) -> torch.Tensor:
        """Normalised weights of ``costs`` ``(K,)`` (``inf`` entries get zero)."""
        s = self.settings
        finite = torch.isfinite(costs)
        best = costs.min()
        lam = s.temperature
        if s.temperature_relative:
            spread = float(costs[finite].median() - best)
            lam = s.temperature * spread if spread > 0.0 else 1.0
        w = torch.where(finite, torch.exp((best - costs) / lam), torch.zeros_like(costs))
        return w / w.sum()

    def optimize(self, x0, t0_s: float | None = None) -> LinearFeedbackPolicy:
        s = self.settings
        start = time.perf_counter()
        timing = {"rollout": 0.0, "cost": 0.0}
        x0t, cost = self._begin_plan(x0, t0_s)
        x0 = np.asarray(x0, dtype=float)
        history: list[float] = []
        best = float("nan")
        K = s.num_samples
        for _ in range(s.iterations):
            E = self._draw_noise(self.sigma)
            E[0] = 0.0
            costs = self._rollout_costs(x0t, torch.add(self.mean, E, out=self._samples), timing)
            best = float(costs.min())
            w = self.weights(costs)
            # The feed-forward perturbations are averaged and the plan rolled out with its gains:
            # along the nominal that is the weighted mean of the torques the samples applied.
            step = (w @ torch.nan_to_num(E.reshape(K, -1), nan=0.0)).reshape(self.mean.shape)
            history.append(self._set_mean(x0, self.mean + step, closed_loop=self.gains is not None))
        return self._finish(history, best, s.iterations, start, timing, t0_s)
