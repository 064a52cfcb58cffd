"""One place builds a planner: PlannerSettings covers every planner field of ControllerSettings."""

from dataclasses import fields, replace

import pytest

from mbrl_ros.control.controller_settings import PARAMETERS, ControllerSettings

# Fields that change what a receding-horizon planner computes (the planner process rebuilds it).
PLANNER_FIELDS = {
    "mode": "mppi", "model_source": "physics", "horizon_steps": 20, "ilqr_max_iterations": 3, "mppi_samples": 64,
    "mppi_iterations": 2, "mppi_temperature": 0.5, "mppi_noise_scale": 2.0, "mppi_noise_smoothing": 0.2,
    "mppi_feedback_omega_rad_s": 4.0, "device": "cuda", "ee_weight": 1.0, "ee_weight_terminal": 10.0,
    "effort_weight": 0.1, "mpc_velocity_weight": 0.1, "velocity_weight_terminal": 1.0, "disturbance_gain": 0.5,
    "seed": 3, "goal_xyz_m": (0.4, 0.1, 0.5),
}


@pytest.mark.parametrize("name", sorted(PLANNER_FIELDS))
def test_every_planner_field_changes_the_planner_settings(name):
    base = ControllerSettings(mode="ilqr")
    changed = base.replace(**{name: PLANNER_FIELDS[name]})
    assert changed.planner() != base.planner()
    assert hash(changed.planner()) is not None


def test_planner_settings_are_hashable_and_follow_final_mode():
    s = ControllerSettings(mode="lqr_flm", final_mode="mppi")
    assert s.planner().mode == "mppi" and s.replace(mode="ilqr").planner().mode == "ilqr"
    assert len({s.planner(), ControllerSettings(mode="lqr_flm", final_mode="mppi").planner()}) == 1


def test_controller_cost_defaults_are_the_cost_settings_defaults():
    from mbrl_ros.control.costs import CostSettings

    cost = ControllerSettings().cost()
    assert replace(cost, ee_target_m=None) == CostSettings()


def test_every_field_is_described():
    assert set(PARAMETERS) == {f.name for f in fields(ControllerSettings)}
