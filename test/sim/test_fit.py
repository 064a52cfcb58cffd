"""``mbrl-ros fit`` on bags of a simulated Panda: a foreign bag fits, bad bags fail clearly."""

import json
import subprocess

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.image import imread
from rosbags.rosbag2 import StoragePlugin, Writer

from mbrl_ros.cli import main
from mbrl_ros.data.bags import TYPESTORE
from mbrl_ros.dynamics import serialization
from mbrl_ros.launcher import executable_path

from _sim_recording import RecordingSettings, record_exploration

T = TYPESTORE.types
PANDA = [f"panda_joint{i}" for i in range(1, 8)]
STEPS = 40


@pytest.fixture(scope="module")
def foreign_bag(tmp_path_factory):
    """What ``ros2 bag record`` on someone else's arm holds: sqlite3, no trial markers, the joint
    states in another order than the URDF's; 20 trials of one exploring controller."""
    path = tmp_path_factory.mktemp("foreign") / "bag"
    record_exploration(path, RecordingSettings(
        trials=20, steps=STEPS, trials_per_iteration=20, noise_scale_rad_s2=2.0, storage="sqlite3",
        trial_markers=False, joint_order=tuple(reversed(PANDA))))
    return path


def fit(tmp_path, *args) -> tuple[int, dict | None]:
    out = tmp_path / "out"
    code = main(["fit", "--out", str(out), "--epochs", "30", *args])
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else None
    return code, report


@pytest.mark.parametrize("torque_source", ["commands", "effort"])
def test_a_foreign_sqlite3_bag_fits(foreign_bag, tmp_path, torque_source):
    code, report = fit(tmp_path, "--bag", str(foreign_bag), "--steps", str(STEPS), "--torque-source", torque_source)
    assert code == 0
    assert report["segmentation"]["episodes"] == 20 and report["segmentation"]["method"].startswith("fixed windows")
    assert len(report["split"]["holdout"]) == 4
    errors = report["evaluation"]["errors"]
    one_step = {name: errors[name]["1"] for name in errors}
    hold = one_step["hold_baseline"]
    for name, factor in (("tvlg_gmm_prior", 0.2), ("ensemble", 0.3)):
        assert one_step[name]["position_all_joints_rad"] < factor * hold["position_all_joints_rad"], name
        assert one_step[name]["velocity_all_joints_rad_s"] < factor * hold["velocity_all_joints_rad_s"], name
    # The URDF model of the simulated arm: velocities nearly exact (Euler substeps cost a little position).
    assert one_step["physics"]["velocity_all_joints_rad_s"] < 0.03 * hold["velocity_all_joints_rad_s"]
    assert one_step["physics"]["position_all_joints_rad"] < 0.2 * hold["position_all_joints_rad"]
    assert report["models"]["physics"]["gravity_compensated"] == (torque_source == "commands")
    assert set(errors["tvlg_gmm_prior"]) == {"1", "5", "20"}

    out = tmp_path / "out"
    tvlg, meta = serialization.load_tvlg(str(out / "tvlg_latest.safetensors"))
    assert tvlg.horizon_steps == STEPS and meta["joint_names"] == PANDA and meta["n_trials"] == 16
    ensemble, _ = serialization.load_ensemble(str(out / "ensemble_latest.safetensors"))
    assert (ensemble.nx, ensemble.nu) == (14, 7)
    image = imread(out / "prediction.png")
    assert image.shape[:2] == (828, 990), "11 x 9.2 in at 90 dpi: the 7 joints' plots in 4 rows"
    for colour in ("k", "C0", "C1", "C2", "C3"):  # the recorded positions, the four models' predictions
        assert (np.abs(image[..., :3] - to_rgb(colour)).max(axis=-1) < 0.05).sum() > 500, f"no {colour} line"


@pytest.fixture(scope="module")
def short_runs(tmp_path_factory):
    """A bag recorded elsewhere: six runs of 3 s with 2 s pauses, no trial markers (shorter than the
    default window of 100 x 0.05 s); and a second bag with one 0.3 s stretch of joint states."""
    folder = tmp_path_factory.mktemp("short_runs")
    record_exploration(folder / "runs", RecordingSettings(
        trials=6, steps=60, trials_per_iteration=6, pause_s=2.0, noise_scale_rad_s2=2.0, trial_markers=False))
    record_exploration(folder / "stretch", RecordingSettings(
        trials=1, steps=6, trials_per_iteration=1, trial_markers=False, start_s=200.0, seed=1))
    return folder


def test_runs_shorter_than_the_default_window_are_cut_into_the_longest_window_that_fits_every_run(short_runs, tmp_path, capsys):
    code, report = fit(tmp_path, "--bag", str(short_runs / "runs"))
    out = capsys.readouterr().out
    assert code == 0
    segmentation = report["segmentation"]
    assert (segmentation["steps"], segmentation["episodes"]) == (60, 6)
    window = segmentation["window"]
    assert window["chosen"] and window["requested_steps"] is None and window["default_steps"] == 100
    assert (window["runs"], window["run_steps_min"], window["run_steps_max"]) == (6, 60, 60)
    assert "the joint states' 6 run(s) between pauses hold 60 steps of 0.05 s each (3.00 s)" in window["reason"]
    assert "Using windows of 60 steps (3.00 s), the longest that fits every run: 6 episodes" in window["reason"]
    assert window["reason"] in out, "said in the output, not only in report.json"
    tvlg, _ = serialization.load_tvlg(str(tmp_path / "out" / "tvlg_latest.safetensors"))
    assert tvlg.horizon_steps == 60


def test_a_short_stretch_of_joint_states_does_not_shrink_the_chosen_window(short_runs, tmp_path, capsys):
    code, report = fit(tmp_path, "--bag", str(short_runs / "runs"), str(short_runs / "stretch"))
    assert code == 0
    window = report["segmentation"]["window"]
    assert (window["runs"], window["run_steps_min"], window["steps"]) == (7, 6, 60)
    assert report["segmentation"]["episodes"] == 6
    assert "from 6 of the 7 runs" in capsys.readouterr().out


def test_a_given_window_too_long_for_the_runs_is_refused_with_the_lengths_that_fit(short_runs, tmp_path, capsys):
    code, report = fit(tmp_path, "--bag", str(short_runs / "runs"), "--steps", "100")
    assert code == 1 and report is None
    err = capsys.readouterr().err.splitlines()[-1]  # after the progress bars
    assert err.startswith("mbrl-ros fit: windows of 100 x 0.05 s give 0 episode(s), a fit needs 3: ")
    assert "6 run(s) between pauses hold 60 steps of 0.05 s each (3.00 s); windows of 2 to 60 steps give enough" in err
    assert "try --steps 60, or leave --steps out to have the length chosen" in err


JOINT_STATE, COMMAND, STRING = "sensor_msgs/msg/JointState", "std_msgs/msg/Float64MultiArray", "std_msgs/msg/String"


def write_bag(path, topics: dict[str, tuple[str, list]]) -> None:
    """A sqlite3 bag of ``{topic: (message type, [(time s, message)])}``."""
    with Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        for topic, (msgtype, messages) in topics.items():
            connection = writer.add_connection(topic, msgtype, typestore=TYPESTORE)
            for t, msg in messages:
                writer.write(connection, int(t * 1e9), TYPESTORE.serialize_cdr(msg, msgtype))


def joint_state(t: float):
    stamp = T["builtin_interfaces/msg/Time"](sec=int(t), nanosec=int(round((t % 1) * 1e9)))
    return t, T[JOINT_STATE](header=T["std_msgs/msg/Header"](stamp=stamp, frame_id=""), name=PANDA,
                             position=np.zeros(7), velocity=np.zeros(7), effort=np.zeros(7))


def command(t: float, n: int):
    return t, T[COMMAND](layout=T["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0), data=np.zeros(n))


def test_bad_inputs_fail_with_a_message_naming_the_problem(tmp_path, capsys):
    def fails(*args) -> str:
        code, _ = fit(tmp_path, *args)
        assert code != 0
        return capsys.readouterr().err

    assert "no such bag: /no/such/bag" in fails("--bag", "/no/such/bag")

    write_bag(tmp_path / "no_states", {"/effort_controller/commands": (COMMAND, [command(1.0, 7)]),
                                       "/camera/status": (STRING, [(1.0, T[STRING](data="ok"))])})
    message = fails("--bag", str(tmp_path / "no_states"))
    assert "no /joint_states topic" in message
    assert "/camera/status (std_msgs/msg/String, 1 message)" in message and "/effort_controller/commands" in message

    times = np.arange(1.0, 2.0, 0.002)
    write_bag(tmp_path / "six_torques", {"/joint_states": (JOINT_STATE, [joint_state(t) for t in times]),
                                         "/effort_controller/commands": (COMMAND, [command(t, 6) for t in times[::2]])})
    assert "commands on /effort_controller/commands have [6] values, the arm has 7 joints" in fails(
        "--bag", str(tmp_path / "six_torques"))

    write_bag(tmp_path / "empty", {"/joint_states": (JOINT_STATE, [])})
    assert "the bag holds no messages (/joint_states (sensor_msgs/msg/JointState, 0 messages))" in fails("--bag", str(tmp_path / "empty"))


def test_a_truncated_mcap_bag_is_used_only_when_asked(tmp_path, capsys):
    bag = tmp_path / "run"
    _, n_messages = record_exploration(bag, RecordingSettings(trials=8, steps=20, storage="mcap"))
    mcap = next(bag.glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: int(0.7 * len(data))])

    code, _ = fit(tmp_path, "--bag", str(bag))
    assert code == 1
    message = capsys.readouterr().err
    assert "truncated" in message and "--allow-partial" in message
    readable = int(message.split("readable: ")[1].split(" messages")[0])
    assert 0.5 * n_messages < readable < 0.8 * n_messages

    code, report = fit(tmp_path, "--bag", str(bag), "--allow-partial")
    assert code == 0
    assert report["reading"]["messages"] == readable and "truncated" in report["reading"]["damaged_bags"][0]
    assert 3 <= report["segmentation"]["episodes"] < 8, "only the trials the readable part holds completely"


def test_the_command_exits_non_zero_without_a_traceback(tmp_path):
    empty = tmp_path / "empty"
    write_bag(empty, {})
    result = subprocess.run([executable_path("mbrl-ros"), "fit", "--bag", str(empty), "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "the bag holds no messages (no topics)" in result.stderr and "Traceback" not in result.stderr
