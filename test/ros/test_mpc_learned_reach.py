"""The controller node in ``ilqr`` mode on a learned checkpoint, over ROS with the simulated Panda:
from the start pose it reaches a goal sent on ``/mbrl/goal`` within 2 cm and stays there, while
the learner trains on bags next to it (the 2 cores shared, a new model arriving mid-reach).

The checkpoint is a semi-parametric ensemble (URDF physics plus a learned residual) the test fits
itself on simulated exploration trials: a plain ensemble needs the demo's minutes of data and
training to plan a reach to a goal no trial went to."""

import sys
import time
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped
from sensor_msgs.msg import JointState

from mbrl_ros.dynamics import serialization
from mbrl_ros.dynamics.ensemble import EnsembleDynamics, EnsembleSettings
from mbrl_ros.dynamics.kinematics import ArmKinematics, load_arm_model
from mbrl_ros.dynamics.physics import PhysicsModel
from mbrl_ros.launcher import ProcessGroup, config_path, node_specs_from_config
from mbrl_ros.ros import qos
from mbrl_ros.ros.conversions import JointStateDecoder
from mbrl_ros.ros.diagnostics import status_values
from mbrl_ros.ros.spin import wait_for
from mbrl_ros.ros.topic_monitor import TopicMonitor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sim"))
from _sim_recording import RecordingSettings, record_exploration  # noqa: E402

Q0 = np.array([0.0, -0.5, 0.0, -2.0, 0.0, 1.6, 0.8])
GOAL = np.array([0.45, 0.15, 0.45])  # 22 cm from the start pose's end effector; no trial went there
STEPS = 60
REACH_S = 10.0
EPOCHS = 60
LEARNER_EPOCHS = 400


@pytest.fixture(scope="module")
def reach(client_node, tmp_path_factory):
    folder = tmp_path_factory.mktemp("learned_reach")
    truth, _ = record_exploration(folder / "exploration", RecordingSettings(trials=10, steps=STEPS, trials_per_iteration=2))
    physics = PhysicsModel.from_robot("panda", dt_s=0.05)
    # Small; the learner trains it on for as many epochs on the bags (its settings travel with it).
    ensemble = EnsembleDynamics(14, 7, 0.05, EnsembleSettings(
        n_members=3, n_elites=2, hidden_units=64, hidden_layers=2, batch_size=32, max_epochs_per_train=EPOCHS,
        patience_epochs=EPOCHS, seed=0), base_model=physics)
    ensemble.train(truth)
    checkpoint = folder / "start.safetensors"
    serialization.save_ensemble(str(checkpoint), ensemble)

    arm_model = load_arm_model("panda")
    kinematics = ArmKinematics(arm_model)
    start_ee = kinematics.ee_position(Q0[None])[0]
    specs = [s for s in node_specs_from_config(config_path("mbrl_sim"), {
        "mpc_controller": {"mode": "ilqr", "model_source": "learned", "goal_xyz_m": [float(v) for v in start_ee]},
        "dynamics_learner": {"checkpoint": str(checkpoint), "bag_paths": [str(folder / "exploration")],
                             "semi_parametric": True, "trial_steps": STEPS, "model_dir": str(folder / "models"),
                             # Long enough (>= 15 s on an idle core) to still train when the goal is sent.
                             "ensemble_epochs_per_update": LEARNER_EPOCHS},
    }) if s.executable in ("sim_node", "dynamics_learner", "mpc_controller")]
    controller: dict[str, str] = {}
    learner: dict[str, str] = {}

    def on_diagnostics(msg: DiagnosticArray) -> None:
        controller.update(status_values(msg, "mpc_controller"))
        learner.update(status_values(msg, "dynamics_learner"))

    client_node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, qos.DIAGNOSTICS)
    goals = client_node.create_publisher(PointStamped, "/mbrl/goal", 10)
    joints = TopicMonitor(client_node, JointState, "joint_states", qos.JOINT_STATES_RECORD)
    decoder = JointStateDecoder(arm_model.spec.joint_names)
    with ProcessGroup(specs, log_dir=folder / "logs", echo=False) as group:
        assert wait_for(lambda: controller.get("phase") == "planning" and int(controller.get("plans", "0")) > 20, 90.0), \
            f"the controller never planned on the checkpoint at the start pose: {controller}, exited {group.exited()}"
        at_goal_send = {"learner": dict(learner), "controller": dict(controller)}
        msg = PointStamped()
        msg.header.frame_id = "panda_link0"
        msg.point.x, msg.point.y, msg.point.z = (float(v) for v in GOAL)
        goals.publish(msg)
        times, distances, start = [], [], time.monotonic()
        while (now := time.monotonic()) - start < REACH_S:
            q = decoder.decode(joints.latest)[:7]
            times.append(now - start)
            distances.append(float(np.linalg.norm(kinematics.ee_position(q[None])[0] - GOAL)))
            time.sleep(0.05)
        trained = wait_for(lambda: int(learner.get("ensemble_trainings", "0")) >= 1, 240.0)
        yield {"times": np.array(times), "distances": np.array(distances), "at_goal_send": at_goal_send,
               "controller": dict(controller), "learner": dict(learner), "trained": trained, "exited": group.exited()}


def test_ilqr_on_a_learned_checkpoint_reaches_a_goal_sent_on_the_goal_topic_while_the_learner_trains(reach):
    d, t = reach["distances"], reach["times"]
    sent = reach["at_goal_send"]
    assert sent["controller"]["model_version"] != "0" and sent["controller"]["mode"] == "ilqr", sent
    assert sent["learner"].get("ensemble_trainings") == "0", f"the learner had finished training when the goal was sent: {sent}"
    assert reach["trained"], f"the learner never finished training on the bags: {reach['learner']}"
    assert d[0] > 0.15, f"the arm did not start at the start pose: {d[0] * 100:.1f} cm from the goal"
    below = np.flatnonzero(d < 0.02)
    c = reach["controller"]
    print(f"from {d[0] * 100:.1f} cm: < 2 cm after {t[below[0]] if below.size else float('nan'):.2f} s, "
          f"{d[-1] * 100:.2f} cm at {t[-1]:.0f} s; plan time p50/p95 {c.get('plan_time_p50_ms')}/{c.get('plan_time_p95_ms')} ms, "
          f"stale {c.get('stale_plans')}; learner at the goal: {sent['learner'].get('ensemble_trainings')} trainings done, "
          f"model v{sent['controller'].get('model_version')} -> v{c.get('model_version')}")
    assert below.size, f"never within 2 cm: closest {d.min() * 100:.1f} cm; {reach['controller']}"
    assert t[-1] - t[below[0]] > 2.0 and d[t > t[-1] - 2.0].max() < 0.02, (
        f"reached at {t[below[0]]:.1f} s but left: last 2 s up to {d[t > t[-1] - 2.0].max() * 100:.1f} cm; "
        f"{reach['controller']}")
    assert reach["controller"]["plan_failures"] == "0" and not reach["exited"], reach
