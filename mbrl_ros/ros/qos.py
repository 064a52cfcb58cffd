"""QoS profiles of the topic contract (README "Topics"), in one place, and their description in a bag."""

from rclpy.duration import Duration, Infinite
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime


def _keep_last(depth: int, reliable: bool = True, transient_local: bool = False) -> QoSProfile:
    return QoSProfile(
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if transient_local else DurabilityPolicy.VOLATILE,
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
    )


#: Subscribing to /joint_states: best effort, shallow; matches reliable and best-effort publishers.
JOINT_STATES_SUB = qos_profile_sensor_data

#: Publishing /joint_states reliable, as ros2_control's joint_state_broadcaster does, so reliable
#: subscribers such as bag recorders receive it too; but 2 s deep instead of its 10 samples: a
#: reliable reader can only catch up on what the writer still holds. A recorder starved for
#: 70-420 ms by the learner lost joint states (trials discarded) with depth 10, and one demo run
#: still lost blocks of 84-200 ms from 9 of 49 trials with depth 250 (0.5 s).
JOINT_STATES_PUB = _keep_last(1000)

#: Receiving torque commands (the arm): reliable, volatile, 10 deep, as ros2_control's command
#: controllers subscribe (SystemDefaultsQoS). The arm applies only the newest, but it takes each one
#: off the queue, checks it and counts it: 1 deep, a command that arrived while the physics held the
#: GIL was overwritten by the next unseen (16 % of malformed ones went uncounted under a fuzz).
COMMANDS = _keep_last(10)

#: Publishing torque commands: reliable and as deep as the joint states (4 s at 250 Hz). The arm
#: keeps only the newest (COMMANDS), but a reliable reader can only catch up on what the writer
#: still holds: with a writer 1 deep, a recorder process starved of CPU for a second (four nodes on
#: two cores) lost that second of torques at the start of a trial, whatever its own queue's depth.
COMMANDS_PUB = _keep_last(1000)

#: /clock from the simulator.
CLOCK = _keep_last(1, reliable=False)

#: /diagnostics, as diagnostic_updater publishes it.
DIAGNOSTICS = _keep_last(10)

#: Trial markers: reliable; a few kept for a recorder that restarts mid-trial.
TRIAL_MARKERS = _keep_last(10, transient_local=True)

#: Episodes for the learner: reliable and transient-local, so a learner that starts late still
#: receives the recent trials.
EPISODES = _keep_last(100, transient_local=True)

#: Models: reliable, transient-local, the last few (one per model kind): a late joiner gets the
#: newest local and global models.
MODEL = _keep_last(4, transient_local=True)

#: Learning progress (one message per LQR-FLM iteration): reliable, transient-local, all kept for
#: a monitor that starts late.
PROGRESS = _keep_last(1000, transient_local=True)

#: Recording /joint_states: reliable and deep, as a bag recorder must lose nothing while it is busy
#: writing (ros2_control's joint_state_broadcaster and sim_node publish reliable; a best-effort
#: publisher is reported by the recorder, not received).
JOINT_STATES_RECORD = _keep_last(1000)

#: Recording the torque commands: as deep, for the same reason. The arm wants only the newest
#: command (COMMANDS, depth 1), but a recorder busy closing a bag would keep only the last one and
#: lose the start of the next trial's torques (0.1-0.7 s of them).
COMMANDS_RECORD = _keep_last(1000)


def offered_qos(profile: QoSProfile) -> Qos:
    """rosbag2's description of a topic's offered QoS (``offered_qos_profiles`` in a bag; what
    ``ros2 bag play`` and ``mbrl-ros replay`` offer it with again) for an rclpy profile."""
    def duration(value: Duration) -> QosTime:  # unset and infinite are 0, as rosbag2 writes them
        ns = value.nanoseconds
        return QosTime(0, 0) if ns <= 0 or ns >= Infinite.nanoseconds else QosTime(ns // 10**9, ns % 10**9)

    return Qos(
        history=QosHistory[profile.history.name],
        depth=profile.depth,
        reliability=QosReliability[profile.reliability.name],
        durability=QosDurability[profile.durability.name],
        deadline=duration(profile.deadline),
        lifespan=duration(profile.lifespan),
        liveliness=QosLiveliness[profile.liveliness.name],
        liveliness_lease_duration=duration(profile.liveliness_lease_duration),
        avoid_ros_namespace_conventions=profile.avoid_ros_namespace_conventions,
    )

#: robot_description, the goal marker and the plan: reliable, transient-local, the last one, as
#: robot_state_publisher offers robot_description, so a viewer started later still gets them.
LATCHED = _keep_last(1, transient_local=True)

#: The arm's link markers: the newest pose only; a viewer that misses one draws the next.
LINK_MARKERS = _keep_last(1)
