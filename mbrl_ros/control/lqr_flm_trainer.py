"""The LQR-FLM learning loop: fit local models to the latest trials, then update the controller.

One iteration (Levine & Abbeel 2014, as in guided policy search's trajectory optimisation):

1. the caller runs the current :class:`LinearGaussianPolicy` and hands over the trials;
2. the dynamics prior (GMM, global model or none) is updated with them and the time-varying
   linear-Gaussian model is fitted (:func:`~mbrl_ros.dynamics.tvlg.fit_tvlg`);
3. the cost is expanded to second order along the trials;
4. from the second iteration on, the KL step multiplier adapts from predicted vs actual improvement;
5. the KL-constrained update (:func:`~mbrl_ros.control.lqr_flm.lqr_flm_update`) gives the next
   controller.

No simulator and no ROS here: :meth:`LQRFLMTrainer.iteration` takes :class:`Episodes` and fits the
local model itself (steps 2-5); :meth:`LQRFLMTrainer.update` takes the trials together with a TVLG
model fitted elsewhere (e.g. by the dynamics learner node) and does steps 3-5.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mbrl_ros.control.lg_policy import LinearGaussianPolicy
from mbrl_ros.control.lqr_flm import (
    LQRFLMSettings,
    adapt_step_mult,
    lqr_flm_update,
    quadratic_cost_from_trials,
)
from mbrl_ros.data.episodes import Episodes
from mbrl_ros.dynamics.tvlg import TVLGDynamics, TVLGFitSettings, fit_tvlg


@dataclass
class IterationStats:
    """What one iteration measured (costs are sums over the trial; times in seconds)."""

    iteration: int
    mean_cost: float
    std_cost: float
    predicted_cost: float
    kl_nats: float
    epsilon_nats: float
    eta: float
    step_mult: float
    dual_iterations: int
    converged: bool
    prior_fit_time_s: float
    dynamics_fit_time_s: float
    update_time_s: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class LQRFLMTrainer:
    """Keeps the controller, the previous iteration's model and cost, η and the step multiplier."""

    def __init__(
        self,
        initial_policy: LinearGaussianPolicy,
        cost,
        settings: LQRFLMSettings | None = None,
        prior=None,
        fit_settings: TVLGFitSettings | None = None,
    ) -> None:
        self.policy = initial_policy
        self.cost = cost
        self.prior = prior
        self.settings = settings or LQRFLMSettings()
        self.fit_settings = fit_settings or TVLGFitSettings()
        self.step_mult = 1.0
        self.eta = self.settings.initial_eta
        self.iteration_index = 0
        self._prev = None  # (policy, dynamics, cost) of the previous iteration
        self.history: list[IterationStats] = []

    def iteration(self, episodes: Episodes) -> IterationStats:
        """Learn from trials collected with ``self.policy``: update the prior, fit TVLG, update."""
        if self.prior is None:
            raise ValueError("LQRFLMTrainer.iteration needs a prior (GMMPrior, GlobalModelPrior or NoPrior)")
        self._check(episodes)
        t0 = time.perf_counter()
        self.prior.update(episodes)
        t1 = time.perf_counter()
        dynamics = fit_tvlg(episodes, self.prior, self.fit_settings)
        t2 = time.perf_counter()
        return self.update(episodes, dynamics, prior_fit_time_s=t1 - t0, dynamics_fit_time_s=t2 - t1)

    def update(self, episodes: Episodes, dynamics: TVLGDynamics, prior_fit_time_s: float = 0.0,
               dynamics_fit_time_s: float = 0.0) -> IterationStats:
        """KL-constrained update from trials of ``self.policy`` and a TVLG model fitted to them."""
        self._check(episodes)
        if (dynamics.horizon_steps, dynamics.nx, dynamics.nu) != (episodes.horizon_steps, episodes.nx, episodes.nu):
            raise ValueError(
                f"dynamics (T, nx, nu) = {(dynamics.horizon_steps, dynamics.nx, dynamics.nu)} do not match the trials "
                f"{(episodes.horizon_steps, episodes.nx, episodes.nu)}"
            )
        qcost, totals = quadratic_cost_from_trials(self.cost, episodes)
        if self._prev is not None:
            prev_policy, prev_dyn, prev_cost = self._prev
            self.step_mult, _ = adapt_step_mult(
                self.step_mult, prev_policy, prev_dyn, prev_cost, self.policy, dynamics, qcost, self.settings
            )
        result = lqr_flm_update(self.policy, dynamics, qcost, self.step_mult, self.eta, self.settings)
        self._prev = (self.policy, dynamics, qcost)
        self.policy = result.policy
        self.eta = result.eta
        stats = IterationStats(
            iteration=self.iteration_index,
            mean_cost=float(np.mean(totals)),
            std_cost=float(np.std(totals)),
            predicted_cost=result.predicted_cost,
            kl_nats=result.kl_nats,
            epsilon_nats=result.epsilon_nats,
            eta=result.eta,
            step_mult=self.step_mult,
            dual_iterations=result.dual_iterations,
            converged=result.converged,
            prior_fit_time_s=prior_fit_time_s,
            dynamics_fit_time_s=dynamics_fit_time_s,
            update_time_s=result.solve_time_s,
        )
        self.history.append(stats)
        self.iteration_index += 1
        return stats

    def _check(self, episodes: Episodes) -> None:
        if episodes.horizon_steps != self.policy.horizon_steps or episodes.nx != self.policy.nx or episodes.nu != self.policy.nu:
            raise ValueError(
                f"trials have (T, nx, nu) = {(episodes.horizon_steps, episodes.nx, episodes.nu)}, the controller "
                f"{(self.policy.horizon_steps, self.policy.nx, self.policy.nu)}"
            )
