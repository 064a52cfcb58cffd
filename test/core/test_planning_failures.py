"""No planner returns a non-finite torque: a model that returns NaN/inf for some or all samples."""

import numpy as np
import pytest
import torch

from _control_toys import double_integrator
from mbrl_ros.control.costs import QuadraticCost
from mbrl_ros.control.ilqr import ILQR, ILQRSettings
from mbrl_ros.control.mppi import MPPI, MPPISettings
from mbrl_ros.control.policy import PlanningFailed
from mbrl_ros.control.sampling import CEM, CEMSettings, RandomShooting, RandomShootingSettings

X0 = np.array([1.0, 0.0])
T = 15


class Poisoned:
    """A double integrator whose batched steps return ``value`` in every third row (``rows="some"``;
    a single state is always finite) or in every row (``rows="all"``); ``linearize`` likewise at
    every third time step when ``jacobians`` is set."""

    def __init__(self, rows: str, value: float, jacobians: bool = False) -> None:
        self.base = double_integrator(0.1)
        self.nx, self.nu, self.dt_s = 2, 1, 0.1
        self.rows, self.value, self.jacobians = rows, value, jacobians

    def _poison(self, out, batched: bool):
        if self.rows == "all":
            out[...] = self.value
        elif batched:
            out[1::3] = self.value
        return out

    def step(self, x, u):
        out = np.array(self.base.step(x, u), dtype=float)
        return self._poison(out, out.ndim > 1 and out.shape[0] > 1)

    def step_torch(self, x, u):
        return self._poison(self.base.step_torch(x, u).clone(), x.shape[0] > 1)

    def linearize(self, x, u):
        A, B = self.base.linearize(x, u)
        if self.jacobians:
            A[1::3] = self.value
        return A, B


def _cost():
    return QuadraticCost(Q=np.diag([1.0, 0.1]), R=np.diag([0.01]), QT=np.diag([10.0, 1.0]))


def _sampling_planners(model):
    gain = np.array([[-4.0, -2.0]])
    return [
        MPPI(model, _cost(), MPPISettings(num_samples=48, horizon_steps=T, seed=1), [-5.0], [5.0]),
        MPPI(model, _cost(), MPPISettings(num_samples=48, horizon_steps=T, temperature=0.1, temperature_relative=True,
                                          iterations=2, seed=1), [-5.0], [5.0], feedback_gain=gain),
        CEM(model, _cost(), CEMSettings(num_samples=48, horizon_steps=T, iterations=2, seed=1), [-5.0], [5.0]),
        RandomShooting(model, _cost(), RandomShootingSettings(num_samples=48, horizon_steps=T, seed=1), [-5.0], [5.0]),
    ]


def _assert_finite(policy):
    for a in (policy.X, policy.U, policy.K, policy.k):
        assert np.all(np.isfinite(a))
    for t in np.linspace(0.0, 2.0, 9):
        assert np.all(np.isfinite(policy.action(X0 + 0.1, t)))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_sampling_planners_ignore_non_finite_samples(value):
    for planner in _sampling_planners(Poisoned("some", value)):
        for k in range(3):
            policy = planner.optimize(X0, 0.1 * k)
            _assert_finite(policy)
        assert 0.0 < planner.last_result.finite_fraction < 1.0, type(planner).__name__
        # The poisoned samples had no say: the plan still beats doing nothing.
        zeros = np.zeros((T, 1))
        X = [X0]
        for u in zeros:
            X.append(planner.model.base.step(X[-1], u))
        assert planner.last_result.cost < _cost().evaluate(np.array(X), zeros).sum()


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_sampling_planners_fail_when_every_sample_is_non_finite(value):
    for planner in _sampling_planners(Poisoned("all", value)):
        with pytest.raises(PlanningFailed):
            planner.optimize(X0, 0.0)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_ilqr_rejects_non_finite_line_search_candidates(value):
    model = Poisoned("some", value)
    model.batched_step_is_cheap = True  # every step length rolled out in one batch: some of them poisoned
    planner = ILQR(model, _cost(), ILQRSettings(horizon_steps=T, max_iterations=5), [-5.0], [5.0])
    for k in range(3):
        _assert_finite(planner.optimize(X0, 0.1 * k))


@pytest.mark.parametrize("case", ["jacobians", "all steps"])
def test_ilqr_fails_on_a_non_finite_model(case):
    model = Poisoned("some", np.nan, jacobians=True) if case == "jacobians" else Poisoned("all", np.nan)
    planner = ILQR(model, _cost(), ILQRSettings(horizon_steps=T, max_iterations=5), [-5.0], [5.0])
    with pytest.raises(PlanningFailed):
        planner.optimize(X0, 0.0)


def test_a_warm_start_the_model_fails_on_starts_afresh():
    """A model that fails along the kept plan (but not from rest) gives a cold-started plan, not an error."""
    model = Poisoned("some", np.nan)
    planner = MPPI(model, _cost(), MPPISettings(num_samples=48, horizon_steps=T, seed=1), [-5.0], [5.0],
                   feedback_gain=np.array([[-4.0, -2.0]]))
    planner.optimize(X0, 0.0)
    model.rows = "all"
    with pytest.raises(PlanningFailed):
        planner.optimize(X0, 0.1)
    model.rows = "some"
    _assert_finite(planner.optimize(X0, 0.2))
    assert torch.all(torch.isfinite(planner.mean))
