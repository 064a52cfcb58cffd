"""The whole system, four processes, learning to reach from no model on a short seeded budget, then
handing over to iLQR where the last trial ended; the bags it wrote are read back with rosbags."""

import json

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.image import imread

from mbrl_ros.data.alignment import TrialMarker
from mbrl_ros.data.bag_episodes import episodes_from_streams, read_streams
from mbrl_ros.data.bags import bag_topics, read_messages
from mbrl_ros.demo import DemoSettings, run_demo

ITERATIONS, TRIALS, STEPS = 5, 3, 60
HOLD_S = 5.0


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    return run_demo(DemoSettings(
        iterations=ITERATIONS, trials_per_iteration=TRIALS, trial_steps=STEPS, hold_s=HOLD_S, timeout_s=400.0,
        runs_dir=str(tmp_path_factory.mktemp("runs")), reach_planners=("ilqr",), reach_goals=1, reach_s=8.0,
        # No ensemble on this budget: the final mode plans on the URDF model (make demo: the learned one).
        extra={"dynamics_learner": {"ensemble_enabled": False}, "mpc_controller": {"model_source": "physics"}},
    ))


def test_the_arm_learns_to_reach_over_ros(summary):
    rows = summary["iterations"]
    assert len(rows) == ITERATIONS, f"only {len(rows)} iterations completed"
    first, last = rows[0]["mean_final_distance_m"], rows[-1]["mean_final_distance_m"]
    assert last <= 0.5 * first, f"final distance {last * 100:.1f} cm is not half of the first {first * 100:.1f} cm"
    assert all(r["trials"] == TRIALS for r in rows)
    assert [r["iteration"] for r in rows] == list(range(ITERATIONS))


def test_the_final_mode_takes_over_where_the_last_trial_ended(summary):
    last, hold = summary["iterations"][-1], summary["hold"]
    # Not reset to the start (as far as the first iteration ended): the last trial's controller held
    # the arm until the first plan.
    assert hold["start_distance_m"] <= max(last["final_distances_m"]) + 0.02, (
        f"iLQR took over at {hold['start_distance_m'] * 100:.1f} cm; the last trials ended at "
        f"{np.round(np.asarray(last['final_distances_m']) * 100, 1).tolist()} cm")
    assert hold["final_distance_m"] < 0.01, f"iLQR on the URDF model holds at {hold['final_distance_m'] * 100:.2f} cm"


def test_after_learning_the_arm_is_reset_and_reaches_the_goal_within_2_cm(summary):
    (reach,) = summary["goal_reaches"]
    assert np.linalg.norm(np.asarray(reach["goal_m"]) - summary["goal_m"]) >= 0.1
    assert reach["time_to_2cm_s"] is not None, reach


def test_after_learning_the_arm_is_reset_and_stays_at_a_goal_no_trial_trained_on(summary):
    (reach,) = summary["goal_reaches"]
    assert reach["distance_at_end_m"] < 0.02, reach


def test_every_trial_bag_reads_back_with_its_messages(summary):
    from pathlib import Path

    bags = [Path(summary["run_dir"]) / "bags" / name for name in summary["bags"] if "_trial_" in name]
    assert len(bags) >= ITERATIONS * TRIALS
    for bag in bags:
        assert set(bag_topics([bag])) == {"/joint_states", "/effort_controller/commands", "/mbrl/trial"}
        stamps, markers = {"/joint_states": [], "/effort_controller/commands": []}, []
        for topic, log_ns, msg in read_messages([bag], ["/joint_states", "/effort_controller/commands", "/mbrl/trial"]):
            if topic == "/mbrl/trial":
                markers.append(TrialMarker.from_json(msg.data))
            elif topic == "/joint_states":
                stamps[topic].append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
            else:
                stamps[topic].append(log_ns * 1e-9)
        trial = int(bag.name.rsplit("_", 1)[1])
        end = next(m for m in markers if m.event == "end" and m.trial == trial)
        # Joint states must be complete (the recorder loses nothing). Commands must span the trial;
        # their spacing measures the controller's timing, which bench/control_loop.py reports.
        t = np.asarray(stamps["/joint_states"])
        inside = t[(t >= end.start_s) & (t <= end.end_s)]
        assert inside[0] - end.start_s <= end.dt_s and end.end_s - inside[-1] <= end.dt_s, f"{bag.name}: states cut"
        assert np.diff(inside).max() <= end.dt_s, f"{bag.name}: joint states have a gap of {np.diff(inside).max():.3f} s"
        c = np.asarray(stamps["/effort_controller/commands"])
        assert c.min() <= end.start_s + 0.1 and c.max() >= end.end_s - 0.1, f"{bag.name}: commands do not span the trial"
        (episode,) = episodes_from_streams(read_streams([bag]), end.dt_s, end.steps)
        assert episode.x.shape == (1, STEPS + 1, 14) and episode.metadata["trial"] == trial


def test_the_run_folder_holds_the_curve_and_a_summary_that_matches(summary):
    from pathlib import Path

    run_dir = Path(summary["run_dir"])
    image = imread(run_dir / "learning_curve.png")
    assert image.shape[:2] == (400, 1000), "10 x 4 in at 100 dpi"
    # The iterations' distances and costs (C0), the 3 cm line, the hold's distance when there was one.
    colours = ("C0", "red") + (("green",) if summary["hold"]["final_distance_m"] is not None else ())
    for colour in colours:
        assert (np.abs(image[..., :3] - to_rgb(colour)).max(axis=-1) < 0.05).sum() > 200, f"no {colour} line"
    on_disk = json.loads((run_dir / "summary.json").read_text())
    assert on_disk["iterations"] == summary["iterations"]
    assert any(name.startswith("tvlg_v") for name in on_disk["models"])
    assert on_disk["joint_states_rate_hz"] > 150.0, "the demo reports the /joint_states rate it saw (sim: 250 Hz)"


def test_the_reaches_are_rendered_into_a_gif_in_the_run_folder(summary):
    from pathlib import Path

    from PIL import Image

    video = summary["video"]
    assert Path(video["path"]) == Path(summary["run_dir"]) / "reaches.gif"
    with Image.open(video["path"]) as gif:
        assert gif.format == "GIF" and gif.n_frames == video["frames"] >= 8 * 5 * 0.8  # 8 s at 5 fps
    assert video["render_s"] < 60.0
