"""Offset-free receding-horizon control: executed steps cut from the torque loop's ticks, and a
planner that includes the model's recent error reaching a goal its biased model alone misses."""

import numpy as np
import pytest
from _control_toys import double_integrator

from mbrl_ros.control.costs import QuadraticCost
from mbrl_ros.control.disturbance import DisturbanceModel, StepWindows
from mbrl_ros.control.ilqr import ILQR, ILQRSettings


def test_step_windows_give_each_model_step_its_states_and_mean_torque():
    windows = StepWindows(dt_s=0.05)
    period = 0.004
    for i in range(40):  # 0.16 s of 250 Hz ticks: 3 complete 50 ms steps
        t = i * period
        windows.add(t, np.array([t, 0.0]), np.array([float(i)]))
    steps = windows.take()
    assert len(steps) == 3 and windows.take() == []
    x0, u0, x1 = steps[0]
    # Ticks 0..12 (t <= 0.048) fall in the first step; its end state is interpolated at exactly 0.05 s
    # (x = t here), which starts the second.
    assert x0[0] == 0.0 and x1[0] == pytest.approx(0.05)
    assert u0[0] == pytest.approx(np.mean(np.arange(13)))
    assert [s[0][0] for s in steps] == pytest.approx([0.0, 0.05, 0.10])
    assert [s[2][0] for s in steps] == pytest.approx([0.05, 0.10, 0.15])


def test_clearing_drops_the_step_in_progress():
    windows = StepWindows(dt_s=0.05)
    for i in range(10):
        windows.add(i * 0.004, np.zeros(2), np.ones(1))
    windows.clear()  # e.g. a reset: the next step starts afresh
    for i in range(20, 34):
        windows.add(i * 0.004, np.zeros(2), np.zeros(1))
    (step,) = windows.take()
    assert step[1][0] == 0.0


def _hold(model_for_planning, truth, push, steps=120):
    """Receding horizon: plan from the true state, apply the first action, step the truth (which a
    constant force the model does not know pushes), and tell the planner what happened."""
    cost = QuadraticCost(Q=np.diag([10.0, 0.1]), R=np.diag([0.01]), QT=np.diag([100.0, 1.0]), x_goal=[1.0, 0.0])
    planner = ILQR(model_for_planning, cost, ILQRSettings(horizon_steps=20, max_iterations=5))
    x = np.zeros(2)
    for k in range(steps):
        u = planner.optimize(x, k * truth.dt_s).action(x, k * truth.dt_s)
        x_next = truth.step(x, u) + push
        if isinstance(model_for_planning, DisturbanceModel):
            model_for_planning.observe([(x, u, x_next)])
        x = x_next
    return x


def test_a_biased_model_misses_the_goal_and_the_disturbance_estimate_removes_the_offset():
    truth = double_integrator(0.1)
    push = truth.B[:, 0] * -2.0  # a constant 2 N the model has never seen (friction, a spring, a bias)
    plain = _hold(double_integrator(0.1), truth, push)
    offset_free = _hold(DisturbanceModel(double_integrator(0.1), gain=0.3), truth, push)
    assert abs(plain[0] - 1.0) > 0.05, f"the biased model alone ends at {plain[0]:.3f}"
    assert abs(offset_free[0] - 1.0) < 1e-3 and abs(offset_free[1]) < 1e-3, f"offset-free ends at {offset_free}"


def test_the_estimate_converges_to_the_model_error():
    truth = double_integrator(0.1)
    push = np.array([0.01, -0.02])
    model = DisturbanceModel(double_integrator(0.1), gain=0.3)
    rng = np.random.default_rng(0)
    for _ in range(60):
        x, u = rng.normal(size=2), rng.normal(size=1)
        model.observe([(x, u, truth.step(x, u) + push)])
    np.testing.assert_allclose(model.d, push, atol=1e-8)
    x, u = np.array([0.3, -0.1]), np.array([0.5])
    np.testing.assert_allclose(model.step(x, u), truth.step(x, u) + push, atol=1e-8)


def test_gain_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="gain"):
        DisturbanceModel(double_integrator(), gain=0.0)
