"""Planning from the predicted start: the latency estimate and the look-ahead rollout."""

import numpy as np
import pytest

from mbrl_ros.control.latency import LatencyEstimate, predict_start
from mbrl_ros.control.policy import LinearFeedbackPolicy

from _control_toys import double_integrator


def test_the_lead_is_a_high_quantile_of_recent_latencies_and_capped():
    estimate = LatencyEstimate(window=10, quantile=0.9)
    assert estimate.lead_s(cap_s=1.0) == 0.0, "no plan yet: plan from now"
    for latency in [0.02] * 9 + [0.2]:
        estimate.add(latency)
    assert estimate.lead_s(cap_s=1.0) == pytest.approx(np.quantile([0.02] * 9 + [0.2], 0.9))
    assert estimate.lead_s(cap_s=0.03) == 0.03
    for _ in range(10):
        estimate.add(0.03)
    assert estimate.lead_s(cap_s=1.0) == pytest.approx(0.03), "old latencies leave the window"


def test_the_start_is_the_model_rolled_forward_under_the_policy_in_force_for_whole_steps():
    model = double_integrator(dt_s=0.05)
    # Constant force 1 plus position feedback -2 (x - 0) around a nominal at rest at 0.
    policy = LinearFeedbackPolicy(np.zeros((11, 2)), np.ones((10, 1)), np.tile([[[-2.0, 0.0]]], (10, 1, 1)), None,
                                  t0_s=10.0, dt_s=0.05)
    x = np.array([0.1, 0.0])
    x0, t0 = predict_start(model, [policy], x, 10.0, lead_s=0.12)
    assert t0 == pytest.approx(10.15), "0.12 s rounds up to 3 steps of 0.05 s"
    expected = x
    for _ in range(3):
        expected = model.step(expected, np.array([1.0 - 2.0 * expected[0]]))
    assert np.allclose(x0, expected)
    x0, t0 = predict_start(model, [], x, 10.0, lead_s=0.12)
    assert t0 == 10.0 and np.array_equal(x0, x), "under a PD hold the arm rests: plan from now"


def test_a_prediction_that_goes_non_finite_stops_where_it_was_finite():
    class Exploding:
        dt_s, nx, nu = 0.05, 2, 1

        def __init__(self) -> None:
            self.calls = 0

        def step(self, x, u):
            self.calls += 1
            return x + 1.0 if self.calls < 2 else np.full(2, np.nan)

    policy = LinearFeedbackPolicy(np.zeros((11, 2)), np.zeros((10, 1)), None, None, t0_s=0.0, dt_s=0.05)
    x0, t0 = predict_start(Exploding(), [policy], np.zeros(2), 0.0, lead_s=0.2)
    assert np.array_equal(x0, [1.0, 1.0]) and t0 == pytest.approx(0.05)


def test_a_pending_plan_takes_over_the_prediction_only_at_its_start():
    model = double_integrator(dt_s=0.05)
    in_force = LinearFeedbackPolicy(np.zeros((11, 2)), np.ones((10, 1)), None, None, t0_s=10.0, dt_s=0.05)
    # Planned from a predicted start far from where the arm is now, with stiff feedback: applied
    # before its start it would throw the prediction away (and clip at its box).
    pending = LinearFeedbackPolicy(np.tile([5.0, 0.0], (11, 1)), -np.ones((10, 1)), np.tile([[[-400.0, -40.0]]], (10, 1, 1)),
                                   None, t0_s=10.1, dt_s=0.05, u_lower=[-10.0], u_upper=[10.0])
    x = np.array([0.0, 0.0])
    x0, t0 = predict_start(model, [in_force, pending], x, 10.0, lead_s=0.15)
    expected = x
    for k in range(3):
        u = np.array([1.0]) if k < 2 else pending.action(expected, 10.1)
        expected = model.step(expected, u)
    assert t0 == pytest.approx(10.15) and np.allclose(x0, expected)
    assert np.abs(x0).max() < 1.0, "two steps of the plan in force, then one clipped step of the pending plan"
