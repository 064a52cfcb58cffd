"""Driving trials into a live sim_node and trajectory_recorder from a test, as the controller does:
trial markers, torques at 250 Hz, resets; and collecting the episodes the recorder publishes."""

import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from std_msgs.msg import UInt8MultiArray

from mbrl_ros.data.alignment import TrialMarker
from mbrl_ros.data.episodes import Episodes
from mbrl_ros.ros import payloads, qos
from mbrl_ros.ros.conversions import command_msg
from mbrl_ros.ros.diagnostics import status_values
from mbrl_ros.ros.spin import call_trigger, wait_for

JOINTS = tuple(f"panda_joint{i}" for i in range(1, 8))
DT_S = 0.05


class EpisodeCollector:
    """Every episode published on /mbrl/episodes, decoded, in arrival order."""

    def __init__(self, node) -> None:
        self.episodes: list[Episodes] = []
        self._lock = threading.Lock()
        node.create_subscription(UInt8MultiArray, "/mbrl/episodes", self._on_message, qos.EPISODES)

    def _on_message(self, msg) -> None:
        with self._lock:
            self.episodes.append(payloads.decode_episodes(msg))

    def count(self) -> int:
        with self._lock:
            return len(self.episodes)


def wait_until_recording(client_node, timeout_s: float = 30.0) -> bool:
    """True once the recorder reports joint states in its bag (it may discover the arm later than we do)."""
    recorded = []

    def on_diagnostics(msg) -> None:
        values = status_values(msg, "trajectory_recorder")
        if values:
            recorded.append(int(values["messages_in_bag"]))

    subscription = client_node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, qos.DIAGNOSTICS)
    try:
        return wait_for(lambda: bool(recorded) and recorded[-1] > 100, timeout_s)
    finally:
        client_node.destroy_subscription(subscription)


def reset_arm(client_node) -> None:
    response = call_trigger(client_node, "/sim_node/reset")
    assert response is not None and response.success


def run_trial(client_node, markers, commands, trial: int, torques: np.ndarray, iteration: int = 0,
              during=None) -> None:
    """One trial as the controller runs it: start marker, each step's torque at 250 Hz, end marker;
    ``during(step)``, if given, is called at each new step."""
    now = lambda: client_node.get_clock().now().nanoseconds * 1e-9  # noqa: E731
    start = now() + 0.1
    steps = len(torques)
    marker = TrialMarker("start", trial, iteration, start, DT_S, steps, (0.4, 0.0, 0.5), JOINTS, "test")
    markers.publish(payloads.trial_marker_msg(marker))
    step = -1
    while (t := now()) < marker.end_s:
        k = int((t - start) // DT_S)
        if k >= 0:
            commands.publish(command_msg(torques[k]))
            if during is not None and k != step:
                during(k)
            step = k
        time.sleep(0.004)
    end = TrialMarker("end", trial, marker.iteration, start, DT_S, steps, marker.goal, JOINTS, "test")
    markers.publish(payloads.trial_marker_msg(end))
