"""The simulated arm behaves like a torque-controlled arm: gravity, torque response, limits, reset."""

from dataclasses import fields

import numpy as np
import pytest

from mbrl_ros.arm_contract import COMMAND_TIMEOUT_S
from mbrl_ros.sim import ROBOTS, SIM_PARAMETERS, SimNodeSettings, SimSettings, SimulatedArm, robot_spec


@pytest.fixture
def arm():
    with SimulatedArm(SimSettings(emulate_gravity_compensation=False)) as a:
        yield a


@pytest.fixture
def compensated_arm():
    with SimulatedArm(SimSettings()) as a:
        yield a


def test_panda_defaults_match_the_urdf(compensated_arm):
    assert compensated_arm.nq == 7
    assert compensated_arm.gravity_compensated, "the Panda emulates FCI gravity compensation by default"
    np.testing.assert_allclose(compensated_arm.effort_limit_nm, [87, 87, 87, 87, 12, 12, 12])
    np.testing.assert_allclose(compensated_arm.state().position, [0.0, -0.5, 0.0, -2.0, 0.0, 1.6, 0.8])
    assert compensated_arm.dt_s == pytest.approx(1e-3)


def test_zero_torque_falls_under_gravity(arm):
    q0, ee0 = arm.state().position, arm.ee_position()
    state = arm.step(np.zeros(7), n_steps=300)
    assert np.abs(state.position - q0).max() > 0.05
    assert arm.ee_position()[2] < ee0[2] - 0.01, "the end effector drops"


def test_gravity_torque_holds_still(arm):
    q0 = arm.state().position
    for _ in range(1000):
        arm.step(arm.gravity_torque())
    assert arm.time_s == pytest.approx(1.0)
    assert np.abs(arm.state().position - q0).max() < 1e-3


def test_zero_command_holds_still_with_emulated_compensation(compensated_arm):
    q0 = compensated_arm.state().position
    state = compensated_arm.step(np.zeros(7), n_steps=1000)
    assert np.abs(state.position - q0).max() < 1e-3
    np.testing.assert_allclose(state.effort, compensated_arm.gravity_torque(), atol=1e-6)


@pytest.mark.parametrize("joint", [0, 3, 6])
def test_positive_torque_accelerates_its_joint_positively(compensated_arm, joint):
    q0 = compensated_arm.state().position
    tau = np.zeros(7)
    tau[joint] = 2.0
    state = compensated_arm.step(tau, n_steps=50)
    assert state.velocity[joint] > 0.05
    assert state.position[joint] > q0[joint]


def test_torques_are_clipped_to_the_effort_limits(arm):
    tau = np.array([500.0, -500.0, 0.0, 0.0, 50.0, -50.0, 0.0])
    state = arm.step(tau)
    np.testing.assert_allclose(state.effort[[0, 1, 4, 5]], [87.0, -87.0, 12.0, -12.0])


def test_total_torque_is_clipped_with_emulated_compensation(compensated_arm):
    limit = compensated_arm.effort_limit_nm
    g = compensated_arm.gravity_torque()
    state = compensated_arm.step(np.full(7, 1e4))
    # The command is clipped, g(q) added, and the motor total clipped again.
    np.testing.assert_allclose(state.effort, np.clip(limit + g, -limit, limit), atol=1e-9)
    assert np.all(np.abs(state.effort) <= limit)
    assert abs(g[3]) > 1.0, "joint 4 carries gravity load, so clipping after adding it matters"


def test_bad_torque_is_refused_and_changes_nothing(compensated_arm):
    before = compensated_arm.state()
    for bad in (np.zeros(6), np.array([np.nan] + [0.0] * 6), np.array([np.inf] + [0.0] * 6)):
        with pytest.raises(ValueError):
            compensated_arm.step(bad)
    after = compensated_arm.state()
    np.testing.assert_array_equal(after.position, before.position)
    assert after.time_s == before.time_s


def test_reset_restores_the_initial_configuration(arm):
    home = arm.state().position
    arm.step(np.zeros(7), n_steps=200)
    state = arm.reset()
    np.testing.assert_allclose(state.position, home, atol=1e-12)
    np.testing.assert_array_equal(state.velocity, np.zeros(7))
    assert state.time_s == 0.0


def test_reset_noise_is_seeded_and_reproducible():
    def noisy_resets(seed):
        with SimulatedArm(SimSettings(reset_noise_rad=0.05, seed=seed)) as a:
            return [a.reset().position for _ in range(3)]

    first, again, other = noisy_resets(3), noisy_resets(3), noisy_resets(4)
    np.testing.assert_array_equal(np.array(first), np.array(again))
    assert not np.allclose(first[0], other[0])
    assert not np.allclose(first[0], first[1]), "successive resets draw new noise"
    assert 0.005 < np.std(np.array(first) - np.array([0.0, -0.5, 0.0, -2.0, 0.0, 1.6, 0.8])) < 0.15


def test_joint_damping_slows_a_spinning_joint():
    def speed_after_coast(damping):
        with SimulatedArm(SimSettings(joint_damping_nms_per_rad=damping)) as a:
            tau = np.zeros(7)
            tau[0] = 5.0
            a.step(tau, n_steps=100)
            return a.step(np.zeros(7), n_steps=300).velocity[0]

    free, damped = speed_after_coast(0.0), speed_after_coast(2.0)
    assert damped < 0.7 * free


def test_iiwa_is_selectable_without_emulated_compensation():
    with SimulatedArm(SimSettings(robot="iiwa")) as a:
        assert a.nq == 7 and not a.gravity_compensated
        assert a.joint_names[0] == "lbr_iiwa_joint_1"
        q0 = a.state().position
        for _ in range(500):
            a.step(a.gravity_torque())
        assert np.abs(a.state().position - q0).max() < 1e-3


def test_settings_are_validated():
    with pytest.raises(ValueError, match=r"robot must be one of \['panda', 'iiwa'\], got 'ur5'"):
        SimSettings(robot="ur5")
    with pytest.raises(ValueError, match="reset_noise_rad must be in"):
        SimSettings(reset_noise_rad=-0.1)
    with pytest.raises(ValueError, match="initial_positions_rad"):
        SimSettings(initial_positions_rad=(0.0, 1.0))
    with pytest.raises(ValueError, match="physics_rate_hz"):
        SimSettings(physics_rate_hz=10.0)



def test_unset_settings_take_the_robots_own_start_pose_and_gravity_compensation():
    for robot in ROBOTS:
        settings = SimSettings(robot=robot)
        assert settings.initial_positions_rad == robot_spec(robot).home_positions_rad
        assert settings.emulate_gravity_compensation is robot_spec(robot).emulates_gravity_compensation
    assert SimSettings(robot="iiwa", emulate_gravity_compensation=True).gravity_compensated
    with SimulatedArm(SimSettings(robot="iiwa")) as arm:
        np.testing.assert_allclose(arm.reset().position, robot_spec("iiwa").home_positions_rad, atol=1e-12)


def test_the_sim_node_settings_describe_every_field_and_check_the_publish_rate():
    assert set(SIM_PARAMETERS) == {f.name for f in fields(SimNodeSettings)}
    settings = SimNodeSettings(physics_rate_hz=2000.0, publish_rate_hz=250.0)
    assert settings.steps_per_tick == 8 and settings.command_timeout_s == COMMAND_TIMEOUT_S
    with pytest.raises(ValueError, match="publish_rate_hz 300.0 must divide physics_rate_hz 1000.0"):
        SimNodeSettings(publish_rate_hz=300.0)
    with pytest.raises(ValueError, match="rt_priority must be in"):
        SimNodeSettings(rt_priority=100)
