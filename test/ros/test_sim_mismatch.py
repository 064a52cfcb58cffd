"""sim_node's model-mismatch parameters, over ROS: the profile and its options in /diagnostics, live
changes, and bad values refused with a reason."""

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from sensor_msgs.msg import JointState

from mbrl_ros.launcher import NodeProcess, NodeSpec, config_path
from mbrl_ros.ros import qos
from mbrl_ros.ros.diagnostics import status_values
from mbrl_ros.ros.spin import wait_for
from mbrl_ros.ros.topic_monitor import TopicMonitor


@pytest.fixture(scope="module")
def sim(start_node, client_node):
    proc = start_node(NodeSpec("sim_node", params_file=str(config_path("sim_panda")),
                               parameters={"mismatch": "realistic", "payload_mass_kg": 2.0, "diagnostics_period_s": 0.1}))
    joints = TopicMonitor(client_node, JointState, "joint_states", qos.JOINT_STATES_SUB)
    diagnostics = TopicMonitor(client_node, DiagnosticArray, "/diagnostics", qos.DIAGNOSTICS)
    assert wait_for(lambda: joints.count > 50 and diagnostics.count > 0, 30.0), f"sim exit code {proc.poll()}"
    client = AsyncParameterClient(client_node, "sim_node")
    assert client.wait_for_services(timeout_sec=10.0)
    return proc, joints, diagnostics, client


def values(diagnostics) -> dict:
    diagnostics.reset()
    assert wait_for(lambda: diagnostics.count >= 1, 5.0)
    return status_values(diagnostics.latest, "sim_node")


def set_parameter(client, name, value):
    future = client.set_parameters([Parameter(name, value=value)])
    assert wait_for(future.done, 5.0)
    return future.result().results[0]


def test_diagnostics_report_the_profile_and_the_options_overriding_it(sim):
    _, _, diagnostics, _ = sim
    v = values(diagnostics)
    assert v["mismatch"] == "realistic" and v["mismatch_active"] == "True"
    assert float(v["payload_mass_kg"]) == 2.0, "an option given beside the profile overrides it"
    assert float(v["command_latency_ms"]) == 2.0 and float(v["position_noise_rad"]) == 1e-4
    assert eval(v["coulomb_friction_nm"]) == [0.55, 0.87, 0.64, 1.28, 0.84, 0.30, 0.56]


def test_noise_changes_live_and_the_joint_states_carry_it(sim):
    _, joints, diagnostics, client = sim
    assert set_parameter(client, "position_noise_rad", 0.01).successful
    assert wait_for(lambda: float(values(diagnostics)["position_noise_rad"]) == 0.01, 5.0)
    samples = []
    joints.reset()
    assert wait_for(lambda: joints.count > 5, 5.0)
    for _ in range(200):
        count = joints.count
        assert wait_for(lambda: joints.count > count, 2.0)
        samples.append(np.asarray(joints.latest.position))
    # The second difference of white noise has σ sqrt(6); the sagging arm's (its acceleration times
    # a few ms squared) is under a per cent of that.
    second = np.diff(np.array(samples), n=2, axis=0)
    assert np.std(second) / np.sqrt(6) == pytest.approx(0.01, rel=0.1)
    assert set_parameter(client, "position_noise_rad", 1e-4).successful


def test_bad_values_are_refused_with_a_reason(sim):
    _, _, diagnostics, client = sim
    result = set_parameter(client, "viscous_friction_nms_per_rad", [1.0, 2.0])
    assert not result.successful and "one per joint" in result.reason
    result = set_parameter(client, "torque_gain", [3.0] * 7)
    assert not result.successful and "[0.5, 1.5]" in result.reason
    result = set_parameter(client, "payload_mass_kg", 3.0)
    assert not result.successful and "read-only" in result.reason
    assert float(values(diagnostics)["payload_mass_kg"]) == 2.0


def test_a_bad_start_up_value_stops_the_node_with_its_reason(tmp_path):
    log = tmp_path / "sim.log"
    with open(log, "w") as out:
        proc = NodeProcess(NodeSpec("sim_node", params_file=str(config_path("sim_panda")),
                                    parameters={"payload_mass_kg": 1.0, "payload_inertia_kgm2": [0.1, 0.0, 0.0]}),
                           stdout=out, stderr=out, cwd=tmp_path)
        try:
            assert wait_for(lambda: proc.poll() is not None, 30.0)
        finally:
            proc.stop()
    assert proc.poll() != 0
    assert "no rigid body" in log.read_text()
