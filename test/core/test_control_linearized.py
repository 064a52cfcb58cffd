"""LinearizedRolloutModel: exact along the nominal, first-order accurate off it, usable by MPPI."""

import numpy as np
import pytest
import torch

from _control_toys import Pendulum
from mbrl_ros.control.costs import QuadraticCost
from mbrl_ros.control.linearized import LinearizedRolloutModel
from mbrl_ros.control.mppi import MPPI, MPPISettings
from mbrl_ros.dynamics.base import begin_rollout


def test_linearized_model_exact_on_nominal_and_second_order_off_it():
    base = Pendulum(dt_s=0.05)
    T = 20
    model = LinearizedRolloutModel(base, T, dtype=torch.float64)
    assert (model.nx, model.nu, model.dt_s) == (base.nx, base.nu, base.dt_s)
    rng = np.random.default_rng(0)
    x0 = np.array([0.3, 0.0])
    U = rng.normal(size=(T, 1))
    model.prepare_plan(x0, U)

    def rollout(dx0, dU):
        begin_rollout(model, 1)
        x = torch.tensor(x0 + dx0)[None]
        xs = [x]
        for t in range(T):
            x = model.step_torch(x, torch.tensor(U[t] + dU[t])[None])
            xs.append(x)
        return torch.cat(xs).numpy()

    assert np.abs(rollout(np.zeros(2), np.zeros((T, 1))) - model.X_nominal).max() < 1e-12
    errors = []
    direction = rng.normal(size=(T, 1))
    for scale in (0.3, 0.03):
        dU = scale * direction
        exact = [x0 + 0.0]
        for t in range(T):
            exact.append(base.step(exact[-1], U[t] + dU[t]))
        errors.append(np.abs(rollout(np.zeros(2), dU) - np.array(exact)).max())
    assert errors[1] < errors[0] / 30  # error shrinks quadratically with the deviation
    assert np.allclose(model.step(x0, U[0]), base.step(x0, U[0]))
    with pytest.raises(ValueError):
        model.prepare_plan(x0, U[:5])
    with pytest.raises(RuntimeError):
        LinearizedRolloutModel(base, T).step_torch(torch.zeros(1, 2), torch.zeros(1, 1))


def test_mppi_with_linearized_model_swings_pendulum_towards_upright():
    base = Pendulum(dt_s=0.05)
    cost = QuadraticCost(Q=np.diag([1.0, 0.01]), R=np.diag([0.001]), QT=np.diag([10.0, 1.0]), x_goal=[np.pi, 0.0])
    model = LinearizedRolloutModel(base, 40)
    planner = MPPI(model, cost, MPPISettings(num_samples=128, horizon_steps=40, temperature=1.0, noise_sigma_nm=2.0,
                                             noise_smoothing=0.5, seed=0), u_lower=[-8.0], u_upper=[8.0])
    x = np.zeros(2)
    for k in range(80):
        policy = planner.optimize(x, k * base.dt_s)
        x = base.step(x, policy.action(x, k * base.dt_s))
    assert abs(np.cos(x[0]) + 1.0) < 0.05  # near upright after 4 s
