"""The learner killed with SIGKILL while its ensemble trains, then restarted on the same
``model_dir``: it resumes from its latest checkpoint (the same weights, the next model version),
the controller keeps its torque rate and its last model while the learner is gone, and learning
goes on after the restart.

The sim_node, mpc_controller (iLQR on the learned ensemble) and dynamics_learner run as processes;
the test plays the recorder: it publishes episodes of trials simulated in-process on the same
PyBullet arm (random torques around the home pose), an iteration at a time. Training is known to
be under way from the learner's log (``training the ensemble: epoch 1 ...`` on /rosout); the kill
comes from that log's callback."""

import os
import signal
import threading
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Log
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float64MultiArray, UInt8MultiArray

from mbrl_ros.data.episodes import Episodes
from mbrl_ros.dynamics import serialization
from mbrl_ros.launcher import NodeSpec, config_path
from mbrl_ros.ros import payloads, qos
from mbrl_ros.ros.diagnostics import status_values
from mbrl_ros.ros.spin import wait_for
from mbrl_ros.ros.topic_monitor import TopicMonitor
from mbrl_ros.sim import SimSettings, SimulatedArm

TRIALS, STEPS, DT_S = 5, 40, 0.05
DEAD_S = 3.0
ROSOUT = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def simulated_trials(arm: SimulatedArm, rng, iteration: int) -> list[Episodes]:
    """One iteration's trials on the PyBullet arm: from home, a random torque held each step."""
    out = []
    home = np.asarray(arm.spec.home_positions_rad)
    for k in range(TRIALS):
        state = arm.reset(home)
        x, u = [state.x], []
        for _ in range(STEPS):
            u.append(arm.clip_torque(rng.normal(0.0, 3.0, arm.nq)))
            state = arm.step(u[-1], int(round(DT_S * 1000)))
            x.append(state.x)
        out.append(Episodes(np.array(x)[None], np.array(u)[None], (DT_S * np.arange(STEPS + 1))[None], np.zeros(3),
                            {"trial": iteration * TRIALS + k, "iteration": iteration, "dt_s": DT_S,
                             "joint_names": list(arm.joint_names), "mode": "lqr_flm"}))
    return out


@pytest.fixture(scope="module")
def system(start_node, client_node, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("models")
    learner_spec = NodeSpec("dynamics_learner", parameters={
        "model_dir": str(model_dir), "trials_per_iteration": TRIALS, "trial_steps": STEPS, "ensemble_enabled": True,
        "ensemble_epochs_per_update": 50})
    start_node(NodeSpec("sim_node", params_file=str(config_path("sim_panda")), parameters={"publish_clock": False}))
    start_node(NodeSpec("mpc_controller", parameters={
        "mode": "ilqr", "model_source": "learned", "reset_service": "", "settle_s": 0.0, "horizon_steps": 5,
        "ilqr_max_iterations": 1, "plan_rate_hz": 5.0}))
    learner = start_node(learner_spec)
    seen = {"diag": {"mpc_controller": {}, "dynamics_learner": {}}, "samples": [], "models": [], "logs": []}

    def on_diag(msg: DiagnosticArray) -> None:
        for name in seen["diag"]:
            values = status_values(msg, name)
            if values:
                seen["diag"][name] = values
                seen["samples"].append((time.monotonic(), name, values))

    def on_model(msg: UInt8MultiArray) -> None:
        data, meta = payloads.decode_model(msg)
        if meta["kind"] == "ensemble":
            seen["models"].append((time.monotonic(), data, meta))

    client_node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, qos.DIAGNOSTICS)
    client_node.create_subscription(UInt8MultiArray, "/mbrl/model", on_model, qos.MODEL)
    commands = TopicMonitor(client_node, Float64MultiArray, "effort_controller/commands", qos.COMMANDS)
    episodes = client_node.create_publisher(UInt8MultiArray, "/mbrl/episodes", qos.EPISODES)
    assert wait_for(lambda: episodes.get_subscription_count() >= 2 and seen["diag"]["dynamics_learner"], 60.0)
    with SimulatedArm(SimSettings(robot="panda")) as arm:
        rng = np.random.default_rng(0)
        iterations = [simulated_trials(arm, rng, i) for i in range(3)]
    yield {"learner": learner, "respawn": lambda: start_node(learner_spec), "model_dir": model_dir, "seen": seen,
           "commands": commands, "episodes": episodes, "iterations": iterations}


def _publish(system, iteration: int) -> None:
    for episode in system["iterations"][iteration]:
        system["episodes"].publish(payloads.encode_episodes(episode))


def test_a_learner_killed_while_training_resumes_from_its_checkpoint_and_the_controller_carries_on(system, client_node):
    seen, diag, model_dir = system["seen"], system["seen"]["diag"], system["model_dir"]
    learner = system["learner"]
    _publish(system, 0)
    assert wait_for(lambda: seen["models"] and diag["mpc_controller"].get("model_version") == str(seen["models"][-1][2]["model_version"]),
                    120.0), f"the controller has no ensemble of the learner's: {diag}"
    version_before = seen["models"][-1][2]["model_version"]

    # The next iteration: killed once its ensemble training has begun (the learner's clock is the
    # system's: a log stamped after the iteration was sent is of its training).
    killed = threading.Event()
    sent_ns = time.time_ns()

    def on_log(msg: Log) -> None:
        stamp_ns = msg.stamp.sec * 1_000_000_000 + msg.stamp.nanosec
        if msg.name == "dynamics_learner" and msg.msg.startswith("training the ensemble") and stamp_ns > sent_ns \
                and not killed.is_set():
            os.kill(learner.pid, signal.SIGKILL)
            killed.set()

    subscription = client_node.create_subscription(Log, "/rosout", on_log, ROSOUT)
    try:
        _publish(system, 1)
        assert killed.wait(120.0), "the ensemble did not train on the second iteration"
    finally:
        client_node.destroy_subscription(subscription)
    killed_at = time.monotonic()
    assert learner.process.wait(10.0) == -signal.SIGKILL
    # It was training: the ensemble it was training never came out.
    assert [m["model_version"] for _, _, m in seen["models"]] == [version_before], "the training finished before the kill"
    on_disk = serialization.latest_version(model_dir)
    checkpoint_arrays, checkpoint_meta = serialization.load(str(model_dir / "ensemble_latest.safetensors"), "ensemble")
    assert checkpoint_meta["model_version"] == version_before
    for path in model_dir.iterdir():  # under a final name only whole checkpoints (a write the kill cut is a hidden .tmp-)
        assert path.name.startswith(".tmp-") or serialization.load(str(path))

    # Meanwhile the controller keeps its torque rate and its last model.
    system["commands"].reset()
    time.sleep(DEAD_S)
    rate = system["commands"].summary()
    dead = [v["model_version"] for t, name, v in seen["samples"] if name == "mpc_controller" and t > killed_at]
    assert dead and set(dead) == {str(version_before)}, dead
    assert rate.rate_hz > 200.0, rate

    # Restarted on its folder: its first model is the checkpoint's ensemble, the next version.
    restarted_at = time.monotonic()
    system["respawn"]()
    assert wait_for(lambda: len(seen["models"]) >= 2, 60.0), "the restarted learner publishes no model"
    _, data, meta = seen["models"][1]
    assert meta.get("resumed") is True and meta["source"] == str(model_dir / "ensemble_latest.safetensors"), meta
    assert meta["model_version"] == on_disk + 1
    resumed_arrays, _ = serialization.from_bytes(data)
    assert resumed_arrays.keys() == checkpoint_arrays.keys()
    assert all(np.array_equal(resumed_arrays[k], checkpoint_arrays[k]) for k in checkpoint_arrays), "it starts from scratch"
    assert wait_for(lambda: diag["mpc_controller"]["model_version"] == str(meta["model_version"]), 30.0), diag["mpc_controller"]
    resumed_s = time.monotonic() - restarted_at

    # Learning goes on: the episodes it missed come again (transient local), and the next iteration.
    _publish(system, 2)
    assert wait_for(lambda: int(diag["dynamics_learner"].get("ensemble_trainings", 0)) >= 1
                    and int(diag["mpc_controller"]["model_version"]) > meta["model_version"], 180.0), diag
    # Each training scored the ensemble on the trials it was about to learn from.
    scored = diag["dynamics_learner"]
    assert float(scored["unseen_20step_latest_mrad"]) > float(scored["unseen_1step_latest_mrad"]) > 0.0, scored
    versions = [m["model_version"] for _, _, m in seen["models"]]
    print(f"\nlearner SIGKILL during its 2nd ensemble training (its epoch 1 logged); controller on v{version_before} "
          f"throughout ({rate.rate_hz:.1f} Hz over {DEAD_S:g} s, p99 period {rate.p99_s * 1e3:.2f} ms); checkpoints up to "
          f"v{on_disk}; restarted: resumed v{meta['model_version']} = v{version_before}'s weights, at the controller "
          f"{resumed_s:.1f} s after the restart; ensembles {versions}, trained after it: "
          f"{diag['dynamics_learner']['ensemble_trainings']}; on the trials it then trained on, 1/5/20-step "
          f"{scored['unseen_1step_latest_mrad']} / {scored['unseen_5step_latest_mrad']} / {scored['unseen_20step_latest_mrad']} mrad")
