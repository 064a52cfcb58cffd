"""The controller's planning child: a plan of a new epoch (after a reset) starts afresh, without the
warm start and the disturbance estimate of the epoch before."""

import numpy as np
import pytest

from mbrl_ros.control.controller_settings import ControllerSettings
from mbrl_ros.control.planner_process import PlannerProcess

Q0 = np.array([0.0, -0.5, 0.0, -2.0, 0.0, 1.6, 0.8])
X0 = np.concatenate([Q0, np.zeros(7)])
GOAL = np.array([0.45, 0.15, 0.45])


@pytest.fixture
def planners():
    made = [PlannerProcess("panda", 0.05, Q0), PlannerProcess("panda", 0.05, Q0)]
    yield made
    for planner in made:
        planner.close()


def test_a_new_epoch_plans_like_a_fresh_planner_and_the_same_epoch_is_warm_started(planners):
    used, fresh = planners
    settings = ControllerSettings(mode="ilqr", model_source="physics")
    # What the arm did in the first epoch: far from X0, so its disturbance estimate is large there.
    moved = X0 + np.r_[np.full(7, 0.3), np.zeros(7)]
    executed = [(moved, np.zeros(7), moved + 0.05)]
    used.plan(settings, moved, 0.0, GOAL, executed, epoch=1)
    warm = used.plan(settings, X0, 0.05, GOAL, epoch=1)
    after_reset = used.plan(settings, X0, 0.05, GOAL, epoch=2)
    cold = fresh.plan(settings, X0, 0.05, GOAL, epoch=7)
    np.testing.assert_allclose(after_reset.U, cold.U, atol=1e-9)
    np.testing.assert_allclose(after_reset.X, cold.X, atol=1e-9)
    assert np.max(np.abs(warm.U - cold.U)) > 1e-3, "within an epoch the plan is warm-started from the previous one"
