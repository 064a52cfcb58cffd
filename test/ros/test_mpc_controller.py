"""mpc_controller in its own process against an arm played by the test: safety and live tuning."""

import math
import os
import signal
import time
from pathlib import Path as FilePath

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped
from nav_msgs.msg import Path
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from std_msgs.msg import Float64MultiArray

from mbrl_ros.launcher import NodeSpec
from mbrl_ros.ros import qos
from mbrl_ros.ros.diagnostics import status_values
from mbrl_ros.ros.spin import wait_for
from mbrl_ros.ros.topic_monitor import TopicMonitor

from _fake_arm import HOME, FakeArm
from _realtime import real_time_permitted, thread_policies

STATE_TIMEOUT_S = 0.1


@pytest.fixture(scope="module")
def controller(start_node, client_node):
    arm = FakeArm(client_node)
    process = start_node(NodeSpec("mpc_controller", parameters={
        "mode": "ilqr", "model_source": "physics", "reset_service": "", "settle_s": 0.0, "dt_s": 0.02,
        "horizon_steps": 20, "plan_rate_hz": 10.0, "state_timeout_s": STATE_TIMEOUT_S,
        # The fake arm never moves: a disturbance estimate would read that as a blocked arm and
        # saturate every plan.
        "disturbance_gain": 0.0,
    }))
    commands = TopicMonitor(client_node, Float64MultiArray, "effort_controller/commands", qos.COMMANDS)
    plans = TopicMonitor(client_node, Path, "/mbrl/plan", 1)
    params = AsyncParameterClient(client_node, "mpc_controller")
    assert params.wait_for_services(timeout_sec=30.0)
    assert wait_for(lambda: plans.count >= 2, 60.0), "the controller plans on the physics model"
    yield arm, commands, plans, params, process
    arm.running = False


@pytest.mark.skipif(not real_time_permitted(), reason="SCHED_FIFO not permitted here")
def test_controller_threads_run_real_time_with_the_torque_thread_on_top_and_the_planner_does_not(controller):
    *_, process = controller
    policies = thread_policies(process.pid)
    assert {policy for policy, _ in policies.values()} == {os.SCHED_FIFO}, "every thread, DDS's included"
    priorities = sorted(priority for _, priority in policies.values())
    assert priorities[-1] == 50 and priorities.count(50) == 1, "the torque thread alone at rt_priority"
    assert set(priorities[:-1]) == {49}
    children = FilePath(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    planners = [int(c) for c in children if "spawn_main" in FilePath(f"/proc/{c}/cmdline").read_text()]
    assert planners and all(os.sched_getscheduler(pid) == os.SCHED_OTHER for pid in planners)


def set_params(params, **values):
    future = params.set_parameters([Parameter(k, value=v) for k, v in values.items()])
    assert wait_for(future.done, 10.0)
    return future.result().results


def test_torques_are_published_at_the_control_rate_and_within_limits(controller):
    _, commands, *_ = controller
    commands.reset()
    wait_for(lambda: False, 1.0)
    assert commands.summary().rate_hz > 200.0
    torque = np.asarray(commands.latest.data)
    assert torque.shape == (7,)
    assert np.all(np.abs(torque) <= [87, 87, 87, 87, 12, 12, 12])


def test_changing_horizon_changes_the_next_plan_and_bad_values_are_refused(controller):
    _, _, plans, params, _ = controller
    assert all(r.successful for r in set_params(params, horizon_steps=35, ee_weight=20.0))
    plans.reset()
    assert wait_for(lambda: plans.count >= 2 and len(plans.latest.poses) == 36, 10.0)
    (refused,) = set_params(params, horizon_steps=0)
    assert not refused.successful and "horizon_steps" in refused.reason
    (refused,) = set_params(params, mode="teleport")
    assert not refused.successful and "mode" in refused.reason
    future = params.get_parameters(["horizon_steps"])
    assert wait_for(future.done, 10.0) and future.result().values[0].integer_value == 35


def test_nan_state_is_rejected_and_a_stale_state_means_zero_torque(controller, client_node):
    arm, *_ = controller
    diag: dict[str, str] = {}
    received: list[tuple[float, np.ndarray]] = []
    subs = [
        client_node.create_subscription(DiagnosticArray, "/diagnostics",
                                        lambda m: diag.update(status_values(m, "mpc_controller")), qos.DIAGNOSTICS),
        client_node.create_subscription(Float64MultiArray, "effort_controller/commands",
                                        lambda m: received.append((time.monotonic(), np.asarray(m.data))), qos.COMMANDS),
    ]
    try:
        # Both observers must hear the controller before the NaN state, or nothing below can fail.
        assert wait_for(lambda: "rejected_joint_states" in diag and received, 5.0)
        rejected_before = int(diag["rejected_joint_states"])
        arm.position = [math.nan] + list(reversed(HOME))[1:]  # from now on the only state
        nan_since = time.monotonic()
        assert wait_for(lambda: int(diag["rejected_joint_states"]) > rejected_before, 3.0), "NaN states not rejected"
        # Commands heard from here on were computed well after the last valid state went stale
        # (STATE_TIMEOUT_S), with room for a slow delivery.
        wait_for(lambda: time.monotonic() > nan_since + STATE_TIMEOUT_S + 0.4, 1.0)
        stale_from = len(received)
        wait_for(lambda: False, 0.3)
        nan_only = [u for _, u in received[stale_from:]]
    finally:
        arm.position = list(reversed(HOME))
        for sub in subs:
            client_node.destroy_subscription(sub)
    assert nan_only and all(np.all(u == 0.0) for u in nan_only), "zero torque while the NaN state is the only state"


def test_node_parameters_are_accepted_and_a_goal_message_updates_the_goal_parameter(controller, client_node):
    *_, params, _ = controller
    (accepted,) = set_params(params, use_sim_time=False)
    assert accepted.successful, accepted.reason
    goals = client_node.create_publisher(PointStamped, "/mbrl/goal", 10)
    target = [0.4, 0.2, 0.5]
    msg = PointStamped()
    msg.point.x, msg.point.y, msg.point.z = target

    def goal_parameter_is_target():
        goals.publish(msg)
        future = params.get_parameters(["goal_xyz_m"])
        return wait_for(future.done, 5.0) and np.allclose(future.result().values[0].double_array_value, target)

    try:
        assert wait_for(goal_parameter_is_target, 10.0, period_s=0.2), "the goal from /mbrl/goal is goal_xyz_m"
    finally:
        client_node.destroy_publisher(goals)


def test_a_dead_planner_child_is_restarted_and_its_last_plan_does_not_drive_the_arm(controller, client_node):
    _, _, plans, _, process = controller
    diag: dict[str, str] = {}
    sub = client_node.create_subscription(DiagnosticArray, "/diagnostics",
                                          lambda m: diag.update(status_values(m, "mpc_controller")), qos.DIAGNOSTICS)
    try:
        # Killed while a plan drives the arm: that plan must expire, not be executed beyond its horizon.
        assert wait_for(lambda: diag.get("phase") == "planning", 30.0)
        expired = int(diag["expired_plans"])
        children = FilePath(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        (planner,) = [int(c) for c in children if "spawn_main" in FilePath(f"/proc/{c}/cmdline").read_text()]
        os.kill(planner, signal.SIGKILL)
        # Killed mid-plan it is a planning failure; killed between plans the next call just restarts it.
        # A new child starts (seconds of imports): meanwhile the last plan's horizon passes.
        assert wait_for(lambda: int(diag["expired_plans"]) > expired, 10.0), "the expired plan is not executed"
        plans.reset()
        assert wait_for(lambda: plans.count >= 2, 60.0), "plans again from a new child"
        # The planner thread, not the main one, started the new child.
        children = [c for task in FilePath(f"/proc/{process.pid}/task").iterdir() for c in (task / "children").read_text().split()]
        (restarted,) = [int(c) for c in children if "spawn_main" in FilePath(f"/proc/{c}/cmdline").read_text()]
        assert os.sched_getscheduler(restarted) == os.SCHED_OTHER, "started from a real-time thread, plans at normal priority"
    finally:
        client_node.destroy_subscription(sub)
