"""trajectory_recorder in its own process: trials from a live sim_node become bags and episodes."""

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from std_msgs.msg import Float64MultiArray, String, UInt8MultiArray

from mbrl_ros.data.alignment import TrialMarker
from mbrl_ros.data.bags import bag_topics, read_messages
from mbrl_ros.launcher import NodeSpec, config_path
from mbrl_ros.ros import payloads, qos
from mbrl_ros.ros.conversions import command_msg
from mbrl_ros.ros.diagnostics import status_values
from mbrl_ros.ros.spin import wait_for
from mbrl_ros.ros.topic_monitor import TopicMonitor

JOINTS = tuple(f"panda_joint{i}" for i in range(1, 8))
DT_S, STEPS = 0.05, 10


@pytest.fixture(scope="module")
def system(start_node, client_node, tmp_path_factory):
    bag_dir = tmp_path_factory.mktemp("bags")
    start_node(NodeSpec("sim_node", params_file=str(config_path("sim_panda"))))
    start_node(NodeSpec("trajectory_recorder", parameters={"bag_dir": str(bag_dir), "storage": "mcap"}))
    episodes = TopicMonitor(client_node, UInt8MultiArray, "/mbrl/episodes", qos.EPISODES)
    markers = client_node.create_publisher(String, "/mbrl/trial", qos.TRIAL_MARKERS)
    commands = client_node.create_publisher(Float64MultiArray, "effort_controller/commands", qos.COMMANDS_PUB)
    assert wait_for(lambda: commands.get_subscription_count() >= 2 and markers.get_subscription_count() >= 1, 30.0)
    # Matched is not yet receiving: a trial before the recorder hears the arm would lack its states.
    recorder: dict[str, str] = {}
    client_node.create_subscription(
        DiagnosticArray, "/diagnostics", lambda m: recorder.update(status_values(m, "trajectory_recorder")), qos.DIAGNOSTICS
    )
    assert wait_for(lambda: int(recorder.get("messages_in_bag", 0)) > 0, 30.0), "the recorder hears /joint_states"
    return bag_dir, episodes, markers, commands


def step_torque(k: int) -> np.ndarray:
    torque = np.zeros(7)
    torque[0] = 0.5 * (k % 3)
    torque[5] = -0.2 * (k % 2)
    return torque


def test_a_trial_becomes_an_aligned_episode_and_a_bag(system, client_node):
    bag_dir, episodes, markers, commands = system
    start = client_node.get_clock().now().nanoseconds * 1e-9 + 0.1
    marker = TrialMarker("start", 1, 0, start, DT_S, STEPS, (0.4, 0.0, 0.5), JOINTS, "test")
    markers.publish(payloads.trial_marker_msg(marker))
    while (now := client_node.get_clock().now().nanoseconds * 1e-9) < marker.end_s:
        k = int((now - start) // DT_S)
        if k >= 0:
            commands.publish(command_msg(step_torque(k)))
        time.sleep(0.004)
    markers.publish(payloads.trial_marker_msg(TrialMarker("end", 1, 0, start, DT_S, STEPS, marker.goal, JOINTS, "test")))
    assert wait_for(lambda: episodes.count >= 1, 10.0), "the recorder publishes the episode"

    episode = payloads.decode_episodes(episodes.latest)
    assert episode.x.shape == (1, STEPS + 1, 14) and episode.u.shape == (1, STEPS, 7)
    expected = np.stack([step_torque(k) for k in range(STEPS)])
    matches = np.all(np.abs(episode.u[0] - expected) < 1e-12, axis=1)
    assert matches.sum() >= STEPS - 1, f"torques are the commands in force mid-step:\n{episode.u[0]}"
    assert episode.metadata["trial"] == 1 and episode.metadata["joint_names"] == list(JOINTS)
    assert episode.x[0, -1, 0] > episode.x[0, 0, 0], "joint 1 turned under the positive torques"

    bag = episode.metadata["bag"]
    assert bag and bag.startswith(str(bag_dir))
    topics = bag_topics([bag])
    assert set(topics) == {"/joint_states", "/effort_controller/commands", "/mbrl/trial"}
    counts = {}
    for topic, _, _ in read_messages([bag], list(topics)):
        counts[topic] = counts.get(topic, 0) + 1
    assert counts["/joint_states"] > 0.8 * 250 * STEPS * DT_S
    assert counts["/effort_controller/commands"] > 0.8 * STEPS * DT_S / 0.004 * 0.5
    assert counts["/mbrl/trial"] == 2
