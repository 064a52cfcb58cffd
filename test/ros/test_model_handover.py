"""Models reach the controller from the learner over /mbrl/model: a malformed payload is rejected
and the previous model stays in use; killing the learner leaves the controller on its last model."""

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from std_msgs.msg import Float64MultiArray, UInt8MultiArray

from mbrl_ros.dynamics import serialization
from mbrl_ros.dynamics.ensemble import EnsembleDynamics, EnsembleSettings
from mbrl_ros.launcher import NodeSpec
from mbrl_ros.ros import payloads, qos
from mbrl_ros.ros.diagnostics import status_values
from mbrl_ros.ros.spin import wait_for
from mbrl_ros.ros.topic_monitor import TopicMonitor

from _fake_arm import FakeArm


@pytest.fixture(scope="module")
def system(start_node, client_node, tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    rng = np.random.default_rng(0)
    ensemble = EnsembleDynamics(14, 7, 0.05, EnsembleSettings(n_members=2, n_elites=1, hidden_units=16, hidden_layers=1,
                                                              max_epochs_per_train=2))
    x = rng.normal(size=(200, 14)) * 0.1
    u = rng.normal(size=(200, 7))
    ensemble.add_transitions(x, u, x + 0.01 * np.concatenate([x[:, 7:], u], axis=1))
    ensemble.train()
    checkpoint = folder / "start.safetensors"
    serialization.save_ensemble(str(checkpoint), ensemble)
    arm = FakeArm(client_node)
    learner = start_node(NodeSpec("dynamics_learner", parameters={
        "checkpoint": str(checkpoint), "model_dir": str(folder / "out"), "ensemble_enabled": True}))

    def restart():  # the same folder, no checkpoint
        return start_node(NodeSpec("dynamics_learner", parameters={"model_dir": str(folder / "out"), "ensemble_enabled": True}))

    start_node(NodeSpec("mpc_controller", parameters={
        "mode": "ilqr", "model_source": "learned", "reset_service": "", "settle_s": 0.0, "horizon_steps": 5,
        "ilqr_max_iterations": 1, "plan_rate_hz": 5.0}))
    diag: dict[str, str] = {}
    client_node.create_subscription(DiagnosticArray, "/diagnostics",
                                    lambda m: diag.update(status_values(m, "mpc_controller")), qos.DIAGNOSTICS)
    commands = TopicMonitor(client_node, Float64MultiArray, "effort_controller/commands", qos.COMMANDS)
    models = client_node.create_publisher(UInt8MultiArray, "/mbrl/model", qos.MODEL)
    assert wait_for(lambda: diag.get("model_version") == "1", 60.0), f"controller never got the learner's model: {diag}"
    yield learner, diag, commands, models, restart
    arm.running = False


def fresh(diag: dict) -> dict:
    diag.clear()
    assert wait_for(lambda: "model_version" in diag, 5.0)
    return dict(diag)


def test_a_malformed_model_is_rejected_and_the_previous_one_stays(system):
    _, diag, _, models, _ = system
    before = fresh(diag)
    models.publish(payloads.bytes_msg(payloads.MODEL_LABEL, b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}"))
    assert wait_for(lambda: int(diag.get("rejected_models", 0)) == int(before["rejected_models"]) + 1, 10.0)
    assert fresh(diag)["model_version"] == "1"


def test_killing_the_learner_leaves_the_controller_on_its_last_model(system):
    learner, diag, commands, _, _ = system
    learner.process.kill()
    learner.process.wait()
    time.sleep(1.0)
    commands.reset()
    wait_for(lambda: False, 1.0)
    assert commands.summary().rate_hz > 200.0, "torques keep flowing"
    after = fresh(diag)
    assert after["model_version"] == "1" and after["mode"] == "ilqr"


def test_a_restarted_learner_resumes_from_its_latest_checkpoint_with_the_next_model_version(system):
    learner, diag, _, _, restart = system
    assert learner.poll() is not None, "runs after the test that kills the learner"
    assert fresh(diag)["model_version"] == "1"
    restart()
    assert wait_for(lambda: diag.get("model_version") == "2", 60.0), f"no resumed model reached the controller: {diag}"
