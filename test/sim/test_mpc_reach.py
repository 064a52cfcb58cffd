"""The controller's receding-horizon planners, with the node's default settings, reach seeded goals
on the simulated Panda: built by ``build_planner`` from ``ControllerSettings()`` exactly as the
planner process builds them, the policy applied at 250 Hz and replanned every 50 ms."""

import numpy as np
import pytest
import torch

from mbrl_ros.control.controller_settings import ControllerSettings
from mbrl_ros.control.disturbance import DisturbanceModel
from mbrl_ros.control.planners import build_planner
from mbrl_ros.dynamics.physics import PhysicsModel
from mbrl_ros.sim.arm import SimSettings, SimulatedArm
from mbrl_ros.sim.reach import random_reachable_goals, receding_horizon_reach

Q0 = np.array([0.0, -0.5, 0.0, -2.0, 0.0, 1.6, 0.8])


def _plan(planner, goal):
    planner.cost.set_ee_target(goal)

    def plan(x, t, executed):
        if isinstance(planner.model, DisturbanceModel):
            planner.model.observe(executed)
        return planner.optimize(x, t)

    return plan


@pytest.fixture(scope="module")
def physics():
    return PhysicsModel.from_robot("panda", dt_s=0.05)


@pytest.mark.parametrize("mode", ["ilqr", "mppi"])
def test_node_default_planner_reaches_seeded_goals_on_the_physics_model(physics, mode):
    torch.manual_seed(0)
    settings = ControllerSettings(mode=mode, model_source="physics").planner()
    goals = random_reachable_goals(physics, 3, seed=11, q0=Q0)
    with SimulatedArm(SimSettings(robot="panda")) as sim:
        for goal in goals:
            planner = build_planner(settings, physics, physics, Q0)
            run = receding_horizon_reach(sim, _plan(planner, goal), goal, steps=100, q0=Q0, until_settled_s=0.5)
            assert run.distances_m[0] > 0.05
            assert run.distances_m[-1] < 0.02, (mode, goal, run.distances_m[::10])
            assert run.nonfinite_torques == 0 and run.plan_failures == 0
