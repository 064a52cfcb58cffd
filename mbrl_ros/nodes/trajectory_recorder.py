"""trajectory_recorder: records the arm's streams into rosbag2 bags and cuts them into episodes.

Subscribes (raw, so bags hold the bytes exactly as received) to ``joint_states``, the torque
command topic and the controller's trial markers (``/mbrl/trial``). Every trial that gives an
episode becomes one bag segment ``<bag_dir>/<recorder start>_trial_<n>``, cut at the trial's end by
log time (a crash loses at most the trial in progress), and one episode, aligned to the
controller's period, published on ``/mbrl/episodes``; an aborted or unusable trial's messages go
into the next segment. Which messages make a trial, and when it is complete, is the ROS-free
:class:`~mbrl_ros.data.trial_assembly.TrialAssembler`'s business; this node logs every message,
checks and decodes it, hands it over, and cuts and publishes what comes back. Malformed joint
states, non-finite commands and malformed markers are logged (a bag holds what was received) but
counted and not used; a bag that cannot be written (a full disk) is logged and counted (``write_errors``,
``last_write_error``, ``dropped_messages``), and its trial's episode is published all the same.
"""

from __future__ import annotations

import time
from datetime import datetime

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rclpy.qos import ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rclpy.subscription import MessageInfo
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String, UInt8MultiArray

from mbrl_ros.data.bags import SegmentedBagWriter, TopicSpec
from mbrl_ros.data.log_time import SendTimeLog
from mbrl_ros.data.trial_assembly import (
    RECORDER_PARAMETERS,
    EpisodeReady,
    RecorderNodeSettings,
    TrialAssembler,
    UnalignedTrial,
)
from mbrl_ros.ros import payloads, qos
from mbrl_ros.ros.conversions import MAX_JOINT_STATE_BYTES, InvalidMessage, JointStateDecoder, decode_command
from mbrl_ros.ros.diagnostics import diagnostic_array, status
from mbrl_ros.ros.params import LiveSettings
from mbrl_ros.ros.spin import run_node

#: How long (log time) messages wait before being written, so a trial's bag can be cut at its end
#: even when the recorder handles messages late and out of order: under load it handles them over
#: 100 ms late.
_BAG_HOLD_S = 1.0


class TrajectoryRecorder(Node):
    def __init__(self) -> None:
        super().__init__("trajectory_recorder")
        self._settings = LiveSettings(self, RecorderNodeSettings(), RECORDER_PARAMETERS, self._on_settings_changed)
        settings = self._settings.value
        self._topics = {
            "joint_states": self.resolve_topic_name("joint_states"),
            "commands": self.resolve_topic_name("effort_controller/commands"),
            "trial": self.resolve_topic_name("/mbrl/trial"),
        }
        # Each topic as its publishers offer it (what a replay re-offers).
        self._writer = SegmentedBagWriter(
            settings.bag_dir,
            [
                TopicSpec(self._topics["joint_states"], "sensor_msgs/msg/JointState", qos.offered_qos(qos.JOINT_STATES_PUB)),
                TopicSpec(self._topics["commands"], "std_msgs/msg/Float64MultiArray", qos.offered_qos(qos.COMMANDS_PUB)),
                TopicSpec(self._topics["trial"], "std_msgs/msg/String", qos.offered_qos(qos.TRIAL_MARKERS)),
            ],
            storage=settings.storage,
            hold_s=_BAG_HOLD_S,
        )
        self._log_time = SendTimeLog()
        self._session = datetime.now().strftime("%Y%m%d_%H%M%S")
        self._decoder = JointStateDecoder()  # in the order of the first joint state
        self._trials = TrialAssembler(settings.command_timeout_s)
        self._counts = {"episodes": 0, "rejected_messages": 0, "rejected_joint_states": 0, "rejected_commands": 0,
                        "rejected_markers": 0, "failed_trials": 0, "bags": 0}
        self._write_errors_reported = 0

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
        self.get_logger().info(
            f"recording {sorted(self._topics.values())} into {settings.bag_dir} ({settings.storage}), one bag per trial"
        )

    def _on_settings_changed(self, settings: RecorderNodeSettings, changed: set[str]) -> None:
        self._trials.command_timeout_s = settings.command_timeout_s

    def _warn_about_best_effort_publishers(self) -> None:
        """A reliable subscription receives nothing from a best-effort publisher: say so, once."""
        publishers = self.get_publishers_info_by_topic(self._topics["joint_states"])
        if any(p.qos_profile.reliability != ReliabilityPolicy.RELIABLE for p in publishers):
            self.get_logger().error("a /joint_states publisher is best effort: the recorder (reliable) does not receive it")
            self.destroy_timer(self._best_effort_check)

    def _handling_time_ns(self, info: MessageInfo) -> int:
        """Our clock now, less how long the message waited (system clock): its log time while no
        joint state has been heard to put it on the arm's clock."""
        waited_ns = max(0, time.time_ns() - info["source_timestamp"])
        return max(0, self.get_clock().now().nanoseconds - waited_ns)

    def _reject(self, what: str, counter: str, err: Exception) -> None:
        self._counts["rejected_messages"] += 1
        self._counts[counter] += 1
        self.get_logger().warning(f"rejected {what}: {err}", throttle_duration_sec=1.0)

    def _on_joint_state(self, raw: bytes, info: MessageInfo) -> None:
        # One too large to read is logged as received (unstamped) and rejected when handled, unread.
        msg = deserialize_message(raw, JointState) if len(raw) <= MAX_JOINT_STATE_BYTES else None
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec if msg is not None else 0
        if stamp_ns > 0:
            self._handle(self._log_time.add_state(info["source_timestamp"], stamp_ns, "joint_states", (raw, msg)))
        else:  # an unstamped arm: its states are placed like any other message
            self._handle(self._log_time.add(info["source_timestamp"], self._handling_time_ns(info), "joint_states", (raw, msg)))

    def _on_command(self, raw: bytes, info: MessageInfo) -> None:
        self._handle(self._log_time.add(info["source_timestamp"], self._handling_time_ns(info), "commands", raw))

    def _on_trial(self, raw: bytes, info: MessageInfo) -> None:
        self._handle(self._log_time.add(info["source_timestamp"], self._handling_time_ns(info), "trial", raw))

    def _handle(self, ready: list) -> None:
        """Write each message, in send order, at its log time, and hand it to the trial assembler."""
        for log_ns, key, item in self._log_time.due(time.time_ns()) + ready:
            if key == "joint_states":
                raw, msg = item
                self._writer.write(self._topics[key], log_ns, raw)
                try:
                    x = self._decoder.decode(msg) if msg is not None else self._decoder.decode_raw(raw)
                except InvalidMessage as err:
                    self._reject("joint state", "rejected_joint_states", err)
                    continue
                stamp_s = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
                self._act_on(self._trials.add_state(stamp_s, self._decoder.joint_names, x))
            elif key == "commands":
                self._writer.write(self._topics[key], log_ns, item)  # commands carry no stamp: their log time is it
                try:
                    # Of any length: the joint states may name more joints (a gripper's) than the
                    # trial commands; an episode takes the commands of its trial's joint count.
                    torque = decode_command(deserialize_message(item, Float64MultiArray))
                except InvalidMessage as err:
                    self._reject("command", "rejected_commands", err)
                    continue
                self._trials.add_command(log_ns, torque)
            else:
                self._writer.write(self._topics[key], log_ns, item)
                try:
                    marker = payloads.decode_trial_marker(deserialize_message(item, String))
                except InvalidMessage as err:
                    self._reject("trial marker", "rejected_markers", err)
                    continue
                self._act_on(self._trials.add_marker(log_ns, marker))
        self._report_write_errors()

    def _report_write_errors(self) -> None:
        if self._writer.write_errors > self._write_errors_reported:
            self._write_errors_reported = self._writer.write_errors
            self.get_logger().error(f"bag not written, its segment dropped ({self._writer.write_errors} so far): "
                                    f"{self._writer.last_write_error}")

    def _act_on(self, finished: list[EpisodeReady | UnalignedTrial]) -> None:
        """Cut the bag of every finished trial and publish its episode; report the others."""
        for outcome in finished:
            marker = outcome.marker
            if isinstance(outcome, UnalignedTrial):
                self._counts["failed_trials"] += 1
                self.get_logger().error(f"trial {marker.trial} not usable: {outcome.reason}")
                continue
            bag = self._writer.close_segment(f"{self._session}_{outcome.bag_name}", until_ns=outcome.bag_until_ns)
            self._report_write_errors()
            if bag is not None:
                self._counts["bags"] += 1
            outcome.episode.metadata["bag"] = str(bag) if bag else ""
            self._episode_pub.publish(payloads.encode_episodes(outcome.episode))
            self._counts["episodes"] += 1
            self.get_logger().info(f"trial {marker.trial} (iteration {marker.iteration}): episode published, bag {bag}")

    def _publish_diagnostics(self) -> None:
        self._handle([])  # what waits for joint states that have stopped
        writer = self._writer
        level = DiagnosticStatus.WARN if self._counts["failed_trials"] or self._counts["rejected_messages"] \
            or writer.write_errors else DiagnosticStatus.OK
        values = {**self._counts, "open_trials": self._trials.open_trials, "history_s": round(self._trials.history_s, 2),
                  "messages_in_bag": writer.messages_in_segment, "write_errors": writer.write_errors,
                  "last_write_error": writer.last_write_error, "dropped_messages": writer.dropped_messages}
        self._diag_pub.publish(
            diagnostic_array(
                self.get_clock().now().to_msg(), status("trajectory_recorder", "", level, "recording", values)
            )
        )

    def shutdown(self) -> None:
        self._handle(self._log_time.remaining())
        bag = self._writer.close_segment(f"{self._session}_tail")
        if bag is not None:
            self.get_logger().info(f"closed {bag}")


def main(args=None, stop=None) -> None:
    # rclpy's events executor cannot pass a callback its MessageInfo (it raises SystemError), and
    # the recorder logs every message at its send time, which only MessageInfo gives.
    run_node(TrajectoryRecorder, args, events_executor=False, stop=stop)


if __name__ == "__main__":
    main()
