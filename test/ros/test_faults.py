"""Faults injected for real into the running sim and controller (wall time, as on a real arm):
the controller killed with SIGKILL while the arm moves, and the arm's states stopping (the sim
process stopped with SIGSTOP) and coming back.

Each test prints what it measured; README's *Faults and bad input* table quotes them."""

import os
import signal
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from mbrl_ros.dynamics.kinematics import ArmKinematics, load_arm_model
from mbrl_ros.launcher import config_path, node_specs_from_config
from mbrl_ros.ros import qos
from mbrl_ros.ros.conversions import JointStateDecoder
from mbrl_ros.ros.diagnostics import status_values
from mbrl_ros.ros.spin import wait_for

from _processes import alive

GOAL = [0.30, 0.25, 0.45]  # 21 cm from the start pose's end effector, off to the side: joint 1 works
COMMAND_TIMEOUT_S = 0.05
STATE_TIMEOUT_S = 0.1
PERIOD_S = 1.0 / 250.0


def _specs():
    specs = node_specs_from_config(config_path("mbrl_sim"), {
        # Wall time, as with a real arm: the sim does not publish /clock, the controller follows the system clock.
        "sim_node": {"publish_clock": False, "command_timeout_s": COMMAND_TIMEOUT_S},
        "mpc_controller": {"use_sim_time": False, "mode": "ilqr", "model_source": "physics", "goal_xyz_m": GOAL,
                           "state_timeout_s": STATE_TIMEOUT_S},
    })
    return {s.executable: s for s in specs if s.executable in ("sim_node", "mpc_controller")}


def _children(pid: int) -> list[int]:
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as fh:
            out += [int(c) for c in fh.read().split()]
    return out


def _settled_from(samples, settled) -> float:
    """The time of the first sample after the last one that is not ``settled`` (``(time, value)``
    pairs in time order)."""
    last_unsettled = max((i for i, (_, v) in enumerate(samples) if not settled(v)), default=-1)
    return samples[last_unsettled + 1][0]


@pytest.fixture(scope="module")
def arm(start_node, client_node):
    specs = _specs()
    sim = start_node(specs["sim_node"])
    controller = start_node(specs["mpc_controller"])
    model = load_arm_model("panda")
    kinematics, decoder = ArmKinematics(model), JointStateDecoder(model.spec.joint_names)
    states: list[tuple[float, np.ndarray, np.ndarray]] = []  # (receive time, x, applied effort)
    commands: list[tuple[float, np.ndarray]] = []
    diag: dict[str, dict[str, str]] = {"mpc_controller": {}, "sim_node": {}}

    def on_state(msg: JointState) -> None:
        states.append((time.monotonic(), decoder.decode(msg), np.asarray(msg.effort)))

    def on_diag(msg: DiagnosticArray) -> None:
        for name in diag:
            diag[name].update(status_values(msg, name))

    client_node.create_subscription(JointState, "joint_states", on_state, qos.JOINT_STATES_RECORD)
    client_node.create_subscription(Float64MultiArray, "effort_controller/commands",
                                    lambda m: commands.append((time.monotonic(), np.asarray(m.data))), qos.COMMANDS)
    client_node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, qos.DIAGNOSTICS)
    goals = client_node.create_publisher(PointStamped, "/mbrl/goal", 10)

    def distance() -> float:
        q = states[-1][1][:7]
        return float(np.linalg.norm(kinematics.ee_position(q[None])[0] - np.asarray(GOAL)))

    assert wait_for(lambda: diag["mpc_controller"].get("phase") == "planning" and states, 60.0), diag
    yield {"sim": sim, "controller": controller, "specs": specs, "start_node": start_node, "states": states,
           "commands": commands, "diag": diag, "distance": distance, "goals": goals}


def test_a_killed_controller_means_zero_torque_within_the_command_timeout_and_a_new_one_takes_over(arm):
    states, controller = arm["states"], arm["controller"]
    assert wait_for(lambda: arm["distance"]() < 0.02, 30.0), f"the arm never reached the goal: {arm['distance']()}"
    planner_children = _children(controller.pid)
    assert planner_children, "the controller runs its planner in a child process"
    # Killed while the arm swings to a goal on the other side (joint 1 driven hard).
    goal = PointStamped()
    goal.point.x, goal.point.y, goal.point.z = 0.30, -0.20, 0.45
    arm["goals"].publish(goal)
    assert wait_for(lambda: np.max(np.abs(states[-1][1][7:])) > 0.2, 5.0), "the arm does not move to the new goal"
    assert abs(states[-1][2][0]) > 0.1, "joint 1 is commanded before the kill"
    killed_at = time.monotonic()
    os.kill(controller.pid, signal.SIGKILL)
    controller.process.wait()
    assert wait_for(lambda: states[-1][0] > killed_at + 0.5, 3.0)
    after = [(t, e) for t, _, e in states if t > killed_at]
    # Joint 1 carries no gravity load: with no command its effort is the emulated compensation's ~1e-16.
    to_zero_s = _settled_from(after, lambda e: abs(e[0]) < 1e-9) - killed_at
    print(f"SIGKILL to zero torque: {to_zero_s * 1e3:.1f} ms (command timeout {COMMAND_TIMEOUT_S * 1e3:.0f} ms, "
          f"one publish period {PERIOD_S * 1e3:.0f} ms)")
    assert to_zero_s <= COMMAND_TIMEOUT_S + PERIOD_S + 0.05, f"{to_zero_s:.3f} s to zero torque"
    assert wait_for(lambda: not any(alive(p) for p in planner_children), 5.0), "the dead controller's planner lives on"
    restarted = arm["start_node"](arm["specs"]["mpc_controller"])
    arm["controller"] = restarted
    arm["diag"]["mpc_controller"].clear()
    start = time.monotonic()
    assert wait_for(lambda: arm["diag"]["mpc_controller"].get("phase") == "planning", 60.0), arm["diag"]
    assert wait_for(lambda: arm["distance"]() < 0.02, 20.0), f"the new controller did not reach: {arm['distance']()}"
    print(f"restarted controller at the goal {time.monotonic() - start:.1f} s after its start")


def test_states_that_stop_mean_zero_torque_and_the_controller_resumes_from_a_fresh_state(arm):
    sim, commands, diag = arm["sim"], arm["commands"], arm["diag"]["mpc_controller"]
    assert wait_for(lambda: arm["distance"]() < 0.02 and diag.get("phase") == "planning", 30.0), diag
    stops_before, epoch_before = int(diag["stale_state_stops"]), int(diag["epoch"])
    os.kill(sim.pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        time.sleep(1.0)
    finally:
        os.kill(sim.pid, signal.SIGCONT)
    resumed_at = time.monotonic()
    during = [(t, u) for t, u in commands if stopped_at < t < resumed_at]
    # The controller goes on sending (zeros) while the arm is silent; a gap here is its torque loop stalled.
    assert len(during) > 0.5 * (resumed_at - stopped_at) * 250, (
        f"{len(during)} commands in the {resumed_at - stopped_at:.2f} s without states; controller: {diag}")
    to_zero_s = _settled_from(during, lambda u: not np.any(u)) - stopped_at
    print(f"states stopped: zero torque after {to_zero_s * 1e3:.1f} ms (state timeout {STATE_TIMEOUT_S * 1e3:.0f} ms)")
    assert to_zero_s <= STATE_TIMEOUT_S + 2 * PERIOD_S + 0.05, f"{to_zero_s:.3f} s to zero torque"
    assert wait_for(lambda: int(diag.get("stale_state_stops", "0")) > stops_before, 5.0), "the stop is reported"
    # A new epoch: every plan asked for before the gap is refused as obsolete when it comes back.
    assert int(diag["epoch"]) > epoch_before, diag
    assert wait_for(lambda: any(np.any(u) for t, u in commands if t > resumed_at + 0.2), 10.0), "torques resume"
    assert wait_for(lambda: arm["distance"]() < 0.02 and diag.get("phase") == "planning", 20.0), diag
    resumed = [(t, u) for t, u in commands if t > resumed_at]
    first_torque = next(t for t, u in resumed if np.any(u))
    print(f"first torque {(first_torque - resumed_at) * 1e3:.0f} ms after the states came back; "
          f"back at the goal, {arm['distance']() * 100:.2f} cm")
