"""LQR backward pass against the discrete-time Riccati solution and against brute force."""

import numpy as np
import pytest
from scipy.linalg import solve_discrete_are

from mbrl_ros.control.lqr import LQRSolution, NotPositiveDefiniteError, lqr_backward, lqr_forward


def _random_system(seed: int, nx: int = 4, nu: int = 2):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(nx, nx)) * 0.5 + np.eye(nx)
    B = rng.normal(size=(nx, nu))
    ctrb = np.hstack([np.linalg.matrix_power(A, i) @ B for i in range(nx)])
    assert np.linalg.matrix_rank(ctrb) == nx
    L = rng.normal(size=(nx, nx))
    Q = L @ L.T + 0.1 * np.eye(nx)
    R = np.diag(rng.uniform(0.5, 2.0, nu))
    return A, B, Q, R


def _stack(A, B, Q, R, T):
    nx, nu = B.shape
    F = np.broadcast_to(np.hstack([A, B]), (T, nx, nx + nu)).copy()
    C = np.zeros((T, nx + nu, nx + nu))
    C[:, :nx, :nx] = Q
    C[:, nx:, nx:] = R
    return F, np.zeros((T, nx)), C, np.zeros((T, nx + nu))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lqr_gain_converges_to_riccati(seed):
    A, B, Q, R = _random_system(seed)
    P = solve_discrete_are(A, B, Q, R)
    K_inf = -np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
    errors = []
    for T in (2, 50, 200):
        sol = lqr_backward(*_stack(A, B, Q, R, T), Q, np.zeros(4))
        errors.append(np.abs(sol.K[0] - K_inf).max())
    assert errors[-1] < 1e-6
    assert errors[0] > 1e-4  # a short horizon is visibly different from the stationary gain
    # With the Riccati solution as terminal cost every step's gain is the stationary one.
    sol = lqr_backward(*_stack(A, B, Q, R, 20), P, np.zeros(4))
    assert np.abs(sol.K - K_inf).max() < 1e-6
    assert np.abs(sol.Vxx - P).max() < 1e-6 * np.abs(P).max()
    assert sol.Quu.shape == (20, 2, 2) and sol.k.shape == (20, 2) and sol.vx.shape == (21, 4)


def test_lqr_matches_brute_force_quadratic_program():
    """Affine dynamics, linear cost terms and cross terms: LQR equals the stacked KKT solution."""
    rng = np.random.default_rng(3)
    T, nx, nu = 6, 3, 2
    F = rng.normal(size=(T, nx, nx + nu)) * 0.6
    f = rng.normal(size=(T, nx))
    C = np.zeros((T, nx + nu, nx + nu))
    for t in range(T):
        L = rng.normal(size=(nx + nu, nx + nu))
        C[t] = L @ L.T + 0.5 * np.eye(nx + nu)
    c = rng.normal(size=(T, nx + nu))
    L = rng.normal(size=(nx, nx))
    CT, cT = L @ L.T + np.eye(nx), rng.normal(size=nx)
    x0 = rng.normal(size=nx)
    sol = lqr_backward(F, f, C, c, CT, cT)
    X, U = lqr_forward(F, f, sol, x0)

    def total(u_flat):
        Uq = u_flat.reshape(T, nu)
        x, J = x0, 0.0
        for t in range(T):
            z = np.concatenate([x, Uq[t]])
            J += 0.5 * z @ C[t] @ z + z @ c[t]
            x = F[t] @ z + f[t]
        return J + 0.5 * x @ CT @ x + x @ cT

    # The total cost is quadratic in U: recover its Hessian/gradient by exact finite differences.
    n = T * nu
    g0 = total(np.zeros(n))
    H = np.zeros((n, n))
    g = np.zeros(n)
    E = np.eye(n)
    for i in range(n):
        g[i] = (total(E[i]) - total(-E[i])) / 2
        for j in range(n):
            H[i, j] = (total(E[i] + E[j]) - total(E[i]) - total(E[j]) + g0)
    U_star = np.linalg.solve(H, -g).reshape(T, nu)
    assert np.abs(U - U_star).max() < 1e-8


def test_lqr_regularisation_and_not_positive_definite():
    A, B, Q, R = _random_system(0)
    F, f, C, c = _stack(A, B, Q, R, 5)
    C[3, 4:, 4:] = -50.0 * np.eye(2)
    with pytest.raises(NotPositiveDefiniteError) as info:
        lqr_backward(F, f, C, c, Q, np.zeros(4))
    assert info.value.t == 3
    assert isinstance(info.value, np.linalg.LinAlgError)
    sol = lqr_backward(F, f, C, c, Q, np.zeros(4), reg_mu=1e6)
    assert isinstance(sol, LQRSolution)
    assert np.all(np.linalg.eigvalsh(sol.Quu) > 0)


def test_lqr_rejects_bad_shapes_and_reg():
    A, B, Q, R = _random_system(0)
    F, f, C, c = _stack(A, B, Q, R, 5)
    with pytest.raises(ValueError):
        lqr_backward(F, f[:4], C, c, Q, np.zeros(4))
    with pytest.raises(ValueError):
        lqr_backward(F, f, C, c, Q, np.zeros(4), reg_mu=-1.0)
