"""Ctrl-C ends every node cleanly: the four-node system, busy (the sim stepping, the controller
planning, the recorder recording, the learner loaded), stopped with SIGINT several times; every
node exits with code 0 and writes no traceback."""

import os
import signal
import time

import pytest

from mbrl_ros.launcher import ProcessGroup, config_path, node_specs_from_config

from _processes import alive, descendants

#: Rounds in `make test`; MBRL_SHUTDOWN_ROUNDS=10 for the long check (about 12 s a round).
ROUNDS = int(os.environ.get("MBRL_SHUTDOWN_ROUNDS", "3"))


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_sigint_ends_every_node_with_exit_code_0_and_no_traceback(round_, tmp_path):
    specs = node_specs_from_config(config_path("mbrl_sim"), {
        "mpc_controller": {"mode": "ilqr", "model_source": "physics"},
        "trajectory_recorder": {"bag_dir": str(tmp_path / "bags")},
        "dynamics_learner": {"model_dir": str(tmp_path / "models")},
    })
    group = ProcessGroup(specs, log_dir=tmp_path / "logs", echo=False)
    with group:
        # Busy: torques flowing and plans being made; stopped at a different moment each round.
        time.sleep(8.0 + 0.37 * round_)
        assert not group.exited(), f"a node died before the stop: {group.exited()}"
    codes = {p.spec.executable: p.poll() for p in group.processes}
    logs = {name: (tmp_path / "logs" / f"{name}.log").read_text() for name in codes}
    broken = {name: log[log.find("Traceback"):][:600] for name, log in logs.items() if "Traceback" in log}
    assert all(code == 0 for code in codes.values()) and not broken, (codes, broken)


@pytest.mark.parametrize("delay_s", [0.5, 2.5])
def test_sigint_while_the_nodes_start_ends_them_with_exit_code_0_and_no_traceback(delay_s, tmp_path):
    """Ctrl-C right after ``ros2 launch``: each node is still importing torch, Pinocchio and rclpy
    (0.5 s) or building itself (2.5 s). It must end as quietly as a running node does."""
    specs = node_specs_from_config(config_path("mbrl_sim"), {
        "trajectory_recorder": {"bag_dir": str(tmp_path / "bags")},
        "dynamics_learner": {"model_dir": str(tmp_path / "models")},
    })
    group = ProcessGroup(specs, log_dir=tmp_path / "logs", echo=False).start()
    try:
        time.sleep(delay_s)
    finally:
        # SIGINT alone: the escalation to SIGTERM would hide a node that ignores Ctrl-C.
        for proc in group.processes:
            proc._signal(signal.SIGINT)
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and any(p.poll() is None for p in group.processes):
            time.sleep(0.05)
        group.stop()
    codes = {p.spec.executable: p.poll() for p in group.processes}
    logs = {name: (tmp_path / "logs" / f"{name}.log").read_text() for name in codes}
    broken = {name: log[log.find("Traceback"):][:600] for name, log in logs.items() if "Traceback" in log}
    assert all(code == 0 for code in codes.values()) and not broken, (codes, broken)


def test_sigterm_to_the_demo_stops_the_nodes_it_started(tmp_path):
    """``mbrl-ros demo`` stopped by SIGTERM (a service manager, ``kill``) takes its four nodes with it."""
    import subprocess
    import sys
    from pathlib import Path

    demo = subprocess.Popen([str(Path(sys.executable).parent / "mbrl-ros"), "demo", "--runs-dir", str(tmp_path),
                             "--iterations", "1", "--trials", "2", "--steps", "20", "--hold-s", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    nodes: list[int] = []
    try:
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline and len(nodes) < 4:
            time.sleep(0.5)
            nodes = [p for p in descendants(demo.pid) if any(
                name in open(f"/proc/{p}/cmdline").read() for name in ("sim_node", "trajectory_recorder", "dynamics_learner",
                                                                       "mpc_controller"))] if demo.poll() is None else []
        assert len(nodes) >= 4, "the demo started its nodes"
        time.sleep(3.0)  # the nodes running, the demo waiting on them
        demo.send_signal(signal.SIGTERM)
        code = demo.wait(timeout=30.0)
        output = demo.stdout.read()
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
        for pid in descendants(demo.pid) + nodes:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    left = [pid for pid in nodes if alive(pid)]
    assert not left, f"nodes left running after the demo's SIGTERM: {left}"
    assert code == 130, (code, output[-1500:])
