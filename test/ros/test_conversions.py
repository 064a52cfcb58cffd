"""Messages to arrays: joint states mapped by name and checked, commands checked, QoS described for bags."""

import numpy as np
import pytest
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from mbrl_ros.ros import qos
from mbrl_ros.ros.conversions import InvalidMessage, JointStateDecoder, decode_command
from mbrl_ros.ros.replay import rclpy_qos


def joint_state(names, position, velocity):
    return JointState(name=list(names), position=list(position), velocity=list(velocity))


def test_a_joint_state_is_decoded_in_the_wanted_order_whatever_its_own():
    decoder = JointStateDecoder(["a", "b"])
    x = decoder.decode(joint_state(["b", "c", "a"], [2.0, 9.0, 1.0], [20.0, 90.0, 10.0]))
    np.testing.assert_array_equal(x, [1.0, 2.0, 10.0, 20.0])
    np.testing.assert_array_equal(decoder.decode(joint_state(["a", "b"], [3.0, 4.0], [5.0, 6.0])), [3.0, 4.0, 5.0, 6.0])


def test_without_a_joint_order_the_first_message_gives_it():
    decoder = JointStateDecoder()
    assert decoder.joint_names is None
    with pytest.raises(InvalidMessage, match="2 names, 1 positions"):
        decoder.decode(joint_state(["z", "y"], [1.0], [1.0, 2.0]))
    assert decoder.joint_names is None, "a malformed message sets no order"
    np.testing.assert_array_equal(decoder.decode(joint_state(["b", "a"], [1.0, 2.0], [3.0, 4.0])), [1.0, 2.0, 3.0, 4.0])
    assert decoder.joint_names == ("b", "a")
    np.testing.assert_array_equal(decoder.decode(joint_state(["a", "b"], [2.0, 1.0], [4.0, 3.0])), [1.0, 2.0, 3.0, 4.0])


@pytest.mark.parametrize("msg, message", [
    (joint_state(["a"], [1.0], [0.0]), r"joints \['b'\] are not in the message"),
    (joint_state(["a", "b"], [1.0, 2.0], [0.0]), "2 names, 2 positions, 1 velocities"),
    (joint_state(["a", "b", "a"], [1.0, 2.0, 5.0], [0.0, 0.0, 0.0]), r"joints \['a'\] are named more than once"),
    (JointState(name=["a", "b"], position=[1.0, 2.0], velocity=[0.0, 0.0], effort=[1.0]), "2 names, 2 positions, 2 velocities, 1 efforts"),
    (joint_state([], [], []), "names 0 joints"),
    (joint_state([f"j{i}" for i in range(1025)] + ["a", "b"], [0.0] * 1027, [0.0] * 1027), "names 1027 joints"),
    (joint_state(["a", "b"], [1.0, float("nan")], [0.0, 0.0]), "non-finite"),
    (joint_state(["a", "b"], [1.0, 2.0], [0.0, float("inf")]), "non-finite"),
])
def test_bad_joint_states_are_rejected_saying_why(msg, message):
    with pytest.raises(InvalidMessage, match=message):
        JointStateDecoder(["a", "b"]).decode(msg)


def test_commands_are_checked_for_finiteness_and_optionally_their_length():
    np.testing.assert_array_equal(decode_command(Float64MultiArray(data=[1.0, -2.0, 3.0])), [1.0, -2.0, 3.0])
    with pytest.raises(InvalidMessage, match="3 values, expected 2"):
        decode_command(Float64MultiArray(data=[1.0, -2.0, 3.0]), 2)
    with pytest.raises(InvalidMessage, match="non-finite"):
        decode_command(Float64MultiArray(data=[1.0, float("nan")]))


@pytest.mark.parametrize("name", ["JOINT_STATES_PUB", "COMMANDS", "TRIAL_MARKERS", "CLOCK", "EPISODES", "MODEL"])
def test_a_profile_described_for_a_bag_is_offered_again_as_it_was(name):
    profile = getattr(qos, name)
    recorded = qos.offered_qos(profile)
    assert recorded.depth == profile.depth
    assert rclpy_qos(recorded) == profile


def test_the_bag_describes_the_sims_joint_states_as_published():
    recorded = qos.offered_qos(qos.JOINT_STATES_PUB)
    assert (recorded.depth, recorded.reliability.name, recorded.durability.name) == (1000, "RELIABLE", "VOLATILE")
    latched = rclpy_qos(qos.offered_qos(qos.TRIAL_MARKERS))
    assert (latched.reliability, latched.durability) == (ReliabilityPolicy.RELIABLE, DurabilityPolicy.TRANSIENT_LOCAL)


def test_a_serialized_joint_state_over_a_megabyte_is_refused_unread():
    from rclpy.serialization import serialize_message

    decoder = JointStateDecoder(["a", "b"])
    np.testing.assert_array_equal(decoder.decode_raw(serialize_message(joint_state(["b", "a"], [2.0, 1.0], [0.0, 0.0]))),
                                  [1.0, 2.0, 0.0, 0.0])
    big = JointState(name=["a", "b"], position=[0.0] * 100_000, velocity=[0.0] * 100_000)
    with pytest.raises(InvalidMessage, match="joint state of 1600.* bytes"):
        decoder.decode_raw(serialize_message(big))


def test_a_goal_must_be_finite_and_in_the_base_frame_or_name_none():
    from geometry_msgs.msg import PointStamped

    from mbrl_ros.ros.conversions import decode_point

    goal = PointStamped()
    goal.point.x, goal.point.y, goal.point.z = 0.4, 0.1, 0.5
    np.testing.assert_array_equal(decode_point(goal, "panda_link0"), [0.4, 0.1, 0.5])  # no frame: the base's
    goal.header.frame_id = "panda_link0"
    np.testing.assert_array_equal(decode_point(goal, "panda_link0"), [0.4, 0.1, 0.5])
    goal.header.frame_id = "world"
    with pytest.raises(InvalidMessage, match="frame 'world', not 'panda_link0'"):
        decode_point(goal, "panda_link0")
