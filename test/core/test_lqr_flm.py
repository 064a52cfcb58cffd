"""LQR-FLM: KL-constrained updates of a linear-Gaussian controller on known linear-quadratic problems."""

import numpy as np
import pytest

from mbrl_ros.control.costs import QuadraticCost
from mbrl_ros.control.lg_policy import InitialControllerSettings, LinearGaussianPolicy, initial_pd_policy
from mbrl_ros.control.lqr_flm import (
    LocalQuadraticCost,
    LQRFLMSettings,
    adapt_step_mult,
    expected_cost,
    forward_propagate,
    lqr_flm_update,
    quadratic_cost_from_trials,
    trajectory_kl,
    unconstrained_lqr_policy,
)
from mbrl_ros.control.lqr_flm_trainer import LQRFLMTrainer
from mbrl_ros.data.episodes import Episodes
from mbrl_ros.dynamics.tvlg import NoPrior, TVLGDynamics

T = 30
NX, NU = 4, 2


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    dt = 0.1
    A = np.eye(NX)
    A[:2, 2:] = dt * np.eye(2)
    A += 0.02 * rng.standard_normal((NX, NX))
    B = np.zeros((NX, NU))
    B[2:] = dt * np.eye(2)
    B += 0.01 * rng.standard_normal((NX, NU))
    W = 1e-4 * np.eye(NX)
    dyn = TVLGDynamics(
        np.broadcast_to(np.hstack([A, B]), (T, NX, NX + NU)).copy(), np.zeros((T, NX)),
        np.broadcast_to(W, (T, NX, NX)).copy(), np.array([1.0, -1.0, 0.0, 0.0]), 1e-4 * np.eye(NX),
    )
    Q = np.diag([1.0, 1.0, 0.1, 0.1])
    R = 0.01 * np.eye(NU)
    Cm = np.zeros((T, NX + NU, NX + NU))
    Cm[:, :NX, :NX] = Q
    Cm[:, NX:, NX:] = R
    cost = LocalQuadraticCost(Cm, np.zeros((T, NX + NU)), np.zeros(T), 10 * Q, np.zeros(NX), 0.0)
    init = initial_pd_policy(T, np.array([1.0, -1.0]), np.eye(2), InitialControllerSettings(omega_rad_s=1.0, zeta=0.9,
                                                                                              noise_scale_rad_s2=1.0))
    return dyn, cost, init, (A, B, W, Q, R)


def test_kl_meets_the_bound_within_ten_percent():
    dyn, cost, init, _ = _problem()
    for step_mult in (0.2, 1.0, 3.0):
        res = lqr_flm_update(init, dyn, cost, step_mult=step_mult)
        eps = 0.2 * T * step_mult
        assert res.epsilon_nats == pytest.approx(eps)
        assert abs(res.kl_nats - eps) < 0.1 * eps, (step_mult, res.kl_nats, eps)
        assert res.converged
        kl_again = trajectory_kl(res.policy, init, dyn).sum()
        assert kl_again == pytest.approx(res.kl_nats, rel=1e-6)
        assert res.predicted_cost < expected_cost(init, dyn, cost)


def test_large_epsilon_approaches_unconstrained_lqr():
    dyn, cost, init, _ = _problem()
    K_lqr, k_lqr = unconstrained_lqr_policy(dyn, cost)
    errors = []
    for mult in (0.5, 5.0, 50.0, 500.0):
        res = lqr_flm_update(init, dyn, cost, step_mult=mult, settings=LQRFLMSettings(max_step_mult=1000.0))
        errors.append(np.linalg.norm(res.policy.K - K_lqr) / np.linalg.norm(K_lqr))
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.05, errors
    assert expected_cost(res.policy, dyn, cost) < 1.05 * expected_cost(
        LinearGaussianPolicy.from_absolute(K_lqr, k_lqr, res.policy.covar), dyn, cost
    )


def test_kl_of_a_policy_from_itself_is_zero():
    dyn, _, init, _ = _problem()
    np.testing.assert_allclose(trajectory_kl(init, init, dyn), 0.0, atol=1e-9)


def test_iterations_on_sampled_trials_decrease_cost():
    """Sample the linear system, fit TVLG without a prior, update; the cost falls every iteration."""
    dyn, _, init, (A, B, W, Q, R) = _problem(1)
    rng = np.random.default_rng(1)
    cost = QuadraticCost(Q, R, 10 * Q)
    trainer = LQRFLMTrainer(init, cost, prior=NoPrior())
    costs = []
    for it in range(6):
        N = 20
        x = np.zeros((N, T + 1, NX))
        u = np.zeros((N, T, NU))
        x[:, 0] = dyn.x0_mean + 0.01 * rng.standard_normal((N, NX))
        pol = trainer.policy
        for n in range(N):
            for t in range(T):
                u[n, t] = pol.action(x[n, t], t, rng.standard_normal(NU))
                x[n, t + 1] = A @ x[n, t] + B @ u[n, t] + rng.multivariate_normal(np.zeros(NX), W)
        ep = Episodes(x, u, np.tile(np.arange(T + 1) * 0.1, (N, 1)))
        costs.append(float(np.mean([cost.evaluate(x[n], u[n]).sum() for n in range(N)])))
        trainer.iteration(ep)
    # Strictly decreasing until it converges; at convergence sampling noise of 1 % is allowed.
    assert all(b < 1.01 * a for a, b in zip(costs, costs[1:])), costs
    assert all(b < a for a, b in zip(costs[:3], costs[1:4])), costs
    assert costs[-1] < 0.5 * costs[0], costs
    optimum = expected_cost(LinearGaussianPolicy.from_absolute(*unconstrained_lqr_policy(dyn, _abs_cost(Q, R)),
                                                                1e-6 * np.broadcast_to(np.eye(NU), (T, NU, NU))), dyn, _abs_cost(Q, R))
    assert costs[-1] < 1.1 * optimum + 0.1, (costs, optimum)
    for s in trainer.history:
        assert abs(s.kl_nats - s.epsilon_nats) < 0.1 * s.epsilon_nats or s.kl_nats < s.epsilon_nats
        assert 0.01 <= s.step_mult <= 10.0


def _abs_cost(Q, R):
    Cm = np.zeros((T, NX + NU, NX + NU))
    Cm[:, :NX, :NX] = Q
    Cm[:, NX:, NX:] = R
    return LocalQuadraticCost(Cm, np.zeros((T, NX + NU)), np.zeros(T), 10 * Q, np.zeros(NX), 0.0)


def test_quadratic_expansion_reproduces_a_quadratic_cost():
    dyn, _, init, (A, B, W, Q, R) = _problem(2)
    cost = QuadraticCost(Q, R, 10 * Q)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, T + 1, NX))
    u = rng.standard_normal((3, T, NU))
    qc, totals = quadratic_cost_from_trials(cost, Episodes(x, u, np.tile(np.arange(T + 1.0), (3, 1))))
    for n in range(3):
        assert qc.evaluate(x[n], u[n]) == pytest.approx(totals[n], rel=1e-9)


def test_forward_propagation_matches_monte_carlo():
    dyn, _, init, (A, B, W, _, _) = _problem(3)
    d = forward_propagate(init, dyn)
    rng = np.random.default_rng(3)
    n = 4000
    x = rng.multivariate_normal(dyn.x0_mean, dyn.x0_covar, n)
    for t in range(10):
        u = x @ init.K[t].T + init.k_abs()[t] + rng.standard_normal((n, NU)) @ init.chol[t].T
        x = x @ A.T + u @ B.T + rng.multivariate_normal(np.zeros(NX), W, n)
    np.testing.assert_allclose(x.mean(0), d.mu_x[10], atol=0.05)
    np.testing.assert_allclose(np.cov(x.T), d.sigma[10, :NX, :NX], rtol=0.15, atol=1e-3)


def test_step_mult_adapts_within_bounds():
    dyn, cost, init, _ = _problem()
    res = lqr_flm_update(init, dyn, cost)
    mult, info = adapt_step_mult(1.0, init, dyn, cost, res.policy, dyn, cost)
    # Same model before and after: actual improvement equals predicted, the multiplier grows to its cap.
    assert info["predicted_improvement"] > 0
    assert mult == pytest.approx(5.0)
    worse = TVLGDynamics(dyn.Fm, dyn.fv + 0.05, dyn.dyn_covar, dyn.x0_mean, dyn.x0_covar)
    mult2, _ = adapt_step_mult(1.0, init, dyn, cost, res.policy, worse, cost)
    assert 0.1 <= mult2 < 5.0


@pytest.mark.parametrize("kwargs", [dict(kl_step_nats_per_step=0.0), dict(kl_tolerance=1.5), dict(min_eta=1.0, max_eta=0.5),
                                    dict(max_dual_iterations=0)])
def test_settings_are_validated(kwargs):
    with pytest.raises(ValueError):
        LQRFLMSettings(**kwargs)


def test_policy_validation():
    _, _, init, _ = _problem()
    arrays = init.to_arrays()
    arrays["covar"] = -arrays["covar"]
    with pytest.raises(ValueError, match="positive definite"):
        LinearGaussianPolicy.from_arrays(arrays)
    with pytest.raises(ValueError, match="shape"):
        LinearGaussianPolicy(init.K, init.k[:-1], init.x_hat, init.u_hat, init.covar)


def test_initial_pd_policy_is_mass_scaled():
    M = np.diag([2.0, 0.5])
    pol = initial_pd_policy(5, np.array([0.1, -0.2]), M, InitialControllerSettings(omega_rad_s=8.0, zeta=0.9, noise_scale_rad_s2=2.0),
                            gravity_torque_nm=np.array([1.0, 3.0]))
    x = np.array([0.0, 0.0, 1.0, -1.0])
    expected = M @ (64.0 * np.array([0.1, -0.2]) - 2 * 0.9 * 8.0 * np.array([1.0, -1.0])) + np.array([1.0, 3.0])
    np.testing.assert_allclose(pol.mean_action(x, 2), expected)
    np.testing.assert_allclose(np.sqrt(np.diagonal(pol.covar[0])), 2.0 * np.sqrt([2.0, 0.5]))
    with pytest.raises(ValueError):
        InitialControllerSettings(omega_rad_s=0.0)


def test_non_convex_cost_raises_eta_until_quu_is_positive_definite():
    dyn, cost, init, _ = _problem(4)
    Cm = cost.Cm.copy()
    Cm[:, NX:, NX:] = -0.5 * np.eye(NU)  # concave in u: small η makes Quu indefinite
    bad = LocalQuadraticCost(Cm, cost.cv, cost.cc, cost.CmT, cost.cvT, cost.ccT)
    res = lqr_flm_update(init, dyn, bad, step_mult=1.0, eta=1e-6)
    assert any(np.isnan(kl) for _, kl in res.eta_history)  # it met an indefinite Quu on the way
    assert np.all(np.linalg.eigvalsh(res.policy.covar) > 0)
    assert res.kl_nats < 1.1 * res.epsilon_nats


def test_trainer_update_with_an_externally_fitted_model():
    dyn, _, init, (A, B, W, Q, R) = _problem(5)
    cost = QuadraticCost(Q, R, 10 * Q)
    trainer = LQRFLMTrainer(init, cost, LQRFLMSettings(kl_step_nats_per_step=0.5))
    rng = np.random.default_rng(5)
    N = 5
    x = np.zeros((N, T + 1, NX))
    u = rng.standard_normal((N, T, NU))
    x[:, 0] = dyn.x0_mean
    for t in range(T):
        x[:, t + 1] = x[:, t] @ A.T + u[:, t] @ B.T
    ep = Episodes(x, u, np.tile(np.arange(T + 1) * 0.1, (N, 1)))
    stats = trainer.update(ep, dyn)
    assert abs(stats.kl_nats - stats.epsilon_nats) < 0.1 * stats.epsilon_nats
    assert stats.epsilon_nats == pytest.approx(0.5 * T)
    with pytest.raises(ValueError, match="prior"):
        trainer.iteration(ep)
    short = TVLGDynamics(dyn.Fm[:-1], dyn.fv[:-1], dyn.dyn_covar[:-1], dyn.x0_mean, dyn.x0_covar)
    with pytest.raises(ValueError, match="do not match"):
        trainer.update(ep, short)
