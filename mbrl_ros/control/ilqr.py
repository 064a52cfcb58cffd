"""iLQR / box-DDP planner (Tassa, Mansard & Todorov 2014) over any dynamics-protocol model.

Each iteration linearises the model along the nominal ``(X̂, Û)`` (``model.linearize``, batched over
time), expands the cost (``cost.quadratize``), and runs a backward pass

    Q_t = l_t + V_{t+1}∘f  (Gauss–Newton: no second derivatives of the dynamics),
    k_t = argmin_{lower <= û_t + k <= upper} 0.5 k^T (Quu + μ I) k + Qu^T k   (projected Newton),
    K_t = -(Quu + μ I)_ff^{-1} Qux_f on the free (unclamped) action rows, 0 on the clamped ones,

followed by a forward rollout of ``u = clip(û + α k + K (x - x̂))`` with a backtracking line search on
``α``, accepted when the actual cost reduction is at least ``min_reduction_ratio`` times the
predicted one. ``μ`` (Levenberg–Marquardt on ``Quu``) adapts as in Tassa et al. 2012: it shrinks
after a successful iteration and grows when the backward pass fails (``Quu`` not positive definite)
or the line search finds no improvement. Without bounds the backward pass is the exact Riccati
recursion (:func:`mbrl_ros.control.lqr.lqr_backward`), so a linear-quadratic problem is solved in
one iteration.

``optimize(x0, t0_s)`` warm-starts from the previous solution shifted by the elapsed number of steps
(rolled out from ``x0`` with its feedback gains) and returns a
:class:`~mbrl_ros.control.policy.LinearFeedbackPolicy`; the full typed result is kept in
``planner.last_result``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from .lqr import NotPositiveDefiniteError, q_function, value_function
from .policy import LinearFeedbackPolicy, PlanningFailed, closed_loop_rollout, elapsed_steps, shift_held


@dataclass(frozen=True)
class ILQRSettings:
    """iLQR settings.

    Attributes:
        horizon_steps: ``T`` (model steps of ``dt_s``).
        max_iterations: iteration cap per ``optimize``.
        tolerance_rel_cost: stop (converged) when an accepted step reduces the cost by less than this
            fraction, or when the line search fails at ``μ <= reg_min`` and the predicted reduction is
            below this fraction (nothing left to gain that the model can see).
        tolerance_grad: stop when ``max_t max_i |k_ti| / (|û_ti| + 1)`` falls below this.
        reg_init, reg_min, reg_max: initial/min/max Levenberg–Marquardt ``μ`` on ``Quu``.
        reg_factor: multiplicative ``μ`` adaptation factor (> 1).
        line_search_steps: number of backtracking steps; ``α`` = 1, 0.5, 0.25, ...
        line_search_decay: ``α`` multiplier per backtracking step (0 < · < 1).
        min_reduction_ratio: accept a step when actual/predicted reduction exceeds this.
        warm_start: reuse the shifted previous solution as the initial guess.
        reuse_model_jacobians: linearise the model on the first iteration only; later iterations
            re-expand the cost at the new nominal but keep those Jacobians (a chord step: one
            model linearisation per solve, the line search on the exact model keeps every
            accepted step a descent).
    """

    horizon_steps: int = 30
    max_iterations: int = 30
    tolerance_rel_cost: float = 1e-4
    tolerance_grad: float = 1e-4
    reg_init: float = 0.0
    reg_min: float = 1e-6
    reg_max: float = 1e10
    reg_factor: float = 1.6
    line_search_steps: int = 10
    line_search_decay: float = 0.5
    min_reduction_ratio: float = 0.0
    warm_start: bool = True
    reuse_model_jacobians: bool = False

    def __post_init__(self) -> None:
        if int(self.horizon_steps) != self.horizon_steps or self.horizon_steps < 1:
            raise ValueError(f"horizon_steps must be an integer >= 1, got {self.horizon_steps}")
        if int(self.max_iterations) != self.max_iterations or self.max_iterations < 1:
            raise ValueError(f"max_iterations must be an integer >= 1, got {self.max_iterations}")
        if int(self.line_search_steps) != self.line_search_steps or self.line_search_steps < 1:
            raise ValueError(f"line_search_steps must be an integer >= 1, got {self.line_search_steps}")
        for name in ("tolerance_rel_cost", "tolerance_grad", "reg_init"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0.0):
                raise ValueError(f"{name} must be finite and >= 0, got {v}")
        if not (0.0 < self.reg_min <= self.reg_max and np.isfinite(self.reg_max)):
            raise ValueError(f"need 0 < reg_min <= reg_max < inf, got {self.reg_min}, {self.reg_max}")
        if not self.reg_factor > 1.0:
            raise ValueError(f"reg_factor must be > 1, got {self.reg_factor}")
        if not 0.0 < self.line_search_decay < 1.0:
            raise ValueError(f"line_search_decay must be in (0, 1), got {self.line_search_decay}")
        if not (np.isfinite(self.min_reduction_ratio) and 0.0 <= self.min_reduction_ratio < 1.0):
            raise ValueError(f"min_reduction_ratio must be in [0, 1), got {self.min_reduction_ratio}")


@dataclass
class ILQRResult:
    """Typed result of one ``optimize`` call.

    Attributes:
        X: nominal states ``(T+1, nx)``; U: nominal actions ``(T, nu)``.
        K: feedback gains ``(T, nu, nx)``; k: last backward pass's feed-forward step ``(T, nu)``
            (≈ 0 at convergence; the nominal ``U`` already contains the accepted steps).
        Quu: regularised ``Quu`` of the last backward pass ``(T, nu, nu)``.
        cost: final total cost; cost_history: total cost after every accepted iteration (index 0 =
            initial guess).
        iterations: iterations run; converged: a tolerance was met; reg_mu: final ``μ``.
        solve_time_s: wall time of ``optimize``; time_linearize_s, time_backward_s, time_forward_s:
            its breakdown.
        status: short reason for stopping.
    """

    X: np.ndarray
    U: np.ndarray
    K: np.ndarray
    k: np.ndarray
    Quu: np.ndarray
    cost: float
    cost_history: list[float] = field(default_factory=list)
    iterations: int = 0
    converged: bool = False
    reg_mu: float = 0.0
    solve_time_s: float = 0.0
    time_linearize_s: float = 0.0
    time_backward_s: float = 0.0
    time_forward_s: float = 0.0
    status: str = ""


def box_qp(H: np.ndarray, g: np.ndarray, lower: np.ndarray, upper: np.ndarray, x0: np.ndarray | None = None,
           max_iterations: int = 100) -> tuple[np.ndarray, np.ndarray, tuple | None]:
    """Minimise ``0.5 x^T H x + g^T x`` subject to ``lower <= x <= upper`` (projected Newton).

    Returns ``(x, free, factor)``: the minimiser, the boolean mask of free (unclamped) coordinates
    and the Cholesky factor of ``H[free][:, free]`` (``None`` when nothing is free).
    Raises :class:`NotPositiveDefiniteError` (``t = -1``) when a free block of ``H`` is not PD.
    """
    n = g.shape[0]
    x = np.clip(np.zeros(n) if x0 is None else x0, lower, upper)
    free = np.ones(n, dtype=bool)
    factor = None
    factored_free = None
    value = x @ g + 0.5 * x @ H @ x
    for _ in range(max_iterations):
        grad = g + H @ x
        clamped = ((x <= lower) & (grad > 0)) | ((x >= upper) & (grad < 0))
        free = ~clamped
        if not free.any():
            factor = None
            break
        if factored_free is None or np.any(free != factored_free):
            try:
                factor = cho_factor(H[np.ix_(free, free)], lower=True, check_finite=False)
            except np.linalg.LinAlgError:
                raise NotPositiveDefiniteError(-1, "free block of Quu is not positive definite") from None
            factored_free = free.copy()
        if np.linalg.norm(grad[free]) < 1e-10:
            break
        grad_clamped = g + H @ (x * clamped)
        search = np.zeros(n)
        search[free] = -cho_solve(factor, grad_clamped[free], check_finite=False) - x[free]
        sdotg = search @ grad
        if sdotg >= -1e-14:
            break
        step = 1.0
        while True:
            xc = np.clip(x + step * search, lower, upper)
            vc = xc @ g + 0.5 * xc @ H @ xc
            if (vc - value) / (step * sdotg) >= 0.1:
                break
            step *= 0.6
            if step < 1e-20:
                xc, vc = x, value
                break
        improvement = value - vc
        x, value = xc, vc
        if improvement < 1e-12 * (1.0 + abs(value)):
            break
    # Final free set and its factor, consistent with the returned x.
    grad = g + H @ x
    clamped = ((x <= lower) & (grad > 0)) | ((x >= upper) & (grad < 0))
    free = ~clamped
    if free.any():
        if factored_free is None or np.any(free != factored_free):
            try:
                factor = cho_factor(H[np.ix_(free, free)], lower=True, check_finite=False)
            except np.linalg.LinAlgError:
                raise NotPositiveDefiniteError(-1, "free block of Quu is not positive definite") from None
    else:
        factor = None
    return x, free, factor


class ILQR:
    """Box-constrained iLQR planner.

    Args:
        model: a dynamics-protocol model (``step``, ``linearize``).
        cost: an object with ``evaluate(X, U)`` and ``quadratize(X, U)`` (see :mod:`.costs`).
        settings: :class:`ILQRSettings`.
        u_lower, u_upper: action box ``(nu,)`` or ``None`` (unconstrained).
    """

    def __init__(self, model, cost, settings: ILQRSettings | None = None, u_lower=None, u_upper=None) -> None:
        self.model = model
        self.cost = cost
        self.settings = settings or ILQRSettings()
        self.nx, self.nu = model.nx, model.nu
        self.dt_s = float(model.dt_s)
        self.u_lower = None if u_lower is None else np.broadcast_to(np.asarray(u_lower, float), (self.nu,)).copy()
        self.u_upper = None if u_upper is None else np.broadcast_to(np.asarray(u_upper, float), (self.nu,)).copy()
        if (self.u_lower is None) != (self.u_upper is None):
            raise ValueError("give both u_lower and u_upper or neither")
        if self.u_lower is not None and np.any(self.u_lower > self.u_upper):
            raise ValueError("u_lower must be <= u_upper")
        T = self.settings.horizon_steps
        # A network steps a batch of states for about the cost of one (a physics model loops over
        # them): then every line-search step is rolled out at once instead of one after another.
        self._batched_search = bool(getattr(model, "batched_step_is_cheap", False))
        self._warm: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # previous (X, U, K)
        self._t_prev: float | None = None
        self.last_result: ILQRResult | None = None
        # Workspaces reused by every iteration.
        self._X = np.zeros((T + 1, self.nx))
        self._K = np.zeros((T, self.nu, self.nx))
        self._k = np.zeros((T, self.nu))
        self._Quu = np.zeros((T, self.nu, self.nu))

    @property
    def bounded(self) -> bool:
        return self.u_lower is not None

    def _clip(self, u: np.ndarray) -> np.ndarray:
        return u if self.u_lower is None else np.clip(u, self.u_lower, self.u_upper)

    def _initial_guess(self, x0: np.ndarray, t0_s: float | None) -> tuple[np.ndarray, np.ndarray | None]:
        """``(U, X)``: the previous plan shifted by the time elapsed and rolled out from ``x0`` with
        its feedback (``X`` is ``None`` for a cold start).

        Closed loop, the guess is what the arm does if it keeps the plan it is executing; the shifted
        open-loop actions alone, from a state the plan did not foresee (it was computed from a state
        a plan's latency old), can start the solve far off. Measured on the Panda with the URDF model,
        a reach of 10 cm, 2 iterations per plan and plans applied 0.3 s late: open loop diverged to
        67 cm, closed loop holds the goal.
        """
        T = self.settings.horizon_steps
        if not self.settings.warm_start or self._warm is None:
            return self._clip(np.zeros((T, self.nu))), None
        shift = elapsed_steps(t0_s, self._t_prev, self.dt_s)
        if shift >= T:  # the previous plan has run out: nothing of it overlaps this one
            return self._clip(np.zeros((T, self.nu))), None
        shifted = [shift_held(a, shift) for a in self._warm]
        X, U, K = shifted
        self._K[:], self._k[:] = K, 0.0
        Xn, Un = self._forward(x0, X, U, np.zeros(1))
        if not np.all(np.isfinite(Xn[0])):  # the model failed along the kept plan: start afresh
            return self._clip(np.zeros((T, self.nu))), None
        return Un[0], Xn[0]

    def rollout(self, x0: np.ndarray, U: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """States ``(T+1, nx)`` from ``x0`` under the open-loop actions ``U`` ``(T, nu)``."""
        X = np.empty((U.shape[0] + 1, self.nx)) if out is None else out
        X[0] = x0
        for t in range(U.shape[0]):
            X[t + 1] = self.model.step(X[t], U[t])
        return X

    def _backward(self, X, U, mu, A, B, e):
        """Box-DDP backward pass; returns the predicted reduction terms ``(dV1, dV2)``."""
        nx = self.nx
        T = U.shape[0]
        Vx = e.lx[T].copy()
        Vxx = e.lxx[T].copy()
        dV1 = dV2 = 0.0
        eye = np.eye(self.nu)
        K, k, Quu_out = self._K, self._k, self._Quu
        for t in range(T - 1, -1, -1):
            Qx, Qu, Qxx, Quu, Qux = q_function(e.lx[t], e.lu[t], e.lxx[t], e.luu[t], e.lux[t], A[t], B[t], Vx, Vxx)
            QuuF = Quu + mu * eye
            interior = False
            if self.bounded:
                # The unconstrained minimiser solves the box QP whenever it is feasible.
                try:
                    factor = cho_factor(QuuF, lower=True, check_finite=False)
                except np.linalg.LinAlgError:
                    raise NotPositiveDefiniteError(t) from None
                kt = -cho_solve(factor, Qu, check_finite=False)
                ut = U[t] + kt
                interior = bool(np.all(ut > self.u_lower) and np.all(ut < self.u_upper))
                if interior:
                    Kt = -cho_solve(factor, Qux, check_finite=False)
            if self.bounded and not interior:
                try:
                    kt, free, factor = box_qp(QuuF, Qu, self.u_lower - U[t], self.u_upper - U[t], k[t])
                except NotPositiveDefiniteError:
                    raise NotPositiveDefiniteError(t) from None
                Kt = np.zeros((self.nu, nx))
                if factor is not None:
                    Kt[free] = -cho_solve(factor, Qux[free], check_finite=False)
            elif not self.bounded:
                try:
                    factor = cho_factor(QuuF, lower=True, check_finite=False)
                except np.linalg.LinAlgError:
                    raise NotPositiveDefiniteError(t) from None
                kt = -cho_solve(factor, Qu, check_finite=False)
                Kt = -cho_solve(factor, Qux, check_finite=False)
            K[t], k[t], Quu_out[t] = Kt, kt, QuuF
            dV1 += kt @ Qu
            dV2 += 0.5 * kt @ Quu @ kt
            Vx, Vxx = value_function(Qx, Qu, Qxx, Quu, Qux, Kt, kt)
        return dV1, dV2

    def _forward(self, x0, X, U, alphas):
        """Closed-loop rollouts of ``u = clip(û + α k + K (x - x̂))`` for every ``α`` in ``alphas`` at
        once: ``(A, T+1, nx)``, ``(A, T, nu)``."""
        return closed_loop_rollout(self.model, x0, X, U, self._K, self._k, alphas, self.u_lower, self.u_upper)

    def _line_search_candidates(self, x0, X, U, alphas):
        """``(alpha, X, U)`` for each step length in order: the full step alone (a warm-started
        replan mostly accepts it), then the others lazily or, when batches are cheap, all at once."""
        yield (alphas[0], *(a[0] for a in self._forward(x0, X, U, alphas[:1])))
        if self._batched_search:
            yield from zip(alphas[1:], *self._forward(x0, X, U, alphas[1:]))
            return
        for i in range(1, len(alphas)):
            Xn, Un = self._forward(x0, X, U, alphas[i : i + 1])
            yield alphas[i], Xn[0], Un[0]

    def solve(self, x0: np.ndarray, U_init: np.ndarray, X_init: np.ndarray | None = None) -> ILQRResult:
        """Run iLQR from ``x0`` with the initial guess ``U_init`` ``(T, nu)`` (no warm-start bookkeeping);
        ``X_init``: its rollout from ``x0``, when the caller has it."""
        s = self.settings
        start = time.perf_counter()
        t_lin = t_bwd = t_fwd = 0.0
        x0 = np.asarray(x0, dtype=float)
        U = self._clip(np.array(U_init, dtype=float))
        X = self.rollout(x0, U, out=self._X.copy()) if X_init is None else np.array(X_init, dtype=float)
        J = float(self.cost.evaluate(X, U).sum())
        if not np.isfinite(J):
            raise PlanningFailed("iLQR: the initial rollout is not finite")
        history = [J]
        mu = s.reg_init
        dmu = 1.0
        alphas = s.line_search_decay ** np.arange(s.line_search_steps)
        converged = False
        status = "max_iterations"
        iterations = 0
        self._k[:] = 0.0
        have_gains = False
        accepted = False
        for it in range(s.max_iterations):
            iterations = it + 1
            if it == 0 or accepted:  # the nominal changed: re-expand (a rejected step keeps it)
                tl = time.perf_counter()
                if it == 0 or not s.reuse_model_jacobians:
                    A, B = self.model.linearize(X[:-1], U)
                expansion = self.cost.quadratize(X, U)
                t_lin += time.perf_counter() - tl
                if not (np.all(np.isfinite(A)) and np.all(np.isfinite(B))):
                    raise PlanningFailed("iLQR: the model's linearisation is not finite")
                if not all(np.all(np.isfinite(a)) for a in (expansion.lx, expansion.lu, expansion.lxx, expansion.luu)):
                    raise PlanningFailed("iLQR: the cost expansion is not finite")
            # Backward pass, increasing mu until Quu is positive definite.
            while True:
                tb = time.perf_counter()
                try:
                    dV1, dV2 = self._backward(X, U, mu, A, B, expansion)
                    have_gains = True
                    t_bwd += time.perf_counter() - tb
                    break
                except NotPositiveDefiniteError:
                    t_bwd += time.perf_counter() - tb
                    dmu = max(dmu * s.reg_factor, s.reg_factor)
                    mu = max(s.reg_min, mu * dmu)
                    if mu > s.reg_max:
                        status = "regularisation exceeded reg_max"
                        break
            if status.startswith("regularisation"):
                break
            grad_norm = float(np.max(np.abs(self._k) / (np.abs(U) + 1.0)))
            if grad_norm < s.tolerance_grad and mu < 1e-5:
                converged, status = True, "gradient tolerance"
                break
            tf = time.perf_counter()
            accepted = False
            for alpha, Xn, Un in self._line_search_candidates(x0, X, U, alphas):
                Jn = float(self.cost.evaluate(Xn, Un).sum())
                expected = -(alpha * dV1 + alpha**2 * dV2)
                actual = J - Jn
                ratio = actual / expected if expected > 0 else np.sign(actual)
                if np.isfinite(Jn) and ratio > s.min_reduction_ratio and actual > 0:
                    accepted = True
                    break
            t_fwd += time.perf_counter() - tf
            if accepted:
                dmu = min(dmu / s.reg_factor, 1.0 / s.reg_factor)
                mu = mu * dmu if mu * dmu > s.reg_min else 0.0
                X, U = Xn.copy(), Un.copy()
                rel = (J - Jn) / max(abs(J), 1e-12)
                J = Jn
                history.append(J)
                if rel < s.tolerance_rel_cost:
                    converged, status = True, "relative cost tolerance"
                    break
            else:
                # Only an unregularised prediction says the optimum is reached: every rejection raises
                # mu, which shrinks the predicted reduction (~|Qu|^2 / mu) without the solve getting
                # any closer, so testing it at large mu would call a stall converged.
                if mu <= s.reg_min and -(dV1 + dV2) < s.tolerance_rel_cost * max(abs(J), 1e-12):
                    converged, status = True, "predicted reduction below tolerance"
                    break
                dmu = max(dmu * s.reg_factor, s.reg_factor)
                mu = max(s.reg_min, mu * dmu)
                if mu > s.reg_max:
                    # Not converged: at this mu the step (and so grad_norm) is ~Qu / mu, small whatever
                    # the true gradient.
                    status = "no improvement (reg_max)"
                    break
        if not have_gains:
            self._K[:] = 0.0
            self._Quu[:] = np.nan
        if not (np.all(np.isfinite(X)) and np.all(np.isfinite(U)) and np.all(np.isfinite(self._K))):
            raise PlanningFailed("iLQR: the plan is not finite")
        return ILQRResult(
            X=X.copy(), U=U.copy(), K=self._K.copy(), k=self._k.copy(), Quu=self._Quu.copy(), cost=J,
            cost_history=history, iterations=iterations, converged=converged, reg_mu=mu,
            solve_time_s=time.perf_counter() - start, time_linearize_s=t_lin, time_backward_s=t_bwd,
            time_forward_s=t_fwd, status=status,
        )

    def optimize(self, x0: np.ndarray, t0_s: float | None = None) -> LinearFeedbackPolicy:
        """Plan from ``x0`` at time ``t0_s`` (warm-started by shifting) and return the feedback policy."""
        x0 = np.asarray(x0, dtype=float)
        U0, X0 = self._initial_guess(x0, t0_s)
        result = self.solve(x0, U0, X0)
        self.last_result = result
        self._warm = (result.X, result.U, result.K)
        self._t_prev = t0_s
        return LinearFeedbackPolicy(
            result.X, result.U, result.K, None, t0_s=0.0 if t0_s is None else t0_s, dt_s=self.dt_s,
            u_lower=self.u_lower, u_upper=self.u_upper,
        )
