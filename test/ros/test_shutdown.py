"""Ctrl-C ends every node cleanly: the four-node system, busy (the sim stepping, the controller
planning, the recorder recording, the learner loaded), stopped with SIGINT several times; every
node exits with code 0 and writes no traceback."""

import time

import pytest

from mbrl_ros.launcher import ProcessGroup, config_path, node_specs_from_config

ROUNDS = 3


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
