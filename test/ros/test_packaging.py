"""The package as users install it: launch files name installed executables, shipped YAML only
sets declared parameters, and a colcon build runs."""

import ast
import os
from dataclasses import fields
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from rclpy.parameter_client import AsyncParameterClient
from sensor_msgs.msg import JointState

from mbrl_ros.launcher import NodeSpec
from mbrl_ros.ros import qos
from mbrl_ros.ros.spin import wait_for
from mbrl_ros.ros.topic_monitor import TopicMonitor

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))
CONFIG_FILES = sorted((ROOT / "config").glob("*.yaml"))


def installed_executables() -> set[str]:
    return {ep.name for ep in metadata.distribution("mbrl_ros").entry_points if ep.group == "console_scripts"}


def launched_executables(path: Path) -> set[str]:
    """Executables of every ``Node(package="mbrl_ros", executable=...)`` in a launch file."""
    names = set()
    for call in ast.walk(ast.parse(path.read_text())):
        if isinstance(call, ast.Call) and getattr(call.func, "id", getattr(call.func, "attr", None)) == "Node":
            kwargs = {k.arg: k.value for k in call.keywords}
            if isinstance(kwargs.get("package"), ast.Constant) and kwargs["package"].value == "mbrl_ros":
                names.add(kwargs["executable"].value)
    return names


def node_settings() -> dict:
    """Every node executable's settings classes and their parameter tables (the sim_node's
    mismatch options are a table of their own)."""
    from mbrl_ros.control.controller_settings import PARAMETERS, ControllerSettings
    from mbrl_ros.data.trial_assembly import RECORDER_PARAMETERS, RecorderNodeSettings
    from mbrl_ros.dynamics.learner import LEARNER_PARAMETERS, LearnerNodeSettings
    from mbrl_ros.sim.arm import SIM_PARAMETERS, SimNodeSettings
    from mbrl_ros.sim.mismatch import MISMATCH_PARAMETERS, MismatchSettings

    return {
        "sim_node": [(SimNodeSettings, SIM_PARAMETERS), (MismatchSettings, MISMATCH_PARAMETERS)],
        "trajectory_recorder": [(RecorderNodeSettings, RECORDER_PARAMETERS)],
        "dynamics_learner": [(LearnerNodeSettings, LEARNER_PARAMETERS)],
        "mpc_controller": [(ControllerSettings, PARAMETERS)],
    }


#: Parameters every rclpy node has, not settings of ours.
RCLPY_PARAMETERS = {"use_sim_time"}


def test_every_node_executable_has_a_settings_table():
    assert {p.name for p in CONFIG_FILES} >= {"mbrl_sim.yaml", "sim_panda.yaml"} and LAUNCH_FILES
    assert set(node_settings()) == installed_executables() - {"mbrl-ros"}
    for executable, pairs in node_settings().items():
        for cls, table in pairs:
            assert set(table) == {f.name for f in fields(cls)}, executable


@pytest.mark.parametrize("config_file", CONFIG_FILES, ids=lambda p: p.name)
def test_config_sections_set_valid_settings_of_real_nodes(config_file):
    """Every section is a node executable, sets only parameters its settings table has, with the
    type of the default (ROS parameters are typed: 500 is not a double), and the values are valid."""
    tables = node_settings()
    for node_name, section in yaml.safe_load(config_file.read_text()).items():
        assert node_name in tables, f"{config_file.name}: no node executable {node_name!r}"
        values = {k: v for k, v in section["ros__parameters"].items() if k not in RCLPY_PARAMETERS}
        unknown = sorted(set(values) - {name for _, table in tables[node_name] for name in table})
        assert not unknown, f"{config_file.name}: {node_name} has no parameters {unknown}"
        for cls, table in tables[node_name]:
            _check_values(config_file.name, node_name, cls, {k: v for k, v in values.items() if k in table})


def _check_values(file_name: str, node_name: str, cls, values: dict) -> None:
    defaults = cls()
    for name, value in values.items():
        default = getattr(defaults, name)
        if isinstance(default, tuple):
            assert isinstance(value, list) and all(type(v) is type(default[0]) for v in value), (file_name, name)
        else:
            assert type(value) is type(default), f"{file_name}: {node_name}.{name} = {value!r} is not a {type(default).__name__}"
    settings = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    for name, value in values.items():
        assert getattr(settings, name) == (tuple(value) if isinstance(value, list) else value)


@pytest.mark.parametrize("launch_file", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_files_name_installed_executables(launch_file):
    named = launched_executables(launch_file)
    assert named, f"{launch_file.name} starts no mbrl_ros node"
    missing = named - installed_executables()
    assert not missing, f"{launch_file.name} names executables that are not entry points: {missing}"


@pytest.mark.parametrize("config_file", CONFIG_FILES, ids=lambda p: p.name)
def test_config_parameters_are_declared_by_their_nodes(config_file, start_node, client_node):
    sections = yaml.safe_load(config_file.read_text())
    for node_name, section in sections.items():
        assert node_name in installed_executables(), f"{config_file.name}: no executable for node {node_name}"
        start_node(NodeSpec(node_name, params_file=str(config_file)))
        client = AsyncParameterClient(client_node, node_name)
        assert client.wait_for_services(timeout_sec=30.0), f"{node_name} did not start"
        future = client.list_parameters()
        assert wait_for(future.done, 10.0)
        declared = set(future.result().result.names)
        undeclared = sorted(set(section["ros__parameters"]) - declared)
        assert not undeclared, f"{config_file.name} sets parameters {node_name} does not declare: {undeclared}"


def test_colcon_build_installs_a_runnable_sim_node(tmp_path, client_node):
    colcon = shutil.which("colcon") or str(Path(sys.executable).parent / "colcon")
    source = tmp_path / "src" / "mbrl_ros"
    shutil.copytree(
        ROOT, source, ignore=shutil.ignore_patterns(".venv*", ".git", "build", "install", "log", "runs", "*.egg-info", "__pycache__")
    )
    env = dict(os.environ, AMENT_PREFIX_PATH=sys.prefix)
    build = subprocess.run(
        [colcon, "build", "--base-paths", "src"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert build.returncode == 0, build.stdout + build.stderr
    install = tmp_path / "install" / "mbrl_ros"
    assert (install / "share" / "ament_index" / "resource_index" / "packages" / "mbrl_ros").is_file()
    for shipped in ("package.xml", "launch/sim.launch.py", "config/sim_panda.yaml"):
        assert (install / "share" / "mbrl_ros" / shipped).is_file(), shipped
    executable = install / "lib" / "mbrl_ros" / "sim_node"
    assert os.access(executable, os.X_OK)

    sourced = f". {tmp_path}/install/setup.bash && "
    where = subprocess.run(
        ["bash", "-c", sourced + f"{sys.executable} -c 'import mbrl_ros; print(mbrl_ros.__file__)'"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    )
    assert str(install) in where.stdout, f"the installed package is imported, not the checkout: {where.stdout}"

    joints = TopicMonitor(client_node, JointState, "/colcon/joint_states", qos.JOINT_STATES_SUB)
    proc = subprocess.Popen(
        ["bash", "-c", sourced + f"exec {executable} --ros-args -r __ns:=/colcon"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        assert wait_for(lambda: joints.count > 20, 30.0), "the colcon-installed sim_node publishes joint_states"
    finally:
        proc.send_signal(2)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
