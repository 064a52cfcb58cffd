"""trajectory_recorder: records the arm's streams into rosbag2 bags and cuts them into episodes.

Subscribes (raw, so bags hold the bytes exactly as received) to ``joint_states``, the torque
command topic and the controller's trial markers (``/mbrl/trial``). Every trial becomes one bag
segment ``<bag_dir>/<start>_trial_<n>``, cut at the trial's end by log time (a crash loses at most
the trial in progress), and one episode, aligned to the controller's period, published on
``/mbrl/episodes``.
"""

from __future__ import annotations

import time
from datetime import datetime

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rclpy.qos import ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rclpy.subscription import MessageInfo
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String, UInt8MultiArray

from mbrl_ros.data.alignment import CommandStream, StateStream, TrialMarker, align_trial, joint_index
from mbrl_ros.data.bags import SegmentedBagWriter, TopicSpec
from mbrl_ros.data.bags import qos as bag_qos
from mbrl_ros.ros import payloads, qos
from mbrl_ros.ros.conversions import InvalidMessage
from mbrl_ros.ros.diagnostics import diagnostic_array, status
from mbrl_ros.ros.params import declare
from mbrl_ros.ros.spin import run_node

#: Stream history kept when no trial is in progress (s).
_IDLE_HISTORY_S = 5.0
#: How long (log time) messages wait before being written, so a trial's bag can be cut at its end
#: even when the recorder handles messages late and out of order. CI saw a 170 ms backlog.
_BAG_HOLD_S = 1.0


class TrajectoryRecorder(Node):
    def __init__(self) -> None:
        super().__init__("trajectory_recorder")
        bag_dir = declare(self, "bag_dir", "mbrl_bags", "Folder receiving one bag per trial.", read_only=True)
        storage = declare(self, "storage", "mcap", "Bag storage: mcap or sqlite3.", read_only=True)
        self._command_timeout_s = declare(
            self, "command_timeout_s", 0.05, "The arm's command timeout (s): older commands count as zero torque.",
            low=0.001, high=10.0,
        )
        self._topics = {
            "joint_states": self.resolve_topic_name("joint_states"),
            "commands": self.resolve_topic_name("effort_controller/commands"),
            "trial": self.resolve_topic_name("/mbrl/trial"),
        }
        self._writer = SegmentedBagWriter(
            bag_dir,
            [
                TopicSpec(self._topics["joint_states"], "sensor_msgs/msg/JointState", bag_qos(reliable=True, depth=10)),
                TopicSpec(self._topics["commands"], "std_msgs/msg/Float64MultiArray", bag_qos(reliable=True, depth=1)),
                TopicSpec(self._topics["trial"], "std_msgs/msg/String", bag_qos(reliable=True, depth=10, transient_local=True)),
            ],
            storage=storage,
            hold_s=_BAG_HOLD_S,
        )
        self._last_log_ns: dict[str, int] = {}
        self._session = datetime.now().strftime("%Y%m%d_%H%M%S")
        self._states: list[tuple[float, tuple[str, ...], np.ndarray, np.ndarray]] = []
        self._commands: list[tuple[float, np.ndarray]] = []
        self._open_trials: dict[int, TrialMarker] = {}
        self._ended: dict[TrialMarker, int] = {}  # ended trials not yet cut -> their end marker's log time
        self._counts = {"episodes": 0, "rejected_messages": 0, "failed_trials": 0, "bags": 0}

        self._episode_pub = self.create_publisher(UInt8MultiArray, "/mbrl/episodes", qos.EPISODES)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", qos.DIAGNOSTICS)
        # Reliable, and created first: the executor serves ready subscriptions in creation order, so
        # a joint state that ends a trial closes its bag before later commands are written into it.
        self.create_subscription(JointState, "joint_states", self._on_joint_state, qos.JOINT_STATES_RECORD, raw=True)
        self._best_effort_check = self.create_timer(1.0, self._warn_about_best_effort_publishers)
        self.create_subscription(
            Float64MultiArray, "effort_controller/commands", self._on_command, qos.COMMANDS_RECORD, raw=True
        )
        self.create_subscription(String, "/mbrl/trial", self._on_trial, qos.TRIAL_MARKERS, raw=True)
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info(f"recording {sorted(self._topics.values())} into {bag_dir} ({storage}), one bag per trial")

    def _warn_about_best_effort_publishers(self) -> None:
        """A reliable subscription receives nothing from a best-effort publisher: say so, once."""
        publishers = self.get_publishers_info_by_topic(self._topics["joint_states"])
        if any(p.qos_profile.reliability != ReliabilityPolicy.RELIABLE for p in publishers):
            self.get_logger().error("a /joint_states publisher is best effort: the recorder (reliable) does not receive it")
            self.destroy_timer(self._best_effort_check)

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _record(self, key: str, raw: bytes, info: MessageInfo) -> int:
        """Write a message to the bag logged at the time it was sent, not at the time a busy
        recorder got to it from its queue (the wait, measured on the system clock, is taken off
        our clock); returns that log time (ns)."""
        waited_ns = max(0, time.time_ns() - info["source_timestamp"])
        # Never negative (sim time reads 0 before the first /clock), and never before the topic's
        # previous message: sim time advances in /clock steps while the wait is continuous, so
        # joint states 2 ms apart swapped places in the bag and in a replay of it (measured without
        # this: 335 of 22,362 in test_learning_system's bags).
        log_ns = max(0, self.get_clock().now().nanoseconds - waited_ns, self._last_log_ns.get(key, -1) + 1)
        self._last_log_ns[key] = log_ns
        self._writer.write(self._topics[key], log_ns, raw)
        return log_ns

    def _reject(self, what: str, err: Exception) -> None:
        self._counts["rejected_messages"] += 1
        self.get_logger().warn(f"rejected {what}: {err}", throttle_duration_sec=1.0)

    def _on_joint_state(self, raw: bytes, info: MessageInfo) -> None:
        self._record("joint_states", raw, info)
        msg = deserialize_message(raw, JointState)
        position, velocity = np.asarray(msg.position), np.asarray(msg.velocity)
        if position.shape != (len(msg.name),) or velocity.shape != position.shape:
            return self._reject("joint state", ValueError("names, position and velocity differ in length"))
        if not (np.all(np.isfinite(position)) and np.all(np.isfinite(velocity))):
            return self._reject("joint state", ValueError("non-finite values"))
        t = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        self._states.append((t, tuple(msg.name), position, velocity))
        self._finish_ended_trials(t)
        self._prune(t)

    def _on_command(self, raw: bytes, info: MessageInfo) -> None:
        stamp_ns = self._record("commands", raw, info)  # commands carry no stamp: their log time is it
        torque = np.asarray(deserialize_message(raw, Float64MultiArray).data)
        if not np.all(np.isfinite(torque)):
            return self._reject("command", ValueError("non-finite values"))
        self._commands.append((stamp_ns * 1e-9, torque))

    def _on_trial(self, raw: bytes, info: MessageInfo) -> None:
        log_ns = self._record("trial", raw, info)
        try:
            marker = payloads.decode_trial_marker(deserialize_message(raw, String))
        except InvalidMessage as err:
            return self._reject("trial marker", err)
        if marker.event == "start":
            self._open_trials[marker.trial] = marker
        else:
            self._open_trials.pop(marker.trial, None)
            if marker.event == "end":  # an aborted trial's torques are not its controller's: no episode
                self._ended[marker] = log_ns

    def _finish_ended_trials(self, latest_state_s: float) -> None:
        """Align every ended trial whose states are complete (a state at or after its end)."""
        ready = [m for m in self._ended if latest_state_s >= m.end_s]
        for marker in ready:
            marker_log_ns = self._ended.pop(marker)
            try:
                episode = align_trial(self._state_stream(marker), self._command_stream(marker), marker, self._command_timeout_s)
            except ValueError as err:
                self._counts["failed_trials"] += 1
                self.get_logger().error(f"trial {marker.trial} not usable: {err}")
                continue
            # The bag holds everything logged up to the trial's end, its end marker included.
            bag = self._writer.close_segment(
                f"{self._session}_trial_{marker.trial:04d}", until_ns=max(round(marker.end_s * 1e9), marker_log_ns)
            )
            if bag is not None:
                self._counts["bags"] += 1
            episode.metadata["bag"] = str(bag) if bag else ""
            self._episode_pub.publish(payloads.encode_episodes(episode))
            self._counts["episodes"] += 1
            self.get_logger().info(f"trial {marker.trial} (iteration {marker.iteration}): episode published, bag {bag}")

    def _state_stream(self, marker: TrialMarker) -> StateStream:
        names = marker.joint_names
        rows = [s for s in self._states if marker.start_s - 1.0 <= s[0] <= marker.end_s + 1.0]
        index_by_names: dict[tuple[str, ...], np.ndarray] = {}
        t, q, qd = [], [], []
        for stamp, msg_names, position, velocity in rows:
            if msg_names not in index_by_names:
                index_by_names[msg_names] = joint_index(msg_names, names) if names else np.arange(len(msg_names))
            idx = index_by_names[msg_names]
            t.append(stamp)
            q.append(position[idx])
            qd.append(velocity[idx])
        return StateStream(np.asarray(t), np.asarray(q), np.asarray(qd))

    def _command_stream(self, marker: TrialMarker) -> CommandStream:
        n = len(marker.joint_names)
        rows = [
            c for c in self._commands
            if marker.start_s - 1.0 <= c[0] <= marker.end_s + 1.0 and (not n or c[1].size == n)
        ]
        if not rows:
            return CommandStream(np.zeros(0), np.zeros((0, n)))
        return CommandStream(np.array([c[0] for c in rows]), np.stack([c[1] for c in rows]))

    def _prune(self, now_s: float) -> None:
        pending = [m.start_s for m in (*self._open_trials.values(), *self._ended)]
        keep_from = (min(pending) if pending else now_s - _IDLE_HISTORY_S) - 1.0
        if self._states and self._states[0][0] < keep_from - 1.0:
            self._states = [s for s in self._states if s[0] >= keep_from]
            self._commands = [c for c in self._commands if c[0] >= keep_from]

    def _publish_diagnostics(self) -> None:
        level = DiagnosticStatus.WARN if self._counts["failed_trials"] or self._counts["rejected_messages"] else DiagnosticStatus.OK
        values = {**self._counts, "open_trials": len(self._open_trials), "messages_in_bag": self._writer.messages_in_segment}
        self._diag_pub.publish(
            diagnostic_array(
                self.get_clock().now().to_msg(), status("trajectory_recorder", "", level, "recording", values)
            )
        )

    def shutdown(self) -> None:
        bag = self._writer.close_segment(f"{self._session}_tail")
        if bag is not None:
            self.get_logger().info(f"closed {bag}")


def main(args=None) -> None:
    # rclpy's events executor cannot pass a callback its MessageInfo (it raises SystemError), and
    # the recorder logs every message at its send time, which only MessageInfo gives.
    run_node(TrajectoryRecorder, args, events_executor=False)


if __name__ == "__main__":
    main()
