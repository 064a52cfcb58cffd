"""Episodes from bags written independently of our recorder (rosbags directly, sqlite3, another
joint order)."""

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

from mbrl_ros.data.alignment import TrialMarker
from mbrl_ros.data.bag_episodes import BagTopics, episodes_from_streams, read_streams
from mbrl_ros.data.bags import TYPESTORE, BagError

T = TYPESTORE.types
NAMES = ["j1", "j2", "j3"]
DT_S, STEPS = 0.05, 10


def q_of(t):
    return np.array([np.sin(t), 0.5 * t, -t])


def qd_of(t):
    return np.array([np.cos(t), 0.5, -1.0])


def u_of(t):
    return np.array([1.0, 2.0, 3.0]) * np.floor((t - 1.0) / DT_S + 1e-9)


def write_bag(path, storage=StoragePlugin.SQLITE3, markers=True, command_size=3, trial_number=7, trial_start_s=1.0):
    """1 kHz joint states in the order j3, j1, j2; commands at 250 Hz; optional trial markers."""
    with Writer(path, version=9, storage_plugin=storage) as w:
        js = w.add_connection("/joint_states", "sensor_msgs/msg/JointState", typestore=TYPESTORE)
        cmd = w.add_connection("/effort_controller/commands", "std_msgs/msg/Float64MultiArray", typestore=TYPESTORE)
        trial = w.add_connection("/mbrl/trial", "std_msgs/msg/String", typestore=TYPESTORE) if markers else None
        order = [2, 0, 1]
        for i, t in enumerate(np.arange(0.9, 2.2, 0.001)):
            ns = int(round(t * 1e9))
            if trial and i == 0:
                for event in ("start", "end"):
                    m = TrialMarker(event, trial_number, 2, trial_start_s, DT_S, STEPS, (0.1, 0.2, 0.3), tuple(NAMES), "other")
                    w.write(trial, ns, TYPESTORE.serialize_cdr(T["std_msgs/msg/String"](data=m.to_json()), "std_msgs/msg/String"))
            msg = T["sensor_msgs/msg/JointState"](
                header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9), frame_id=""),
                name=[NAMES[j] for j in order], position=q_of(t)[order], velocity=qd_of(t)[order], effort=np.zeros(3),
            )
            w.write(js, ns, TYPESTORE.serialize_cdr(msg, "sensor_msgs/msg/JointState"))
            if i % 4 == 0 and t >= 1.0:
                layout = T["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
                data = np.resize(u_of(t), command_size)
                w.write(cmd, ns, TYPESTORE.serialize_cdr(T["std_msgs/msg/Float64MultiArray"](layout=layout, data=data), "std_msgs/msg/Float64MultiArray"))


def test_trials_from_markers_in_an_independent_sqlite3_bag(tmp_path):
    write_bag(tmp_path / "bag")
    streams = read_streams([tmp_path / "bag"], joint_names=NAMES)
    assert streams.joint_names == tuple(NAMES)
    (ep,) = episodes_from_streams(streams, DT_S, STEPS)
    times = 1.0 + DT_S * np.arange(STEPS + 1)
    np.testing.assert_allclose(ep.x[0, :, :3], np.stack([q_of(t) for t in times]), atol=1e-5)
    np.testing.assert_allclose(ep.x[0, :, 3:], np.stack([qd_of(t) for t in times]), atol=1e-5)
    np.testing.assert_allclose(ep.u[0], np.stack([u_of(t + 0.5 * DT_S) for t in times[:-1]]))
    assert ep.metadata["trial"] == 7 and ep.metadata["iteration"] == 2


def test_fixed_windows_without_markers(tmp_path):
    write_bag(tmp_path / "bag", storage=StoragePlugin.MCAP, markers=False)
    streams = read_streams([tmp_path / "bag"], joint_names=NAMES)
    episodes = episodes_from_streams(streams, DT_S, STEPS)
    assert len(episodes) == 2  # 1.3 s of data holds two 0.5 s windows
    assert all(e.x.shape == (1, STEPS + 1, 6) for e in episodes)


def test_bad_bags_give_clear_errors(tmp_path):
    write_bag(tmp_path / "bag", command_size=4)
    with pytest.raises(BagError, match=r"have \[4\] values, the arm has 3 joints"):
        read_streams([tmp_path / "bag"])
    with pytest.raises(BagError, match=r"no /arm/joint_states topic .*JointState is on /joint_states\. It has: /effort"):
        read_streams([tmp_path / "bag"], BagTopics(joint_states="/arm/joint_states"))
    with pytest.raises(BagError, match="'jx'"):
        read_streams([tmp_path / "bag"], joint_names=["j1", "jx"])


def test_bags_of_two_runs_on_the_same_clock_are_refused(tmp_path):
    write_bag(tmp_path / "run_a", trial_number=1)
    write_bag(tmp_path / "run_b", trial_number=1, trial_start_s=1.02)  # another sim run: its clock also started at 0
    streams = read_streams([tmp_path / "run_a", tmp_path / "run_b"], joint_names=NAMES)
    with pytest.raises(BagError, match="overlap in time: the bags hold more than one run"):
        episodes_from_streams(streams, DT_S, STEPS)
