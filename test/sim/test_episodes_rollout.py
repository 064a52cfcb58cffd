"""Rollouts in the simulated arm produce valid episodes at the control period."""

import numpy as np
import pytest

from mbrl_ros.data.episodes import Episodes
from mbrl_ros.data.rollout import physics_steps_per_control_step, rollout, rollouts
from mbrl_ros.sim import SimSettings, SimulatedArm


def test_rollout_records_states_torques_and_times():
    with SimulatedArm(SimSettings(robot="panda", seed=0)) as arm:
        assert physics_steps_per_control_step(arm, 0.05) == 50
        with pytest.raises(ValueError):
            physics_steps_per_control_step(arm, 0.0505)
        big = np.array([200.0, 0, 0, 0, 50.0, 0, 0])
        ep = rollout(arm, lambda x, t: big if t == 0 else np.zeros(7), 10, 0.05, goal=[0.4, 0.1, 0.5])
        assert ep.x.shape == (1, 11, 14) and ep.u.shape == (1, 10, 7)
        np.testing.assert_allclose(ep.timestamps_s[0], np.arange(11) * 0.05, atol=1e-9)
        np.testing.assert_allclose(ep.u[0, 0], [87.0, 0, 0, 0, 12.0, 0, 0])  # clipped to the effort limits
        np.testing.assert_allclose(ep.x[0, 0, :7], arm.spec.home_positions_rad)
        assert ep.metadata["joint_names"][0] == "panda_joint1" and ep.metadata["dt_s"] == 0.05
        assert np.linalg.norm(np.asarray(ep.metadata["final_ee_positions_m"][0]) - arm.ee_position()) < 1e-12
        back = Episodes.from_arrays(*ep.to_arrays())
        np.testing.assert_array_equal(back.x, ep.x)
        with pytest.raises(ValueError, match="invalid torque"):
            rollout(arm, lambda x, t: np.full(7, np.nan), 3, 0.05)


def test_rollouts_are_seeded():
    def run():
        with SimulatedArm(SimSettings(robot="panda", seed=3, reset_noise_rad=0.01)) as arm:
            rng = np.random.default_rng(3)
            return rollouts(arm, lambda i: (lambda x, t: rng.normal(0, 1, 7)), 2, 5, 0.05)

    a, b = run(), run()
    np.testing.assert_array_equal(a.x, b.x)
    assert a.n_trials == 2 and len(a.metadata["final_ee_positions_m"]) == 2
