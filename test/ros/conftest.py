"""Fixtures for multi-process ROS tests: a client node spun in the test process, node processes
that are always stopped."""

import pytest

from mbrl_ros.launcher import NodeProcess, NodeSpec
from mbrl_ros.ros.spin import spinning_node


@pytest.fixture(scope="module")
def client_node():
    with spinning_node("test_client") as node:
        yield node


@pytest.fixture(scope="module")
def start_node(tmp_path_factory):
    """Start a node executable as its own process (working directory: a temp folder, so default
    output folders never land in the checkout); every one started is stopped at module end."""
    started: list[NodeProcess] = []
    logs = tmp_path_factory.mktemp("node_logs")

    def start(spec: NodeSpec) -> NodeProcess:
        log = open(logs / f"{spec.executable}_{len(started)}.log", "w")
        proc = NodeProcess(spec, stdout=log, stderr=log, cwd=logs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
        assert proc.poll() is not None
