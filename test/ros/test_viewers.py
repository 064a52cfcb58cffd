"""What a viewer (RViz) gets from the running nodes: the URDF the sim loaded on robot_description,
the arm's links as mesh markers where they are, the plan and the goal, all in frames of that URDF;
and a controller that cannot act says what it is waiting for."""

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped
from nav_msgs.msg import Path as PathMsg
from sensor_msgs.msg import JointState
from std_msgs.msg import String
from visualization_msgs.msg import Marker, MarkerArray

from mbrl_ros.dynamics.kinematics import load_arm_model
from mbrl_ros.launcher import NodeProcess, NodeSpec
from mbrl_ros.ros import qos
from mbrl_ros.ros.conversions import JointStateDecoder
from mbrl_ros.ros.diagnostics import status_values
from mbrl_ros.ros.spin import wait_for
from mbrl_ros.ros.topic_monitor import TopicMonitor
from mbrl_ros.sim.robots import robot_spec

GOAL = (0.40, -0.20, 0.50)


@pytest.fixture(scope="module")
def system(client_node, tmp_path_factory):
    """sim_node and a controller in ilqr mode on the learned model, with no learner running."""
    logs = tmp_path_factory.mktemp("viewer_logs")
    specs = [NodeSpec("sim_node"), NodeSpec("mpc_controller", parameters={
        "mode": "ilqr", "model_source": "learned", "goal_xyz_m": list(GOAL)})]
    processes = []
    try:
        for spec in specs:
            log = open(logs / f"{spec.executable}.log", "w")
            processes.append(NodeProcess(spec, stdout=log, stderr=log, cwd=logs))
        yield {spec.executable: logs / f"{spec.executable}.log" for spec in specs}
    finally:
        for process in processes:
            process.stop()


def latest(client_node, msg_type, topic, profile, timeout_s=30.0):
    monitor = TopicMonitor(client_node, msg_type, topic, profile)
    assert wait_for(lambda: monitor.count > 0, timeout_s), f"nothing on {topic}"
    return monitor


def test_robot_description_is_the_urdf_the_sim_loaded_with_its_meshes_found(system, client_node):
    # Subscribed after the sim started: transient local delivers it to a late viewer.
    urdf = latest(client_node, String, "robot_description", qos.LATCHED).latest.data
    loaded = Path(robot_spec("panda").urdf_path).read_text()
    mesh = re.compile(r'filename="[^"]*"')
    assert mesh.sub("", urdf) == mesh.sub("", loaded), "the same URDF, only the mesh paths resolved"
    root = ET.fromstring(urdf)
    assert [j.get("name") for j in root.findall("joint")] == [j.get("name") for j in ET.fromstring(loaded).findall("joint")]
    meshes = [m.get("filename") for m in root.iter("mesh")]
    assert meshes and all(m.startswith("file://") and Path(m[len("file://"):]).is_file() for m in meshes)


def test_every_frame_the_nodes_publish_is_a_link_of_the_description(system, client_node):
    links = {link.get("name") for link in ET.fromstring(
        latest(client_node, String, "robot_description", qos.LATCHED).latest.data).findall("link")}
    frames = {
        "robot_markers": {m.header.frame_id for m in latest(client_node, MarkerArray, "robot_markers",
                                                            qos.LINK_MARKERS).latest.markers},
        "/mbrl/plan": {latest(client_node, PathMsg, "/mbrl/plan", qos.LATCHED).latest.header.frame_id},
        "/mbrl/goal_marker": {latest(client_node, Marker, "/mbrl/goal_marker", qos.LATCHED).latest.header.frame_id},
    }
    for topic, published in frames.items():
        assert published and published <= links, f"{topic} is in {published}, not a link of {sorted(links)}"


def test_the_link_markers_are_where_the_arm_is(system, client_node):
    """Link 7's mesh marker sits at link 7's origin computed by forward kinematics (Pinocchio) from
    the joint state, within a millimetre (the arm rests at its start pose, under zero torque)."""
    import pinocchio as pin

    markers = latest(client_node, MarkerArray, "robot_markers", qos.LINK_MARKERS)
    state = latest(client_node, JointState, "joint_states", qos.JOINT_STATES_SUB).latest
    arm = load_arm_model("panda")
    q = JointStateDecoder(list(arm.spec.joint_names)).decode(state)[:arm.model.nq]
    data = arm.model.createData()
    pin.framesForwardKinematics(arm.model, data, q)
    expected = data.oMf[arm.model.getFrameId("panda_link7")].translation
    link7 = [m for m in markers.latest.markers if m.mesh_resource.endswith("link7.obj")]
    assert len(link7) == 1, [m.mesh_resource for m in markers.latest.markers]
    p = link7[0].pose.position
    assert np.linalg.norm(np.array([p.x, p.y, p.z]) - expected) < 1e-3


def test_the_goal_marker_follows_a_new_goal(system, client_node):
    goals = latest(client_node, Marker, "/mbrl/goal_marker", qos.LATCHED)
    p = goals.latest.pose.position
    assert np.allclose([p.x, p.y, p.z], GOAL)
    new = PointStamped()
    new.header.frame_id = "panda_link0"
    new.point.x, new.point.y, new.point.z = 0.35, 0.25, 0.55
    client_node.create_publisher(PointStamped, "/mbrl/goal", 10).publish(new)

    def moved():
        q = goals.latest.pose.position
        return np.allclose([q.x, q.y, q.z], [0.35, 0.25, 0.55])

    assert wait_for(moved, 10.0), "the goal marker did not move to the new goal"


def test_a_controller_without_a_model_says_it_waits_for_one(system, client_node):
    diagnostics = TopicMonitor(client_node, DiagnosticArray, "/diagnostics", qos.DIAGNOSTICS)

    def waiting():
        msg = diagnostics.latest
        values = status_values(msg, "mpc_controller") if msg is not None else None
        return values and values.get("waiting_for")

    assert wait_for(lambda: "learned model on /mbrl/model" in (waiting() or ""), 30.0), waiting()
    log = system["mpc_controller"].read_text()
    assert "waiting for a learned model on /mbrl/model (or set model_source to physics)" in log, log[-2000:]
