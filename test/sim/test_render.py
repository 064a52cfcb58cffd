"""Headless frames of a recorded reach: the simulated Panda driven by a PD to a configuration, its
joint trajectory sampled as the demo samples /joint_states, replayed into a GIF."""

import numpy as np
import pytest
from PIL import Image, ImageSequence

from mbrl_ros.dynamics.kinematics import ArmKinematics, load_arm_model
from mbrl_ros.sim import SimSettings, SimulatedArm
from mbrl_ros.sim.render import GOAL_RGB, Clip, RenderSettings, frame_times, render_reaches

TARGET_RAD = np.array([0.6, 0.2, 0.0, -1.6, 0.0, 1.9, 0.8])


@pytest.fixture(scope="module")
def reach():
    """2 s of a mass-matrix PD reach, sampled every 50 ms; the goal is where it ends up."""
    with SimulatedArm(SimSettings()) as arm:
        M = arm.mass_matrix()
        times, positions = [], []
        for _ in range(40):
            state = arm.state()
            times.append(state.time_s)
            positions.append(state.position)
            arm.step(M @ (25.0 * (TARGET_RAD - state.position) - 10.0 * state.velocity), 50)
    goal = tuple(ArmKinematics(load_arm_model("panda")).ee_position(TARGET_RAD[None])[0])
    return Clip("pd to the goal", goal, np.asarray(times), np.asarray(positions))


def goal_pixels(frame: np.ndarray) -> int:
    return int((np.abs(frame.astype(int) - GOAL_RGB).max(axis=-1) < 40).sum())


def test_the_reach_renders_to_a_gif_whose_frames_show_the_arm_moving_and_the_goal(reach, tmp_path):
    settings = RenderSettings(fps=4.0)
    report = render_reaches("panda", [reach, Clip("again", reach.goal_m, reach.times_s[:8], reach.positions_rad[:8])],
                            tmp_path / "reach.gif", settings)
    with Image.open(report.path) as gif:
        assert gif.format == "GIF"
        frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(gif)]
    expected = len(frame_times(reach.times_s, 4.0)) + len(frame_times(reach.times_s[:8], 4.0))
    assert len(frames) == report.frames == expected >= 8
    assert frames[0].shape == (240, 320, 3)
    # The arm moves: consecutive frames of the first clip differ by many pixels, more early on.
    changed = [int((np.abs(a.astype(int) - b).max(axis=-1) > 30).sum()) for a, b in zip(frames, frames[1:])]
    assert changed[0] > 500, changed
    assert (np.abs(frames[0].astype(int) - frames[expected - 9]).max(axis=-1) > 30).sum() > 2000
    # The goal is in every frame, also where the gripper reaches it.
    assert all(goal_pixels(f) >= 20 for f in frames), [goal_pixels(f) for f in frames]
    assert report.render_s < 30.0 and report.size_bytes > 0


def test_frames_are_taken_every_period_of_recorded_time_including_the_last_sample():
    times = np.arange(0.0, 2.001, 0.05)
    idx = frame_times(times, 4.0)
    assert np.allclose(times[idx], [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0])


def test_a_clip_whose_joints_do_not_match_the_robot_is_refused(reach, tmp_path):
    bad = Clip("bad", reach.goal_m, reach.times_s, reach.positions_rad[:, :6])
    with pytest.raises(ValueError, match="7 joints"):
        render_reaches("panda", [bad], tmp_path / "bad.gif")
