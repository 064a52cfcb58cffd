"""``mbrl-ros param`` against a running sim_node, through rclpy's parameter client."""

import pytest

from mbrl_ros import cli
from mbrl_ros.launcher import NodeSpec, config_path


@pytest.fixture(scope="module")
def sim(start_node):
    start_node(NodeSpec("sim_node", params_file=str(config_path("sim_panda"))))


def param(capsys, *args):
    code = cli.main(["param", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_get_and_describe_show_the_declared_parameters(sim, capsys):
    code, out, _ = param(capsys, "list", "sim_node")
    assert code == 0 and {"command_timeout_s", "publish_rate_hz", "robot"} <= set(out.split())
    assert param(capsys, "get", "sim_node", "command_timeout_s")[:2] == (0, "command_timeout_s: 0.05\n")
    code, out, _ = param(capsys, "describe", "sim_node", "command_timeout_s")
    assert code == 0 and "type: DOUBLE" in out and "range: [" in out


def test_set_takes_effect_and_an_integer_is_sent_as_a_double(sim, capsys):
    assert param(capsys, "set", "sim_node", "command_timeout_s", "0.08")[0] == 0
    assert param(capsys, "get", "sim_node", "command_timeout_s")[1] == "command_timeout_s: 0.08\n"
    assert param(capsys, "set", "sim_node", "command_timeout_s", "1")[0] == 0
    assert param(capsys, "get", "sim_node", "command_timeout_s")[1] == "command_timeout_s: 1.0\n"
    assert param(capsys, "set", "sim_node", "command_timeout_s", "0.05")[0] == 0


@pytest.mark.parametrize("name, value, reason", [
    ("command_timeout_s", "100.0", "range"),
    ("robot", "iiwa", "read-only"),
])
def test_a_refused_value_names_node_parameter_and_reason_and_keeps_the_old_value(sim, capsys, name, value, reason):
    before = param(capsys, "get", "sim_node", name)[1]
    code, _, err = param(capsys, "set", "sim_node", name, value)
    assert code == 1
    assert "/sim_node" in err and name in err and reason in err.lower()
    assert param(capsys, "get", "sim_node", name)[1] == before


def test_an_unknown_parameter_or_node_is_named_in_the_error(sim, capsys):
    code, _, err = param(capsys, "get", "sim_node", "no_such_parameter")
    assert code == 1 and "/sim_node" in err and "no_such_parameter" in err
    code, _, err = param(capsys, "list", "no_such_node")
    assert code == 1 and "/no_such_node is not running" in err
