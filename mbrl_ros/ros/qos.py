"""QoS profiles of the topic contract (README "Topics"), in one place."""

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

#: Subscribing to /joint_states: best effort, shallow; matches reliable and best-effort publishers.
JOINT_STATES_SUB = qos_profile_sensor_data

#: Publishing /joint_states as ros2_control's joint_state_broadcaster does (reliable, depth 10), so
#: reliable subscribers such as bag recorders receive it too.
JOINT_STATES_PUB = QoSProfile(
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
)

#: Torque commands: reliable, volatile, shallow; an old command is worth nothing.
COMMANDS = QoSProfile(
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
)

#: /clock from the simulator.
CLOCK = QoSProfile(
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
)

#: /diagnostics, as diagnostic_updater publishes it.
DIAGNOSTICS = QoSProfile(
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
)

#: Trial markers: reliable; a few kept for a recorder that restarts mid-trial.
TRIAL_MARKERS = QoSProfile(
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
)

#: Episodes for the learner: reliable and transient-local, so a learner that starts late still
#: receives the recent trials.
EPISODES = QoSProfile(
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    history=HistoryPolicy.KEEP_LAST,
    depth=100,
)

#: Models: reliable, transient-local, the last few (one per model kind): a late joiner gets the
#: newest local and global models.
MODEL = QoSProfile(
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    history=HistoryPolicy.KEEP_LAST,
    depth=4,
)

#: Learning progress (one message per LQR-FLM iteration): reliable, transient-local, all kept for
#: a monitor that starts late.
PROGRESS = QoSProfile(
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    history=HistoryPolicy.KEEP_LAST,
    depth=1000,
)

#: Recording /joint_states: reliable and deep, as a bag recorder must lose nothing while it is busy
#: writing (ros2_control's joint_state_broadcaster and sim_node publish reliable).
JOINT_STATES_RECORD = QoSProfile(
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
    history=HistoryPolicy.KEEP_LAST,
    depth=500,
)
