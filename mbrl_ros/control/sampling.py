"""Shared machinery of the sampling planners (MPPI, CEM/iCEM, random shooting) in torch.

Every sampling planner perturbs a mean action sequence ``Û`` ``(T, nu)`` with ``K`` noise sequences,
clamps the samples to the torque box, rolls them out through any dynamics-protocol model
(``model.step_torch`` on a ``(K, nx)`` batch per step, after ``begin_rollout(model, K, generator)`` so
that ensembles can assign a member per sample), and scores them with ``cost.evaluate_torch`` on the
whole ``(K, T+1, nx)`` trajectory at once. The buffers for noise, samples and states are allocated
once per planner. Noise can be time-correlated: ``noise_smoothing = a`` draws
``e_t = a e_{t-1} + sqrt(1 - a^2) w_t`` (AR(1), same marginal variance; ``a = 0`` is white noise).

The planners return a :class:`~mbrl_ros.control.policy.LinearFeedbackPolicy` with ``K = 0`` (open
loop around the rolled-out mean) and keep a :class:`SamplingResult` in ``planner.last_result``.
Warm start: the previous mean is shifted by the elapsed number of steps (last action repeated).
A model with a ``prepare_plan(x0, U_nominal, dtype)`` method (e.g.
:class:`~mbrl_ros.control.linearized.LinearizedRolloutModel`) is given the shifted mean and the
planner's torch dtype before the samples are drawn.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from mbrl_ros.dynamics.base import begin_rollout

from .policy import LinearFeedbackPolicy

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
        X: rollout of the returned mean ``(T+1, nx)``; U: the returned actions ``(T, nu)``.
        cost: total cost of ``(X, U)``; cost_history: that cost after each iteration.
        best_sample_cost: lowest sampled cost of the last iteration.
        iterations: iterations run; num_samples: samples per iteration.
        solve_time_s: wall time; time_rollout_s / time_cost_s: its main parts.
    """

    X: np.ndarray
    U: np.ndarray
    cost: float
    cost_history: list[float] = field(default_factory=list)
    best_sample_cost: float = float("nan")
    iterations: int = 0
    num_samples: int = 0
    solve_time_s: float = 0.0
    time_rollout_s: float = 0.0
    time_cost_s: float = 0.0


def rollout_torch(model, x0: torch.Tensor, U: torch.Tensor, out: torch.Tensor, generator=None) -> torch.Tensor:
    """Roll ``U`` ``(K, T, nu)`` out from ``x0`` ``(nx,)`` into ``out`` ``(K, T+1, nx)`` (returned)."""
    K, T, _ = U.shape
    begin_rollout(model, K, generator)
    out[:, 0] = x0
    for t in range(T):
        out[:, t + 1] = model.step_torch(out[:, t], U[:, t])
    return out


class SamplingPlanner:
    """Base class: buffers, noise, rollouts, warm start and the policy (not used directly).

    Args:
        model: dynamics-protocol model (``step_torch``; optionally ``begin_rollout``).
        cost: object with ``evaluate_torch(X, U) -> (K,)`` (and ``evaluate`` for numpy use).
        settings: the planner's frozen settings (``num_samples``, ``horizon_steps``, ...).
        u_lower, u_upper: torque box ``(nu,)`` (samples are clamped) or ``None``.
    """

    def __init__(self, model, cost, settings, u_lower=None, u_upper=None, device: str | torch.device = "cpu") -> None:
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
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(settings.seed))
        self.mean = torch.zeros(T, nu, dtype=self.dtype, device=self.device)
        if self.u_lower is not None:
            self.mean.clamp_(self.u_lower, self.u_upper)
        self._noise = torch.empty(K, T, nu, dtype=self.dtype, device=self.device)
        self._samples = torch.empty(K, T, nu, dtype=self.dtype, device=self.device)
        self._X = torch.empty(K, T + 1, self.nx, dtype=self.dtype, device=self.device)
        self._X1 = torch.empty(1, T + 1, self.nx, dtype=self.dtype, device=self.device)
        self._t_prev: float | None = None
        self._has_plan = False
        self.last_result: SamplingResult | None = None

    # ---- shared pieces ---------------------------------------------------------------------------
    def optimize(self, x0, t0_s: float | None = None) -> LinearFeedbackPolicy:
        """Plan from ``x0`` at time ``t0_s`` and return the policy; details in ``self.last_result``."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget the warm start (mean back to zero torque)."""
        self.mean.zero_()
        if self.u_lower is not None:
            self.mean.clamp_(self.u_lower, self.u_upper)
        self._t_prev = None
        self._has_plan = False

    def _shift(self, t0_s: float | None) -> None:
        if not self._has_plan or not self.settings.warm_start:
            if not self.settings.warm_start:
                self.reset()
            return
        T = self.settings.horizon_steps
        shift = 1
        if t0_s is not None and self._t_prev is not None:
            shift = int(round((t0_s - self._t_prev) / self.dt_s))
        shift = max(0, min(shift, T))
        if shift:
            self.mean[: T - shift] = self.mean[shift:].clone()
            self.mean[T - shift:] = self.mean[T - shift - 1] if shift < T else self.mean[-1]
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

    def _rollout_costs(self, x0: torch.Tensor, U: torch.Tensor, X: torch.Tensor, timing: dict) -> torch.Tensor:
        t = time.perf_counter()
        rollout_torch(self.model, x0, U, X, self.generator)
        timing["rollout"] += time.perf_counter() - t
        t = time.perf_counter()
        costs = self.cost.evaluate_torch(X, U)
        timing["cost"] += time.perf_counter() - t
        return torch.nan_to_num(costs, nan=float("inf"))

    def _mean_cost(self, x0: torch.Tensor, U: torch.Tensor, timing: dict) -> float:
        return float(self._rollout_costs(x0, U[None], self._X1, timing)[0])

    def _finish(self, x0, U_ret: torch.Tensor, history, best, iterations, start, timing, t0_s) -> LinearFeedbackPolicy:
        if not history:
            history.append(self._mean_cost(x0, U_ret, timing))
        else:
            self._mean_cost(x0, U_ret, timing)  # fills _X1 with the returned sequence's rollout
        X = self._X1[0].detach().cpu().numpy().astype(float)
        U = U_ret.detach().cpu().numpy().astype(float)
        self.last_result = SamplingResult(
            X=X, U=U, cost=history[-1], cost_history=history, best_sample_cost=best, iterations=iterations,
            num_samples=self.settings.num_samples, solve_time_s=time.perf_counter() - start,
            time_rollout_s=timing["rollout"], time_cost_s=timing["cost"],
        )
        self._t_prev = t0_s
        self._has_plan = True
        return LinearFeedbackPolicy(X, U, None, None, t0_s=0.0 if t0_s is None else t0_s, dt_s=self.dt_s,
                                    u_lower=self.u_lower_np, u_upper=self.u_upper_np)

    def _begin_plan(self, x0, t0_s: float | None) -> torch.Tensor:
        """Validate ``x0``, shift the warm start, and let the model prepare (``prepare_plan`` hook)."""
        x0t = self._x0(x0)
        self._shift(t0_s)
        prepare = getattr(self.model, "prepare_plan", None)
        if prepare is not None:
            prepare(np.asarray(x0, dtype=float), self.mean.detach().cpu().double().numpy(), dtype=self.dtype)
        return x0t

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
        x0t = self._begin_plan(x0, t0_s)
        sigma = self.sigma.expand(s.horizon_steps, self.nu).clone()
        mean = self.mean
        best_U = mean.clone()
        best_cost = self._mean_cost(x0t, best_U, timing)
        history = []
        best_last = float("nan")
        kept = self._kept if (self._kept is not None and s.warm_start) else None
        for _ in range(s.iterations):
            E = self._draw_noise(sigma)
            U = self._clamp(torch.add(mean, E, out=self._samples))
            if kept is not None and kept.shape[0] > 0:
                U[: kept.shape[0]] = kept
            costs = self._rollout_costs(x0t, U, self._X, timing)
            order = torch.argsort(costs)[: s.num_elites]
            elites = U[order]
            best_last = float(costs[order[0]])
            if best_last < best_cost:
                best_cost, best_U = best_last, elites[0].clone()
            a = s.momentum
            mean.mul_(a).add_(elites.mean(0), alpha=1 - a)
            sigma = a * sigma + (1 - a) * elites.std(0, unbiased=False).clamp_min(s.min_sigma_nm)
            kept = elites[: self._n_keep].clone()
            history.append(best_cost if s.return_best else self._mean_cost(x0t, mean, timing))
        self._kept = kept
        U_ret = best_U if s.return_best else mean.clone()
        if s.return_best:
            mean.copy_(best_U)
        return self._finish(x0t, U_ret, history, best_last, s.iterations, start, timing, t0_s)

    def _on_shift(self, shift: int) -> None:
        if self._kept is not None and shift:
            T = self.settings.horizon_steps
            kept = self._kept.clone()
            kept[:, : T - shift] = self._kept[:, shift:]
            kept[:, T - shift:] = self._kept[:, -1:]
            self._kept = kept


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
        x0t = self._begin_plan(x0, t0_s)
        E = self._draw_noise(self.sigma)
        E[0] = 0.0  # keep the current mean as a candidate
        U = self._clamp(torch.add(self.mean, E, out=self._samples))
        costs = self._rollout_costs(x0t, U, self._X, timing)
        i = int(torch.argmin(costs))
        self.mean.copy_(U[i])
        best = float(costs[i])
        return self._finish(x0t, self.mean.clone(), [best], best, 1, start, timing, t0_s)
