"""MPPI, CEM/iCEM and random shooting on a seeded double integrator; the feedback policy."""

import numpy as np
import pytest
import torch

from _control_toys import double_integrator
from mbrl_ros.control.costs import QuadraticCost
from mbrl_ros.control.mppi import MPPI, MPPISettings
from mbrl_ros.control.policy import LinearFeedbackPolicy
from mbrl_ros.control.sampling import CEM, CEMSettings, RandomShooting, RandomShootingSettings

X0 = np.array([1.0, 0.0])


def _problem():
    model = double_integrator(0.1)
    cost = QuadraticCost(Q=np.diag([1.0, 0.1]), R=np.diag([0.01]), QT=np.diag([10.0, 1.0]))
    return model, cost


def _expected_costs(make_planner, seeds=range(8), calls=6):
    """Mean (over seeds) cost of the returned plan after each successive optimize at the same x0."""
    curves = []
    for seed in seeds:
        planner = make_planner(seed)
        curve = []
        for _ in range(calls):
            planner.optimize(X0, t0_s=0.0)  # same time: the warm start is not shifted
            curve.append(planner.last_result.cost)
        curves.append(curve)
    return np.mean(curves, axis=0)


def test_mppi_reduces_cost_monotonically_in_expectation():
    model, cost = _problem()
    zero_cost = cost.evaluate(_rollout(model, np.zeros((20, 1))), np.zeros((20, 1))).sum()
    settings = lambda seed: MPPISettings(num_samples=64, horizon_steps=20, temperature=0.5, noise_sigma_nm=1.0, seed=seed)  # noqa: E731
    curve = _expected_costs(lambda seed: MPPI(model, cost, settings(seed), u_lower=[-5.0], u_upper=[5.0]))
    assert np.all(np.diff(curve) <= 1e-9), curve
    assert curve[-1] < 0.5 * zero_cost
    assert model.rollouts_started and set(model.rollouts_started) >= {64}


def test_cem_reduces_cost_monotonically_in_expectation():
    model, cost = _problem()
    zero_cost = cost.evaluate(_rollout(model, np.zeros((20, 1))), np.zeros((20, 1))).sum()
    settings = lambda seed: CEMSettings(num_samples=64, horizon_steps=20, iterations=1, noise_sigma_nm=1.0,  # noqa: E731
                                        return_best=False, keep_elite_fraction=0.0, seed=seed)
    curve = _expected_costs(lambda seed: CEM(model, cost, settings(seed), u_lower=[-5.0], u_upper=[5.0]))
    assert np.all(np.diff(curve) <= 1e-9), curve
    assert curve[-1] < 0.5 * zero_cost
    # iCEM within one call: best-so-far history never increases.
    planner = CEM(model, cost, CEMSettings(num_samples=64, horizon_steps=20, iterations=5, noise_smoothing=0.5))
    planner.optimize(X0)
    history = planner.last_result.cost_history
    assert len(history) == 5 and np.all(np.diff(history) <= 0)


def _rollout(model, U):
    X = [X0]
    for u in U:
        X.append(model.step(X[-1], u))
    return np.array(X)


def test_random_shooting_and_float32():
    model, cost = _problem()
    planner = RandomShooting(model, cost, RandomShootingSettings(num_samples=256, horizon_steps=20, dtype="float32"))
    policy = planner.optimize(X0)
    res = planner.last_result
    assert res.cost < cost.evaluate(_rollout(model, np.zeros((20, 1))), np.zeros((20, 1))).sum()
    assert abs(res.cost - cost.evaluate(res.X, res.U).sum()) < 1e-4 * res.cost
    assert isinstance(policy, LinearFeedbackPolicy)


def test_mppi_warm_start_shifts_the_mean():
    model, cost = _problem()
    planner = MPPI(model, cost, MPPISettings(num_samples=32, horizon_steps=10, seed=0))
    planner.optimize(X0, t0_s=0.0)
    mean_before = planner.mean.clone()
    planner._shift(0.2)  # two steps later
    assert torch.allclose(planner.mean[:8], mean_before[2:])
    assert torch.all(planner.mean[8:] == 0.0)  # new knots start from zero feed-forward


def test_sampling_settings_validation():
    with pytest.raises(ValueError):
        MPPISettings(temperature=0.0)
    with pytest.raises(ValueError):
        MPPISettings(noise_sigma_nm=-1.0)
    with pytest.raises(ValueError):
        MPPISettings(noise_smoothing=1.0)
    with pytest.raises(ValueError):
        CEMSettings(elite_fraction=0.0)
    with pytest.raises(ValueError):
        CEMSettings(dtype="float16")
    with pytest.raises(ValueError):
        RandomShootingSettings(iterations=2)


def test_policy_feedback_interpolation_and_clipping():
    X = np.array([[0.0, 0.0], [1.0, 2.0], [3.0, 4.0]])
    U = np.array([[1.0], [2.0]])
    K = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    k = np.array([[0.5], [0.0]])
    policy = LinearFeedbackPolicy(X, U, K, k, t0_s=10.0, dt_s=0.1, u_lower=[-3.0], u_upper=[3.0])
    # At a knot: u = û + k + K (x - x̂).
    assert policy.action(np.array([0.2, 0.0]), 10.0) == pytest.approx([1.0 + 0.5 + 0.2])
    # Half-way between knots 0 and 1: x̂ interpolated, û/K/k held.
    assert policy.nominal_state(10.05) == pytest.approx([0.5, 1.0])
    assert policy.action(np.array([0.5, 1.0]), 10.05) == pytest.approx([1.5])
    # Past the horizon the last knot is held; output clipped.
    assert policy.action(np.array([3.0, 10.0]), 99.0) == pytest.approx([3.0])
    interp = LinearFeedbackPolicy(X, U, t0_s=0.0, dt_s=0.1, interpolate_action=True)
    assert interp.action(interp.nominal_state(0.05), 0.05) == pytest.approx([1.5])
    with pytest.raises(ValueError):
        LinearFeedbackPolicy(X, U, K[:1])


def test_feedback_sampling_reaches_a_goal_the_open_loop_planner_drifts_past():
    """Sampled around a stabilising gain, MPPI's receding horizon settles on the goal; the returned
    policy carries the gain."""
    model = double_integrator(0.05)
    cost = QuadraticCost(Q=np.diag([1.0, 0.01]), R=np.diag([0.001]), QT=np.diag([100.0, 1.0]), x_goal=[1.0, 0.0])
    gain = np.array([[-9.0, -5.4]])
    settings = MPPISettings(num_samples=128, horizon_steps=30, temperature=0.1, temperature_relative=True,
                            noise_sigma_nm=1.0, noise_smoothing=0.5, seed=0)
    planner = MPPI(model, cost, settings, feedback_gain=gain)
    x = np.zeros(2)
    for k in range(80):
        policy = planner.optimize(x, 0.05 * k)
        x = model.step(x, policy.action(x, 0.05 * k))
    np.testing.assert_allclose(policy.K, np.broadcast_to(gain, (30, 1, 2)))
    assert abs(x[0] - 1.0) < 0.02 and abs(x[1]) < 0.05
