"""The controller's receding-horizon planners, with the node's default settings, reach seeded goals
on the simulated Panda: built by ``build_planner`` from ``ControllerSettings()`` exactly as the
planner process builds them, the policy applied at 250 Hz and replanned every 50 ms."""

import numpy as np
import pytest
import torch

from mbrl_ros.control.controller_settings import ControllerSettings
from mbrl_ros.control.planners import build_planner
from mbrl_ros.dynamics.kinematics import reachable_goals
from mbrl_ros.dynamics.physics import PhysicsModel
from mbrl_ros.sim.arm import SimSettings, SimulatedArm
from mbrl_ros.sim.reach import planner_callback, receding_horizon_reach

Q0 = np.array([0.0, -0.5, 0.0, -2.0, 0.0, 1.6, 0.8])


@pytest.fixture(scope="module")
def physics():
    return PhysicsModel.from_robot("panda", dt_s=0.05)


@pytest.mark.parametrize("mode, variant", [
    ("ilqr", {}), ("ilqr", {"ilqr_reuse_jacobians": True}), ("ilqr", {"ilqr_reuse_jacobians": False}),
    ("mppi", {}), ("mppi", {"mppi_rollout": "model"}), ("mppi", {"mppi_rollout": "linearized"}),
], ids=lambda v: v if isinstance(v, str) else ",".join(f"{k}={w}" for k, w in v.items()) or "default")
def test_node_default_planner_reaches_seeded_goals_on_the_physics_model(physics, mode, variant):
    torch.manual_seed(0)
    settings = ControllerSettings(mode=mode, model_source="physics", **variant).planner()
    goals = reachable_goals(physics.kinematics, Q0, 3, 11, from_center_m=(0.10, 0.35), limit_margin_rad=0.1)
    with SimulatedArm(SimSettings(robot="panda")) as sim:
        for goal in goals:
            planner = build_planner(settings, physics, physics, Q0)
            run = receding_horizon_reach(sim, planner_callback(planner, goal), goal, steps=100, q0=Q0, until_settled_s=0.5)
            assert run.distances_m[0] > 0.05
            assert run.distances_m[-1] < 0.02, (mode, variant, goal, run.distances_m[::10])
            assert run.nonfinite_torques == 0 and run.plan_failures == 0


def test_ilqr_reaches_with_plans_that_take_over_0_4_s_after_they_were_asked_for(physics):
    """As in the node: each plan made from the state predicted 0.4 s ahead under the plan in force,
    taking over then; the arm keeps the plan in force meanwhile."""
    settings = ControllerSettings(mode="ilqr", model_source="physics").planner()
    (goal,) = reachable_goals(physics.kinematics, Q0, 1, 11, from_center_m=(0.20, 0.35), limit_margin_rad=0.1)
    with SimulatedArm(SimSettings(robot="panda")) as sim:
        planner = build_planner(settings, physics, physics, Q0)
        calls = []

        def plan(x, t_s, executed, in_force=None, lead_s=0.0):
            calls.append((t_s, in_force is not None, lead_s))
            return planner_callback(planner, goal)(x, t_s, executed, in_force, lead_s)

        run = receding_horizon_reach(sim, plan, goal, steps=100, q0=Q0, latency_s=0.4)
    assert len(calls) == 100 // 8 + 1 and all(lead == pytest.approx(0.4) for _, _, lead in calls)
    assert [t for t, _, _ in calls[:3]] == pytest.approx([0.0, 0.4, 0.8]) and all(f for _, f, _ in calls[1:])
    assert run.distances_m[0] > 0.15 and run.distances_m[-20:].max() < 0.02, run.distances_m[::10]


def test_build_planner_honours_the_device(physics):
    from mbrl_ros.dynamics.ensemble import EnsembleDynamics, EnsembleSettings

    model = EnsembleDynamics(14, 7, 0.05, EnsembleSettings(n_members=2, n_elites=1, hidden_units=8, hidden_layers=1))
    planner = build_planner(ControllerSettings(mode="mppi").planner(), model, physics, Q0)
    assert planner.device.type == "cpu" and model.device.type == "cpu"
    from mbrl_ros.control.linearized import LinearizedRolloutModel

    assert isinstance(planner.model, LinearizedRolloutModel), "mppi_rollout: linearized (the default)"
    assert planner.model.base.model is model and planner.model.base.gain == ControllerSettings().disturbance_gain
    w = ControllerSettings().mppi_feedback_omega_rad_s
    np.testing.assert_allclose(planner.gains[0], -physics.mass_matrix(Q0) @ np.hstack([w**2 * np.eye(7), 2 * 0.9 * w * np.eye(7)]))
    np.testing.assert_allclose(planner.sigma.numpy(), ControllerSettings().mppi_noise_scale * np.sqrt(np.diag(
        physics.mass_matrix(Q0))), rtol=1e-6)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            build_planner(ControllerSettings(mode="mppi", device="cuda").planner(), model, physics, Q0)
