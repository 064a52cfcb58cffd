"""Shared machinery of the sampling planners (MPPI, CEM/iCEM, random shooting) in torch.

Every sampling planner keeps a nominal plan: actions ``Û`` ``(T, nu)``, the states ``X̂`` they lead
to in the model (``model.step``, the deterministic mean) and feedback gains ``K`` ``(T, nu, nx)``
(zero unless the planner is given ``feedback_gain``). It perturbs ``Û`` with ``K`` noise sequences
and rolls every sample out through any dynamics-protocol model (``model.step_torch`` on a
``(K, nx)`` batch per step, after ``begin_rollout(model, K, generator)`` so that ensembles can
assign a member per sample) under the closed loop

    u_{k,t} = clip( Û_t + ε_{k,t} + K_t (x_{k,t} - X̂_t) ),

recording the torques each sample actually applied, and scores the whole ``(K, T+1, nx)``
trajectories at once with ``cost.evaluate_torch``. Around a stabilising gain a sample's noise
perturbs the motion instead of accumulating into drift, so the samples stay near the plan. The
planners update ``Û`` from the applied torques and return a
:class:`~mbrl_ros.control.policy.LinearFeedbackPolicy` with ``K``, so the torque loop applies the
same feedback between plans. Noise can be time-correlated: ``noise_smoothing = a`` draws
``e_t = a e_{t-1} + sqrt(1 - a^2) w_t`` (AR(1), same marginal variance; ``a = 0`` is white noise).

A sample whose rollout or cost is not finite gets an infinite cost and no weight; when every sample
of an iteration is non-finite, or the nominal plan is, ``optimize`` raises
:class:`~mbrl_ros.control.policy.PlanningFailed`.

Warm start: the previous plan shifted by the elapsed number of steps (new knots with zero
feed-forward torque, the last nominal state held as their reference) and rolled out from the new
``x0`` with its feedback, i.e. what the arm does if it keeps the plan. A model with a
``prepare_plan(x0, U_nominal, dtype, X_nominal)`` method (e.g.
:class:`~mbrl_ros.control.linearized.LinearizedRolloutModel`) is given that nominal and the
planner's torch dtype before the samples are drawn. ``planner.last_result`` is a
:class:`SamplingResult`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from mbrl_ros.dynamics.base import begin_rollout

from .policy import LinearFeedbackPolicy, PlanningFailed, closed_loop_rollout, elapsed_steps, shift_held

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _positive_int(name: str, value) -> None:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value}")


def _check_sigma(value) -> None:
    sigma = np.atleast_1d(np.asarray(value, dtype=float))
    if sigma.ndim != 1 or not np.all(np.isfinite(sigma)) or np.any(sigma <= 0):
        raise ValueError(f"noise sigma must be positive finite value(s), got {value}")


def _check_common(s) -> None:
    _positive_int("num_samples", s.num_samples)
    _positive_int("horizon_steps", s.horizon_steps)
    _positive_int("iterations", s.iterations)
    _check_sigma(s.noise_sigma_nm)
    if not 0.0 <= s.noise_smoothing < 1.0:
        raise ValueError(f"noise_smoothing must be in [0, 1), got {s.noise_smoothing}")
    if s.dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {s.dtype!r}")


@dataclass
class SamplingResult:
    """Typed result of one ``optimize`` of a sampling planner.

    Attributes:
        X: nominal states of the returned plan ``(T+1, nx)``; U: its actions ``(T, nu)``.
        cost: total cost of ``(X, U)``; cost_history: that cost after each iteration.
        best_sample_cost: lowest sampled cost of the last iteration.
        finite_fraction: share of the last iteration's samples with a finite cost.
        iterations: iterations run; num_samples: samples per iteration.
        solve_time_s: wall time; time_rollout_s / time_cost_s: its main parts.
    """

    X: np.ndarray
    U: np.ndarray
    cost: float
    cost_history: list[float] = field(default_factory=list)
    best_sample_cost: float = float("nan")
    finite_fraction: float = 1.0
    iterations: int = 0
    num_samples: int = 0
    solve_time_s: float = 0.0
    time_rollout_s: float = 0.0
    time_cost_s: float = 0.0


def rollout_torch(model, x0: torch.Tensor, U: torch.Tensor, X: torch.Tensor, generator=None, X_ref=None, K=None,
                  lower=None, upper=None, applied: torch.Tensor | None = None) -> torch.Tensor:
    """Roll ``K`` samples out from ``x0`` ``(nx,)`` into ``X`` ``(K, T+1, nx)`` (returned): open loop
    under ``U`` ``(K, T, nu)``, or under ``U + K_t (x - X_ref_t)`` when gains ``K`` ``(T, nu, nx)``
    and the nominal ``X_ref`` ``(T+1, nx)`` are given; torques clamped to ``lower``/``upper``, and
    written to ``applied`` ``(K, T, nu)`` (default: ``U`` itself)."""
    n, T, _ = U.shape
    applied = U if applied is None else applied
    begin_rollout(model, n, generator)
    X[:, 0] = x0
    for t in range(T):
        u = U[:, t] if K is None else torch.addmm(U[:, t], X[:, t] - X_ref[t], K[t].T)
        if lower is not None:
            u = u.clamp(lower, upper)
        applied[:, t] = u
        X[:, t + 1] = model.step_torch(X[:, t], u)
    return X


class SamplingPlanner:
    """Base class: buffers, noise, rollouts, warm start and the policy (not used directly).

    Args:
        model: dynamics-protocol model (``step`` for the nominal, ``step_torch`` for the samples;
            optionally ``begin_rollout``).
        cost: object with ``evaluate_torch(X, U) -> (K,)`` and ``evaluate(X, U)`` (numpy).
        settings: the planner's frozen settings (``num_samples``, ``horizon_steps``, ...).
        u_lower, u_upper: torque box ``(nu,)`` (applied torques are clamped) or ``None``.
        device: torch device of the samples (``cpu`` or ``cuda``; the model must run there).
        feedback_gain: ``K`` ``(nu, nx)`` or ``(T, nu, nx)`` the samples and the returned policy
            apply around the nominal, or ``None`` (open loop).
    """

    def __init__(self, model, cost, settings, u_lower=None, u_upper=None, device: str | torch.device = "cpu",
                 feedback_gain=None) -> None:
        self.model = model
        self.cost = cost
        self.settings = settings
        self.nx, self.nu = model.nx, model.nu
        self.dt_s = float(model.dt_s)
        self.device = torch.device(device)
        self.dtype = _DTYPES[settings.dtype]
        K, T, nu = settings.num_samples, settings.horizon_steps, self.nu
        as_t = lambda a: torch.tensor(np.array(a, dtype=float), dtype=self.dtype, device=self.device)  # noqa: E731
        self.u_lower_np = None if u_lower is None else np.broadcast_to(np.asarray(u_lower, float), (nu,)).copy()
        self.u_upper_np = None if u_upper is None else np.broadcast_to(np.asarray(u_upper, float), (nu,)).copy()
        self.u_lower = None if u_lower is None else as_t(self.u_lower_np)
        self.u_upper = None if u_upper is None else as_t(self.u_upper_np)
        self.sigma = as_t(np.broadcast_to(np.asarray(settings.noise_sigma_nm, dtype=float), (nu,)))
        if feedback_gain is None:
            self.gains = None
        else:
            gains = np.broadcast_to(np.asarray(feedback_gain, dtype=float), (T, nu, self.nx)).copy()
            if not np.all(np.isfinite(gains)):
                raise ValueError("feedback_gain must be finite")
            self.gains = gains
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(settings.seed))
        self.mean = torch.zeros(T, nu, dtype=self.dtype, device=self.device)
        self._nominal = np.zeros((T + 1, self.nx))
        self._noise = torch.empty(K, T, nu, dtype=self.dtype, device=self.device)
        self._samples = torch.empty(K, T, nu, dtype=self.dtype, device=self.device)
        self._applied = torch.empty(K, T, nu, dtype=self.dtype, device=self.device)
        self._X = torch.empty(K, T + 1, self.nx, dtype=self.dtype, device=self.device)
        self._t_prev: float | None = None
        self._has_plan = False
        self.last_result: SamplingResult | None = None
        self.reset()

    # ---- shared pieces ---------------------------------------------------------------------------
    def optimize(self, x0, t0_s: float | None = None) -> LinearFeedbackPolicy:
        """Plan from ``x0`` at time ``t0_s`` and return the policy; details in ``self.last_result``."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget the warm start (mean back to zero torque)."""
        self.mean.zero_()
        self._clamp(self.mean)
        self._t_prev = None
        self._has_plan = False

    def _shift(self, t0_s: float | None) -> None:
        if not self._has_plan or not self.settings.warm_start:
            if not self.settings.warm_start:
                self.reset()
            return
        shift = min(elapsed_steps(t0_s, self._t_prev, self.dt_s), self.settings.horizon_steps)
        if shift:
            # New knots start from zero feed-forward: held, the last torque of a plan that still
            # accelerates at its end compounds over the replans (measured: a 1-D reach diverged).
            self.mean = shift_held(self.mean, shift, fill=0.0)
            self._nominal = shift_held(self._nominal, shift)
            if self.gains is not None:
                self.gains = shift_held(self.gains, shift)
        self._on_shift(shift)

    def _on_shift(self, shift: int) -> None:  # hook for planners with more warm state
        pass

    def _draw_noise(self, sigma: torch.Tensor) -> torch.Tensor:
        """White or AR(1)-smoothed Gaussian noise ``(K, T, nu)`` scaled by ``sigma`` (``(nu,)`` or ``(T, nu)``)."""
        E = self._noise
        torch.randn(E.shape, generator=self.generator, dtype=self.dtype, device=self.device, out=E)
        a = self.settings.noise_smoothing
        if a > 0.0:
            b = float(np.sqrt(1.0 - a * a))
            for t in range(1, E.shape[1]):
                E[:, t].mul_(b).add_(E[:, t - 1], alpha=a)
        E.mul_(sigma)
        return E

    def _clamp(self, U: torch.Tensor) -> torch.Tensor:
        if self.u_lower is not None:
            U.clamp_(self.u_lower, self.u_upper)
        return U

    def _as_t(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=self.dtype, device=self.device)

    def _rollout_costs(self, x0: torch.Tensor, U: torch.Tensor, timing: dict) -> torch.Tensor:
        """Roll the feed-forward samples ``U`` out in closed loop around the nominal (the applied
        torques land in ``self._applied``, the states in ``self._X``); their costs ``(K,)``, ``inf``
        where not finite. Raises :class:`PlanningFailed` when no sample is finite."""
        t = time.perf_counter()
        gains = None if self.gains is None else self._as_t(self.gains)
        rollout_torch(self.model, x0, U, self._X, self.generator, self._as_t(self._nominal), gains,
                      self.u_lower, self.u_upper, self._applied)
        timing["rollout"] += time.perf_counter() - t
        t = time.perf_counter()
        costs = self.cost.evaluate_torch(self._X, self._applied)
        timing["cost"] += time.perf_counter() - t
        finite = torch.isfinite(costs)
        if not bool(finite.any()):
            raise PlanningFailed(f"{type(self).__name__}: all {costs.shape[0]} sampled rollouts are non-finite")
        timing["finite"] = float(finite.double().mean())
        return torch.where(finite, costs, torch.full_like(costs, float("inf")))

    def _set_mean(self, x0: np.ndarray, U: torch.Tensor, closed_loop: bool = False) -> float:
        """Roll the actions ``U`` out (``model.step``) and make that the nominal plan; returns its cost.

        ``closed_loop``: ``U`` are feed-forward torques applied with the gains around the current
        nominal (the nominal then holds the torques that loop applies): the plan follows the
        samples it came from instead of drifting off them open loop."""
        U = U.double().cpu().numpy()
        X, U = closed_loop_rollout(self.model, x0, self._nominal, U, self.gains if closed_loop else None,
                                   lower=self.u_lower_np, upper=self.u_upper_np)
        cost = float(self.cost.evaluate(X[0], U[0]).sum())
        if not np.isfinite(cost):
            raise PlanningFailed(f"{type(self).__name__}: the nominal plan is not finite")
        self.mean, self._nominal = self._as_t(U[0]), X[0]
        return cost

    def _begin_plan(self, x0, t0_s: float | None) -> tuple[torch.Tensor, float]:
        """Validate ``x0``, shift the warm start and roll it out from ``x0`` with its feedback, let the
        model prepare (``prepare_plan`` hook); returns ``x0`` as a tensor and the nominal's cost."""
        x0t = self._x0(x0)
        x0 = np.asarray(x0, dtype=float)
        self._shift(t0_s)
        cost = float("nan")
        if self._has_plan:
            try:
                cost = self._set_mean(x0, self.mean, closed_loop=True)
            except PlanningFailed:  # the model failed along the kept plan: start afresh
                cost = float("nan")
        if not np.isfinite(cost):
            self.reset()
            cost = self._set_mean(x0, self.mean)
        prepare = getattr(self.model, "prepare_plan", None)
        if prepare is not None:
            prepare(x0, self.mean.detach().cpu().double().numpy(), dtype=self.dtype, X_nominal=self._nominal)
        return x0t, cost

    def _finish(self, history, best, iterations, start, timing, t0_s) -> LinearFeedbackPolicy:
        U = self.mean.detach().cpu().numpy().astype(float)
        self.last_result = SamplingResult(
            X=self._nominal.copy(), U=U, cost=history[-1], cost_history=history, best_sample_cost=best,
            finite_fraction=timing.get("finite", 1.0), iterations=iterations, num_samples=self.settings.num_samples,
            solve_time_s=time.perf_counter() - start, time_rollout_s=timing["rollout"], time_cost_s=timing["cost"],
        )
        self._t_prev = t0_s
        self._has_plan = True
        return LinearFeedbackPolicy(self._nominal.copy(), U, None if self.gains is None else self.gains.copy(), None,
                                    t0_s=0.0 if t0_s is None else t0_s, dt_s=self.dt_s,
                                    u_lower=self.u_lower_np, u_upper=self.u_upper_np)

    def _x0(self, x0) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(x0, dtype=float), dtype=self.dtype, device=self.device)
        if x.shape != (self.nx,):
            raise ValueError(f"x0 must have shape ({self.nx},), got {tuple(x.shape)}")
        return x


# ---- CEM / iCEM --------------------------------------------------------------------------------
@dataclass(frozen=True)
class CEMSettings:
    """Cross-entropy method (iCEM options: colored noise, elites kept across iterations).

    Attributes:
        num_samples: population per iteration.
        horizon_steps: ``T``.
        iterations: refits per ``optimize``.
        elite_fraction: share of the population refitted to (0 < · <= 1).
        keep_elite_fraction: share of the elites carried into the next iteration (iCEM; 0 = CEM).
        momentum: ``alpha`` in ``mean <- alpha mean + (1 - alpha) elite_mean`` (same for sigma).
        noise_sigma_nm: initial per-joint standard deviation (N·m), scalar or one per joint.
        min_sigma_nm: floor on the refitted standard deviation.
        noise_smoothing: AR(1) coefficient of the sampling noise (0 = white).
        return_best: return the best sampled sequence instead of the final mean.
        warm_start: shift the previous mean; seed: generator seed; dtype: ``float32``/``float64``.
    """

    num_samples: int = 350
    horizon_steps: int = 30
    iterations: int = 5
    elite_fraction: float = 0.1
    keep_elite_fraction: float = 0.3
    momentum: float = 0.1
    noise_sigma_nm: float | tuple[float, ...] = 1.0
    min_sigma_nm: float = 1e-3
    noise_smoothing: float = 0.0
    return_best: bool = True
    warm_start: bool = True
    seed: int = 0
    dtype: str = "float32"

    def __post_init__(self) -> None:
        _check_common(self)
        if not 0.0 < self.elite_fraction <= 1.0:
            raise ValueError(f"elite_fraction must be in (0, 1], got {self.elite_fraction}")
        if not 0.0 <= self.keep_elite_fraction <= 1.0:
            raise ValueError(f"keep_elite_fraction must be in [0, 1], got {self.keep_elite_fraction}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if not (np.isfinite(self.min_sigma_nm) and self.min_sigma_nm >= 0.0):
            raise ValueError(f"min_sigma_nm must be >= 0, got {self.min_sigma_nm}")

    @property
    def num_elites(self) -> int:
        return max(1, int(round(self.elite_fraction * self.num_samples)))


class CEM(SamplingPlanner):
    """CEM / iCEM planner (see :class:`CEMSettings`); ``optimize(x0, t0_s) -> policy``."""

    def __init__(self, model, cost, settings: CEMSettings | None = None, u_lower=None, u_upper=None, device="cpu") -> None:
        super().__init__(model, cost, settings or CEMSettings(), u_lower, u_upper, device)
        s = self.settings
        self._kept: torch.Tensor | None = None
        self._n_keep = int(round(s.keep_elite_fraction * s.num_elites))

    def optimize(self, x0, t0_s: float | None = None) -> LinearFeedbackPolicy:
        s = self.settings
        start = time.perf_counter()
        timing = {"rollout": 0.0, "cost": 0.0}
        x0t, best_cost = self._begin_plan(x0, t0_s)
        x0 = np.asarray(x0, dtype=float)
        sigma = self.sigma.expand(s.horizon_steps, self.nu).clone()
        mean = self.mean.clone()
        best_U = mean.clone()
        history = []
        best_last = float("nan")
        kept = self._kept if (self._kept is not None and s.warm_start) else None
        for _ in range(s.iterations):
            E = self._draw_noise(sigma)
            U = torch.add(mean, E, out=self._samples)
            if kept is not None and kept.shape[0] > 0:
                U[: kept.shape[0]] = kept
            costs = self._rollout_costs(x0t, U, timing)
            order = torch.argsort(costs)[: s.num_elites]
            order = order[torch.isfinite(costs[order])]
            elites = self._applied[order]
            best_last = float(costs[order[0]])
            if best_last < best_cost:
                best_cost, best_U = best_last, elites[0].clone()
            a = s.momentum
            mean.mul_(a).add_(elites.mean(0), alpha=1 - a)
            if elites.shape[0] > 1:
                sigma = a * sigma + (1 - a) * elites.std(0, unbiased=False).clamp_min(s.min_sigma_nm)
            kept = elites[: self._n_keep].clone()
            if s.return_best:
                history.append(best_cost)
            else:
                history.append(self._set_mean(x0, mean))
        self._kept = kept
        if s.return_best:
            history[-1] = self._set_mean(x0, best_U)
        return self._finish(history, best_last, s.iterations, start, timing, t0_s)

    def _on_shift(self, shift: int) -> None:
        if self._kept is not None and shift:
            self._kept = shift_held(self._kept.transpose(0, 1), shift).transpose(0, 1)


# ---- random shooting ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RandomShootingSettings:
    """Random shooting: sample ``num_samples`` sequences around the (warm) mean, keep the best.

    Attributes: as :class:`CEMSettings` (``iterations`` fixed to 1).
    """

    num_samples: int = 512
    horizon_steps: int = 30
    noise_sigma_nm: float | tuple[float, ...] = 1.0
    noise_smoothing: float = 0.0
    warm_start: bool = True
    seed: int = 0
    dtype: str = "float32"
    iterations: int = 1

    def __post_init__(self) -> None:
        _check_common(self)
        if self.iterations != 1:
            raise ValueError("random shooting runs exactly one iteration")


class RandomShooting(SamplingPlanner):
    """Random-shooting baseline; ``optimize(x0, t0_s) -> policy``."""

    def __init__(self, model, cost, settings: RandomShootingSettings | None = None, u_lower=None, u_upper=None,
                 device="cpu") -> None:
        super().__init__(model, cost, settings or RandomShootingSettings(), u_lower, u_upper, device)

    def optimize(self, x0, t0_s: float | None = None) -> LinearFeedbackPolicy:
        start = time.perf_counter()
        timing = {"rollout": 0.0, "cost": 0.0}
        x0t, _ = self._begin_plan(x0, t0_s)
        E = self._draw_noise(self.sigma)
        E[0] = 0.0  # keep the current mean as a candidate
        costs = self._rollout_costs(x0t, torch.add(self.mean, E, out=self._samples), timing)
        i = int(torch.argmin(costs))
        best = float(costs[i])
        cost = self._set_mean(np.asarray(x0, dtype=float), self._applied[i])
        return self._finish([cost], best, 1, start, timing, t0_s)
