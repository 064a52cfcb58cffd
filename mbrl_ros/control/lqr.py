"""Time-varying LQR backward pass (the Riccati recursion) for affine dynamics and quadratic costs.

Symbols, with ``T`` steps, state dimension ``nx`` and action dimension ``nu``:

* dynamics ``x_{t+1} = F_t [x_t; u_t] + f_t`` with ``F`` ``(T, nx, nx + nu)`` and ``f`` ``(T, nx)``;
* running cost ``0.5 [x;u]^T C_t [x;u] + [x;u]^T c_t`` with ``C`` ``(T, nx + nu, nx + nu)``, ``c``
  ``(T, nx + nu)``; terminal cost ``0.5 x^T CT x + x^T cT``;
* the optimal policy ``u_t = K_t x_t + k_t`` in the same coordinates as ``F, f, C, c`` (for iLQR these
  are deviations from a nominal trajectory), and the quadratic value function
  ``V_t(x) = 0.5 x^T Vxx_t x + x^T vx_t + const``.

``reg_mu`` is a Levenberg–Marquardt term added to ``Quu`` before it is factorised; the value
recursion uses the regularised gains with the unregularised ``Quu`` (Tassa, Erez & Todorov 2012), so
``reg_mu = 0`` is the exact Riccati recursion. The returned ``Quu`` is the regularised matrix that was
factorised (the linear-Gaussian controller uses its inverse as covariance).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import cho_factor, cho_solve


@dataclass
class LQRSolution:
    """Result of :func:`lqr_backward`.

    Attributes:
        K: feedback gains ``(T, nu, nx)``.
        k: feed-forward terms ``(T, nu)``.
        Quu: action Hessians of the Q-function ``(T, nu, nu)`` (regularised, positive definite).
        Vxx: value Hessians ``(T + 1, nx, nx)``; ``Vxx[T]`` is the terminal cost Hessian.
        vx: value gradients ``(T + 1, nx)``.
    """

    K: np.ndarray
    k: np.ndarray
    Quu: np.ndarray
    Vxx: np.ndarray
    vx: np.ndarray


class NotPositiveDefiniteError(np.linalg.LinAlgError):
    """``Quu_t`` (after regularisation) is not positive definite at time index ``t``."""

    def __init__(self, t: int, message: str | None = None) -> None:
        super().__init__(message or f"Quu is not positive definite at t={t}")
        self.t = t


def _check_shapes(F, f, C, c, CT, cT) -> tuple[int, int, int]:
    if F.ndim != 3:
        raise ValueError(f"F must be (T, nx, nx+nu), got shape {F.shape}")
    T, nx, nxu = F.shape
    nu = nxu - nx
    if nu <= 0:
        raise ValueError(f"F must be (T, nx, nx+nu) with nu > 0, got shape {F.shape}")
    expected = {
        "f": (f.shape, (T, nx)),
        "C": (C.shape, (T, nxu, nxu)),
        "c": (c.shape, (T, nxu)),
        "CT": (CT.shape, (nx, nx)),
        "cT": (cT.shape, (nx,)),
    }
    for name, (got, want) in expected.items():
        if got != want:
            raise ValueError(f"{name} must have shape {want}, got {got}")
    return T, nx, nu


def q_function(lx, lu, lxx, luu, lux, A, B, vx, Vxx):
    """One step of the backward recursion: ``Q_t = l_t + V_{t+1}(A x + B u)`` expanded to second
    order, ``(Qx, Qu, Qxx, Quu, Qux)`` with ``Quu`` symmetrised (the Gauss–Newton step of iLQR, the
    exact one for LQR)."""
    VxxA = Vxx @ A
    Quu = luu + B.T @ Vxx @ B
    return lx + A.T @ vx, lu + B.T @ vx, lxx + A.T @ VxxA, 0.5 * (Quu + Quu.T), lux + B.T @ VxxA


def value_function(Qx, Qu, Qxx, Quu, Qux, K, k):
    """``(vx, Vxx)`` of ``V_t`` under the step ``u = K x + k``, with the unregularised ``Quu``
    (Tassa, Erez & Todorov 2012)."""
    V = Qxx + K.T @ (Quu @ K) + K.T @ Qux + Qux.T @ K
    return Qx + K.T @ (Quu @ k) + K.T @ Qu + Qux.T @ k, 0.5 * (V + V.T)


def lqr_backward(
    F: np.ndarray,
    f: np.ndarray,
    C: np.ndarray,
    c: np.ndarray,
    CT: np.ndarray,
    cT: np.ndarray,
    reg_mu: float = 0.0,
) -> LQRSolution:
    """Solve the finite-horizon LQR problem by the backward Riccati recursion.

    Args:
        F: ``(T, nx, nx + nu)`` dynamics matrices.
        f: ``(T, nx)`` dynamics offsets.
        C: ``(T, nx + nu, nx + nu)`` running-cost Hessians (symmetric).
        c: ``(T, nx + nu)`` running-cost gradients.
        CT: ``(nx, nx)`` terminal-cost Hessian.
        cT: ``(nx,)`` terminal-cost gradient.
        reg_mu: ``>= 0`` added to the diagonal of every ``Quu_t`` before factorising.

    Raises:
        NotPositiveDefiniteError: when ``Quu_t + reg_mu I`` is not positive definite (``.t`` is the
            time index).
        ValueError: on inconsistent shapes or a negative/non-finite ``reg_mu``.
    """
    F, f, C, c = (np.asarray(a, dtype=float) for a in (F, f, C, c))
    CT, cT = np.asarray(CT, dtype=float), np.asarray(cT, dtype=float)
    T, nx, nu = _check_shapes(F, f, C, c, CT, cT)
    if not (np.isfinite(reg_mu) and reg_mu >= 0.0):
        raise ValueError(f"reg_mu must be finite and >= 0, got {reg_mu}")

    K = np.zeros((T, nu, nx))
    k = np.zeros((T, nu))
    Quu_out = np.zeros((T, nu, nu))
    Vxx = np.zeros((T + 1, nx, nx))
    vx = np.zeros((T + 1, nx))
    Vxx[T] = 0.5 * (CT + CT.T)
    vx[T] = cT
    eye_u = np.eye(nu)
    for t in range(T - 1, -1, -1):
        Ct, ct = C[t], c[t]
        # The affine offset f_t enters as a shift of the next value's gradient.
        Qx, Qu, Qxx, Quu, Qux = q_function(ct[:nx], ct[nx:], Ct[:nx, :nx], Ct[nx:, nx:], Ct[nx:, :nx], F[t, :, :nx],
                                           F[t, :, nx:], vx[t + 1] + Vxx[t + 1] @ f[t], Vxx[t + 1])
        Quu_reg = Quu + reg_mu * eye_u
        if not np.all(np.isfinite(Quu_reg)):
            raise NotPositiveDefiniteError(t, f"Quu is not finite at t={t}")
        try:
            factor = cho_factor(Quu_reg, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            raise NotPositiveDefiniteError(t) from None
        Kt = -cho_solve(factor, Qux, check_finite=False)
        kt = -cho_solve(factor, Qu, check_finite=False)
        K[t], k[t], Quu_out[t] = Kt, kt, Quu_reg
        vx[t], Vxx[t] = value_function(Qx, Qu, Qxx, Quu, Qux, Kt, kt)
    return LQRSolution(K=K, k=k, Quu=Quu_out, Vxx=Vxx, vx=vx)


def lqr_forward(F: np.ndarray, f: np.ndarray, solution: LQRSolution, x0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Roll the affine dynamics forward under ``u_t = K_t x_t + k_t``; returns ``X (T+1, nx)``, ``U (T, nu)``."""
    T, nx, _ = F.shape
    nu = solution.k.shape[1]
    X = np.zeros((T + 1, nx))
    U = np.zeros((T, nu))
    X[0] = x0
    for t in range(T):
        U[t] = solution.K[t] @ X[t] + solution.k[t]
        X[t + 1] = F[t, :, :nx] @ X[t] + F[t, :, nx:] @ U[t] + f[t]
    return X, U
