"""sim_node in its own process, driven only over ROS topics, services and parameters."""

import math
import os

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.parameter_client import AsyncParameterClient
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from mbrl_ros.launcher import NodeSpec, config_path
from mbrl_ros.ros import qos
from mbrl_ros.ros.conversions import command_msg
from mbrl_ros.ros.diagnostics import status_values
from mbrl_ros.ros.spin import call_trigger, wait_for
from mbrl_ros.ros.topic_monitor import TopicMonitor

from _realtime import real_time_permitted, thread_policies

RATE_HZ = 500.0
HOME = np.array([0.0, -0.5, 0.0, -2.0, 0.0, 1.6, 0.8])


@pytest.fixture(scope="module")
def sim(start_node, client_node):
    proc = start_node(
        NodeSpec(
            "sim_node",
            params_file=str(config_path("sim_panda")),
            parameters={"publish_rate_hz": RATE_HZ, "diagnostics_period_s": 0.1, "command_timeout_s": 0.05},
        )
    )
    joints = TopicMonitor(client_node, JointState, "joint_states", qos.JOINT_STATES_SUB)
    diagnostics = TopicMonitor(client_node, DiagnosticArray, "/diagnostics", qos.DIAGNOSTICS)
    commands = client_node.create_publisher(Float64MultiArray, "effort_controller/commands", qos.COMMANDS_PUB)
    assert wait_for(lambda: joints.count > 50, 30.0), f"no joint_states (sim exit code {proc.poll()})"
    assert wait_for(lambda: commands.get_subscription_count() > 0, 10.0)
    return proc, joints, diagnostics, commands


@pytest.mark.skipif(not real_time_permitted(), reason="SCHED_FIFO not permitted here")
def test_the_paced_sim_runs_real_time_with_physics_on_top(sim):
    """Like the hardware it stands in for, busy processes (a learner) must not delay it."""
    proc, *_ = sim
    policies = thread_policies(proc.pid)
    assert {policy for policy, _ in policies.values()} == {os.SCHED_FIFO}
    priorities = sorted(priority for _, priority in policies.values())
    assert priorities[-1] == 40 and priorities.count(40) == 1 and set(priorities[:-1]) == {39}


def fresh_counters(diagnostics) -> dict:
    """Counters from a diagnostics message published after this call."""
    diagnostics.reset()
    assert wait_for(lambda: diagnostics.count >= 1, 5.0)
    values = status_values(diagnostics.latest, "sim_node")
    return {k: float(v) if k.startswith(("commands_", "command_")) else v for k, v in values.items()}


def reset(client_node) -> None:
    response = call_trigger(client_node, "/sim_node/reset")
    assert response is not None and response.success


def position(joints) -> np.ndarray:
    return np.asarray(joints.latest.position)


def test_publishes_joint_states_at_the_configured_rate(sim):
    _, joints, _, _ = sim
    joints.reset()
    wait_for(lambda: False, 2.0)
    summary = joints.summary()
    assert summary.rate_hz >= 0.9 * RATE_HZ
    msg = joints.latest
    assert list(msg.name) == [f"panda_joint{i}" for i in range(1, 8)]
    assert len(msg.position) == len(msg.velocity) == len(msg.effort) == 7
    assert msg.header.stamp.sec > 0


def test_holds_still_and_reports_emulated_gravity_compensation(sim):
    _, joints, diagnostics, _ = sim
    start = position(joints)
    wait_for(lambda: False, 1.0)
    assert np.abs(position(joints) - start).max() < 1e-3
    values = fresh_counters(diagnostics)
    assert values["gravity_compensation_emulated"] == "True"


def test_applies_a_command_received_over_the_topic(sim, client_node):
    _, joints, _, commands = sim
    reset(client_node)
    q0 = position(joints)
    torque = np.zeros(7)
    torque[0] = 5.0
    for _ in range(20):
        commands.publish(command_msg(torque))
        wait_for(lambda: False, 0.01)
    moved = position(joints) - q0
    assert moved[0] > 0.01, f"joint 1 should turn positively under +5 N·m, moved {moved}"
    assert np.argmax(np.abs(moved)) == 0, f"the commanded joint moves most: {moved}"


def test_rejects_wrong_length_and_nan_commands(sim, client_node):
    _, joints, diagnostics, commands = sim
    reset(client_node)
    before = fresh_counters(diagnostics)
    q0 = position(joints)
    commands.publish(Float64MultiArray(data=[50.0] * 6))
    wait_for(lambda: False, 0.05)
    commands.publish(Float64MultiArray(data=[math.nan] + [50.0] * 6))
    assert wait_for(lambda: fresh_counters(diagnostics)["commands_rejected"] >= before["commands_rejected"] + 2, 5.0)
    after = fresh_counters(diagnostics)
    assert after["commands_rejected"] == before["commands_rejected"] + 2
    assert after["commands_received"] == before["commands_received"]
    assert np.abs(position(joints) - q0).max() < 1e-3, "a rejected command must not move the arm"


def test_zero_torque_after_the_command_timeout(sim, client_node):
    _, joints, diagnostics, commands = sim
    reset(client_node)
    before = fresh_counters(diagnostics)
    torque = np.zeros(7)
    torque[0] = 5.0  # joint 1 carries no gravity load, so its effort is the command alone
    efforts = []

    def record(msg: JointState) -> None:
        efforts.append((msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, msg.effort[0]))

    sub = client_node.create_subscription(JointState, "joint_states", record, qos.JOINT_STATES_SUB)
    try:
        wait_for(lambda: len(efforts) > 10, 5.0)
        commands.publish(command_msg(torque))
        wait_for(lambda: False, 0.5)
    finally:
        client_node.destroy_subscription(sub)
    applied = [t for t, e in efforts if abs(e - 5.0) < 1e-6]
    assert applied, "the command was applied"
    held_s = max(applied) - min(applied)
    assert held_s <= 0.05 + 2.0 / RATE_HZ, f"command held {held_s:.3f} s, timeout is 0.05 s"
    assert abs(efforts[-1][1]) < 1e-6, "zero torque after the timeout"
    after = fresh_counters(diagnostics)
    assert after["command_timeouts"] == before["command_timeouts"] + 1


def test_reset_service_restores_the_configuration(sim, client_node):
    _, joints, _, commands = sim
    torque = np.zeros(7)
    torque[1] = 20.0
    for _ in range(20):
        commands.publish(command_msg(torque))
        wait_for(lambda: False, 0.01)
    assert np.abs(position(joints) - HOME).max() > 0.01
    reset(client_node)
    joints.reset()
    assert wait_for(lambda: joints.count > 3, 2.0)
    np.testing.assert_allclose(position(joints), HOME, atol=1e-4)


def test_invalid_parameter_values_are_refused_with_a_reason(sim, client_node):
    from rclpy.parameter import Parameter

    client = AsyncParameterClient(client_node, "sim_node")
    assert client.wait_for_services(timeout_sec=10.0)
    future = client.set_parameters([Parameter("command_timeout_s", value=-1.0)])
    assert wait_for(future.done, 5.0)
    result = future.result().results[0]
    assert not result.successful and result.reason
    future = client.set_parameters([Parameter("command_timeout_s", value=0.05)])
    assert wait_for(future.done, 5.0) and future.result().results[0].successful
