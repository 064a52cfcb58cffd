"""LQR with fitted linear models (LQR-FLM): the KL-constrained linear-Gaussian controller update.

Given the previous controller ``p̄(u|x)``, time-varying linear-Gaussian dynamics fitted to its
trials (:class:`~mbrl_ros.dynamics.tvlg.TVLGDynamics`) and a quadratic expansion of the cost along
those trials, the update solves

    min_p E_p[Σ_t cost(x_t, u_t)]  subject to  KL(p(τ) || p̄(τ)) <= ε

through its Lagrangian: for a dual variable ``η`` the minimiser is the linear-Gaussian LQR solution
of the surrogate cost ``cost / η - log p̄(u|x)`` (its covariance is ``Quu⁻¹`` of that problem), and
``η`` is found by a bracketed geometric search until ``|KL - ε| < 0.1 ε``. The step size
``ε = kl_step × T × step_mult`` adapts from the ratio of predicted to actual cost improvement.

Symbols (``T`` steps, ``z = [x; u]`` of size ``nz = nx + nu``): quadratic cost in absolute
coordinates ``0.5 z^T Cm_t z + z^T cv_t + cc_t`` with ``Cm`` ``(T, nz, nz)``, ``cv`` ``(T, nz)``,
``cc`` ``(T,)`` and a terminal ``0.5 x^T CmT x + x^T cvT + ccT``. Controllers are used in absolute
form ``u = K x + k_abs`` inside the algorithms.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from mbrl_ros.control.lg_policy import LinearGaussianPolicy
from mbrl_ros.control.lqr import NotPositiveDefiniteError, lqr_backward
from mbrl_ros.data.episodes import Episodes
from mbrl_ros.dynamics.tvlg import TVLGDynamics


@dataclass(frozen=True)
class LQRFLMSettings:
    """LQR-FLM settings (GPS defaults).

    Attributes:
        kl_step_nats_per_step: base KL bound per time step; ``ε = kl_step × T × step_mult`` (nats).
        kl_tolerance: stop the dual search when ``|KL - ε| < kl_tolerance × ε``.
        min_eta, max_eta: bracket of the dual variable.
        initial_eta: first η tried when no warm start is given.
        max_dual_iterations: cap on backward/forward passes per update.
        min_step_mult, max_step_mult: bounds on the step multiplier.
        min_mult_change, max_mult_change: bounds on one adaptation's multiplier change.
    """

    kl_step_nats_per_step: float = 0.2
    kl_tolerance: float = 0.1
    min_eta: float = 1e-8
    max_eta: float = 1e16
    initial_eta: float = 1.0
    max_dual_iterations: int = 50
    min_step_mult: float = 0.01
    max_step_mult: float = 10.0
    min_mult_change: float = 0.1
    max_mult_change: float = 5.0

    def __post_init__(self) -> None:
        if not self.kl_step_nats_per_step > 0.0:
            raise ValueError(f"kl_step_nats_per_step must be > 0, got {self.kl_step_nats_per_step}")
        if not 0.0 < self.kl_tolerance < 1.0:
            raise ValueError(f"kl_tolerance must be in (0, 1), got {self.kl_tolerance}")
        if not 0.0 < self.min_eta < self.max_eta:
            raise ValueError(f"need 0 < min_eta < max_eta, got {self.min_eta}, {self.max_eta}")
        if not self.min_eta <= self.initial_eta <= self.max_eta:
            raise ValueError(f"initial_eta must lie in [min_eta, max_eta], got {self.initial_eta}")
        if self.max_dual_iterations < 1:
            raise ValueError(f"max_dual_iterations must be >= 1, got {self.max_dual_iterations}")
        if not 0.0 < self.min_step_mult <= 1.0 <= self.max_step_mult:
            raise ValueError(f"need 0 < min_step_mult <= 1 <= max_step_mult, got {self.min_step_mult}, {self.max_step_mult}")
        if not 0.0 < self.min_mult_change <= 1.0 <= self.max_mult_change:
            raise ValueError(f"need 0 < min_mult_change <= 1 <= max_mult_change, got {self.min_mult_change}, {self.max_mult_change}")


@dataclass
class LocalQuadraticCost:
    """A time-varying quadratic cost in absolute coordinates (see the module docstring)."""

    Cm: np.ndarray
    cv: np.ndarray
    cc: np.ndarray
    CmT: np.ndarray
    cvT: np.ndarray
    ccT: float

    def __post_init__(self) -> None:
        T, nz, _ = self.Cm.shape
        nx = self.CmT.shape[0]
        if self.cv.shape != (T, nz) or self.cc.shape != (T,) or self.CmT.shape != (nx, nx) or self.cvT.shape != (nx,):
            raise ValueError(
                f"inconsistent cost shapes: Cm {self.Cm.shape}, cv {self.cv.shape}, cc {self.cc.shape}, "
                f"CmT {self.CmT.shape}, cvT {self.cvT.shape}"
            )

    def evaluate(self, X: np.ndarray, U: np.ndarray) -> float:
        """Total cost of one trajectory ``X`` ``(T+1, nx)``, ``U`` ``(T, nu)``."""
        Z = np.concatenate([X[:-1], U], axis=1)
        run = 0.5 * np.einsum("ti,tij,tj->", Z, self.Cm, Z) + np.einsum("ti,ti->", Z, self.cv) + self.cc.sum()
        xT = X[-1]
        return float(run + 0.5 * xT @ self.CmT @ xT + xT @ self.cvT + self.ccT)


def quadratic_cost_from_trials(cost, episodes: Episodes) -> tuple[LocalQuadraticCost, np.ndarray]:
    """Expand ``cost`` along each trial and average the expansions in absolute coordinates.

    ``cost`` has ``evaluate(X, U) -> (T+1,)`` and ``quadratize(X, U)`` returning an object with
    ``l (T+1,)``, ``lx (T+1, nx)``, ``lu (T, nu)``, ``lxx (T+1, nx, nx)``, ``luu (T, nu, nu)``,
    ``lux (T, nu, nx)`` (the control core's ``CostExpansion``). Returns the averaged
    :class:`LocalQuadraticCost` and the per-trial total costs ``(N,)``.
    """
    N, T, nu = episodes.u.shape
    nx = episodes.nx
    nz = nx + nu
    Cm = np.zeros((T, nz, nz))
    cv = np.zeros((T, nz))
    cc = np.zeros(T)
    CmT = np.zeros((nx, nx))
    cvT = np.zeros(nx)
    ccT = 0.0
    totals = np.zeros(N)
    for n in range(N):
        X, U = episodes.x[n], episodes.u[n]
        e = cost.quadratize(X, U)
        totals[n] = float(np.sum(cost.evaluate(X, U)))
        C = np.zeros((T, nz, nz))
        C[:, :nx, :nx] = e.lxx[:T]
        C[:, nx:, nx:] = e.luu
        C[:, nx:, :nx] = e.lux
        C[:, :nx, nx:] = np.swapaxes(e.lux, 1, 2)
        c = np.concatenate([e.lx[:T], e.lu], axis=1)
        Z = np.concatenate([X[:-1], U], axis=1)
        CZ = np.einsum("tij,tj->ti", C, Z)
        Cm += C
        cv += c - CZ
        cc += e.l[:T] - np.einsum("ti,ti->t", c, Z) + 0.5 * np.einsum("ti,ti->t", Z, CZ)
        xT = X[-1]
        CmT += e.lxx[T]
        cvT += e.lx[T] - e.lxx[T] @ xT
        ccT += float(e.l[T] - e.lx[T] @ xT + 0.5 * xT @ e.lxx[T] @ xT)
    return LocalQuadraticCost(Cm / N, cv / N, cc / N, CmT / N, cvT / N, ccT / N), totals


@dataclass
class StateActionDistribution:
    """Gaussian marginals of the closed loop: ``mu_x`` ``(T+1, nx)``, ``mu_u`` ``(T, nu)``,
    ``sigma`` ``(T, nz, nz)`` over ``[x_t; u_t]`` and ``sigma_xT`` ``(nx, nx)``."""

    mu_x: np.ndarray
    mu_u: np.ndarray
    sigma: np.ndarray
    sigma_xT: np.ndarray


def forward_propagate(policy: LinearGaussianPolicy, dynamics: TVLGDynamics) -> StateActionDistribution:
    """Propagate the state-action Gaussian through the closed loop of ``policy`` and ``dynamics``."""
    T, nu, nx = policy.K.shape
    if dynamics.horizon_steps != T or dynamics.nx != nx or dynamics.nu != nu:
        raise ValueError(f"policy (T, nx, nu) = {(T, nx, nu)} and dynamics {(dynamics.horizon_steps, dynamics.nx, dynamics.nu)} differ")
    K, k = policy.K, policy.k_abs()
    mu_x = np.zeros((T + 1, nx))
    mu_u = np.zeros((T, nu))
    sigma = np.zeros((T, nx + nu, nx + nu))
    mu_x[0] = dynamics.x0_mean
    sxx = dynamics.x0_covar.copy()
    for t in range(T):
        mu_u[t] = K[t] @ mu_x[t] + k[t]
        sxu = sxx @ K[t].T
        sigma[t, :nx, :nx] = sxx
        sigma[t, :nx, nx:] = sxu
        sigma[t, nx:, :nx] = sxu.T
        sigma[t, nx:, nx:] = K[t] @ sxu + policy.covar[t]
        F = dynamics.Fm[t]
        mu_x[t + 1] = F @ np.concatenate([mu_x[t], mu_u[t]]) + dynamics.fv[t]
        sxx = F @ sigma[t] @ F.T + dynamics.dyn_covar[t]
        sxx = 0.5 * (sxx + sxx.T)
    return StateActionDistribution(mu_x, mu_u, sigma, sxx)


def expected_cost(policy: LinearGaussianPolicy, dynamics: TVLGDynamics, cost: LocalQuadraticCost) -> float:
    """``E[Σ_t cost]`` under the closed-loop Gaussian (exact for a quadratic cost)."""
    d = forward_propagate(policy, dynamics)
    mu = np.concatenate([d.mu_x[:-1], d.mu_u], axis=1)
    run = (
        0.5 * np.einsum("ti,tij,tj->", mu, cost.Cm, mu)
        + 0.5 * np.einsum("tij,tji->", cost.Cm, d.sigma)
        + np.einsum("ti,ti->", mu, cost.cv)
        + cost.cc.sum()
    )
    xT = d.mu_x[-1]
    term = 0.5 * xT @ cost.CmT @ xT + 0.5 * np.trace(cost.CmT @ d.sigma_xT) + xT @ cost.cvT + cost.ccT
    return float(run + term)


def _kl_quadratic_terms(policy: LinearGaussianPolicy):
    """``-log p(u|x)`` as ``0.5 z^T M z + z^T v + c`` (without the normaliser), per step."""
    K, k, P = policy.K, policy.k_abs(), policy.inv_covar
    PK = P @ K
    M = np.concatenate(
        [np.concatenate([np.swapaxes(K, 1, 2) @ PK, -np.swapaxes(PK, 1, 2)], axis=2), np.concatenate([-PK, P], axis=2)],
        axis=1,
    )
    Pk = np.einsum("tij,tj->ti", P, k)
    v = np.concatenate([np.einsum("tji,tj->ti", K, Pk), -Pk], axis=1)
    c = 0.5 * np.einsum("ti,ti->t", k, Pk)
    return M, v, c


def trajectory_kl(new: LinearGaussianPolicy, prev: LinearGaussianPolicy, dynamics: TVLGDynamics,
                  distribution: StateActionDistribution | None = None) -> np.ndarray:
    """Per-step ``KL(p_new(u|x) || p_prev(u|x))`` averaged over the new closed-loop state distribution.

    Under shared dynamics this sums to the KL between the two trajectory distributions. Shape ``(T,)``.
    """
    d = distribution or forward_propagate(new, dynamics)
    mu = np.concatenate([d.mu_x[:-1], d.mu_u], axis=1)
    M, v, c = _kl_quadratic_terms(prev)
    e_prev = 0.5 * np.einsum("ti,tij,tj->t", mu, M, mu) + 0.5 * np.einsum("tij,tji->t", M, d.sigma) + np.einsum("ti,ti->t", mu, v) + c
    logdet_new = 2.0 * np.sum(np.log(np.diagonal(new.chol, axis1=1, axis2=2)), axis=1)
    logdet_prev = 2.0 * np.sum(np.log(np.diagonal(prev.chol, axis1=1, axis2=2)), axis=1)
    kl = e_prev - 0.5 * new.nu + 0.5 * (logdet_prev - logdet_new)
    return np.maximum(kl, 0.0)


def _backward_eta(prev: LinearGaussianPolicy, dynamics: TVLGDynamics, cost: LocalQuadraticCost, eta: float) -> LinearGaussianPolicy:
    """LQR on ``cost / η - log p̄(u|x)``; raises ``NotPositiveDefiniteError`` if ``Quu`` is indefinite."""
    M, v, _ = _kl_quadratic_terms(prev)
    C = cost.Cm / eta + M
    c = cost.cv / eta + v
    sol = lqr_backward(dynamics.Fm, dynamics.fv, C, c, cost.CmT / eta, cost.cvT / eta)
    covar = np.linalg.inv(sol.Quu)
    return LinearGaussianPolicy.from_absolute(sol.K, sol.k, covar)


def unconstrained_lqr_policy(dynamics: TVLGDynamics, cost: LocalQuadraticCost) -> tuple[np.ndarray, np.ndarray]:
    """Gains ``(K, k_abs)`` of the plain LQR solution of ``cost`` under ``dynamics`` (the ε → ∞ limit)."""
    sol = lqr_backward(dynamics.Fm, dynamics.fv, cost.Cm, cost.cv, cost.CmT, cost.cvT)
    return sol.K, sol.k


@dataclass
class LQRFLMResult:
    """Outcome of one KL-constrained update.

    Attributes:
        policy: the new controller, expressed about its predicted mean trajectory.
        eta: final dual variable.
        kl_nats: trajectory KL of the new controller from the previous one (nats).
        epsilon_nats: the KL bound it aimed at.
        converged: ``|KL - ε| < tolerance ε``, or the bound was inactive (KL < ε at ``min_eta``).
        dual_iterations: backward/forward passes used.
        predicted_cost: expected cost of the new controller under the fitted model.
        solve_time_s: wall time of the update.
    """

    policy: LinearGaussianPolicy
    eta: float
    kl_nats: float
    epsilon_nats: float
    converged: bool
    dual_iterations: int
    predicted_cost: float
    solve_time_s: float
    eta_history: list = field(default_factory=list)


def lqr_flm_update(
    prev: LinearGaussianPolicy,
    dynamics: TVLGDynamics,
    cost: LocalQuadraticCost,
    step_mult: float = 1.0,
    eta: float | None = None,
    settings: LQRFLMSettings | None = None,
) -> LQRFLMResult:
    """One KL-constrained controller update (dual gradient descent on η by bracketed search)."""
    s = settings or LQRFLMSettings()
    start = time.perf_counter()
    T = prev.horizon_steps
    epsilon = s.kl_step_nats_per_step * T * step_mult
    eta = s.initial_eta if eta is None else float(np.clip(eta, s.min_eta, s.max_eta))
    lo, hi = s.min_eta, s.max_eta
    history = []
    best = None  # the last evaluated candidate
    feasible = None  # the last candidate whose KL is within the bound (+ tolerance)
    converged = False
    it = 0
    for it in range(1, s.max_dual_iterations + 1):
        try:
            new = _backward_eta(prev, dynamics, cost, eta)
        except (NotPositiveDefiniteError, np.linalg.LinAlgError, ValueError):
            # η too small for the surrogate to be convex: raise it and the bracket's floor.
            lo = eta
            history.append((lo, float("nan")))
            if lo >= hi:
                break
            eta = min(10.0 * lo, np.sqrt(lo * hi))
            continue
        dist = forward_propagate(new, dynamics)
        kl = float(np.sum(trajectory_kl(new, prev, dynamics, dist)))
        history.append((eta, kl))
        best = (new, eta, kl, dist)
        if kl < (1.0 + s.kl_tolerance) * epsilon:
            feasible = best
        con = kl - epsilon
        if abs(con) < s.kl_tolerance * epsilon:
            converged = True
            break
        if con < 0.0:  # KL too small: η too large
            hi = eta
            if eta <= s.min_eta * 1.000001:
                converged = True  # the constraint is inactive
                break
            eta = max(np.sqrt(lo * hi), 0.1 * hi)
        else:  # KL too large: η too small
            lo = eta
            eta = min(np.sqrt(lo * hi), 10.0 * lo)
    if best is None:
        raise NotPositiveDefiniteError(-1, "LQR-FLM found no η with a positive definite Quu")
    if not converged and feasible is not None:
        # Out of iterations: prefer a step within the bound; with none found, ``best`` (the last
        # candidate) is returned even though its KL exceeds the bound.
        best = feasible
    new, eta, kl, dist = best
    policy = LinearGaussianPolicy(new.K, np.zeros_like(new.k), dist.mu_x[:-1], dist.mu_u, new.covar)
    return LQRFLMResult(
        policy=policy,
        eta=float(eta),
        kl_nats=kl,
        epsilon_nats=float(epsilon),
        converged=converged,
        dual_iterations=it,
        predicted_cost=expected_cost(policy, dynamics, cost),
        solve_time_s=time.perf_counter() - start,
        eta_history=history,
    )


def adapt_step_mult(
    step_mult: float,
    prev_policy: LinearGaussianPolicy,
    prev_dynamics: TVLGDynamics,
    prev_cost: LocalQuadraticCost,
    cur_policy: LinearGaussianPolicy,
    cur_dynamics: TVLGDynamics,
    cur_cost: LocalQuadraticCost,
    settings: LQRFLMSettings | None = None,
) -> tuple[float, dict]:
    """New step multiplier from predicted vs actual improvement of the last update.

    ``predicted = J(prev | prev model) - J(cur | prev model)``, ``actual = J(prev | prev model) -
    J(cur | cur model)``; the multiplier changes by ``predicted / (2 max(1e-4, predicted - actual))``
    clipped to ``[min_mult_change, max_mult_change]``, the result to ``[min_step_mult, max_step_mult]``.
    """
    s = settings or LQRFLMSettings()
    previous = expected_cost(prev_policy, prev_dynamics, prev_cost)
    predicted_new = expected_cost(cur_policy, prev_dynamics, prev_cost)
    actual_new = expected_cost(cur_policy, cur_dynamics, cur_cost)
    predicted = previous - predicted_new
    actual = previous - actual_new
    change = predicted / (2.0 * max(1e-4, predicted - actual))
    change = float(np.clip(change, s.min_mult_change, s.max_mult_change))
    new_mult = float(np.clip(change * step_mult, s.min_step_mult, s.max_step_mult))
    return new_mult, {"predicted_improvement": predicted, "actual_improvement": actual, "change": change}
