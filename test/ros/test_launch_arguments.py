"""``ros2 launch mbrl_ros <file>`` and ``mbrl-ros run`` take the same arguments: names, choices,
defaults and the node parameters each sets, read from the launch files' source (``launch`` and
``launch_ros`` are not installable here), so the two bring-ups cannot drift apart."""

import argparse
import ast
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from mbrl_ros import bringup
from mbrl_ros.cli import build_parser, main
from mbrl_ros.launcher import config_path, share_dir
from mbrl_ros.run_folder import NAME_FORMAT, default_runs_dir

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))


class Arg(str):
    """``LaunchConfiguration("name")``."""


class Join(tuple):
    """``PathJoinSubstitution([...])``."""


class LaunchFile:
    """What a launch file declares and starts, evaluated from its source: literals, the names it
    imports from mbrl_ros (their real values), ``os``, and the package's share directory."""

    def __init__(self, path: Path) -> None:
        import os

        self.tree = ast.parse(path.read_text())
        self.scope = {"os": os, "str": str}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mbrl_ros":
                module = __import__(node.module, fromlist=[a.name for a in node.names])
                self.scope.update({a.asname or a.name: getattr(module, a.name) for a in node.names})
        function = next(n for n in self.tree.body if isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description")
        for statement in function.body:
            if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and isinstance(statement.targets[0], ast.Name):
                try:
                    self.scope[statement.targets[0].id] = self.value(statement.value)
                except ValueError:
                    pass  # actions (nodes, handlers): read from the calls themselves

    def value(self, expr):
        if isinstance(expr, ast.Constant):
            return expr.value
        if isinstance(expr, (ast.List, ast.Tuple)):
            return [self.value(e) for e in expr.elts]
        if isinstance(expr, ast.Dict):
            return {self.value(k): self.value(v) for k, v in zip(expr.keys, expr.values)}
        if isinstance(expr, ast.Name) and expr.id in self.scope:
            return self.scope[expr.id]
        if isinstance(expr, ast.Attribute):
            return getattr(self.value(expr.value), expr.attr)
        if isinstance(expr, ast.Call):
            name = getattr(expr.func, "id", None)
            args = [self.value(a) for a in expr.args]
            if name == "LaunchConfiguration":
                return Arg(args[0])
            if name == "PathJoinSubstitution":
                return Join(args[0])
            if name == "get_package_share_directory":
                assert args == ["mbrl_ros"]
                return str(share_dir())
            function = self.value(expr.func)
            if callable(function) and not expr.keywords:
                return function(*args)
        raise ValueError(f"cannot evaluate {ast.unparse(expr)}")

    def calls(self, name: str) -> list[ast.Call]:
        return [n for n in ast.walk(self.tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]

    def declarations(self) -> dict[str, dict]:
        out = {}
        for call in self.calls("DeclareLaunchArgument"):
            name = self.value(call.args[0])
            assert name not in out, f"{name} declared twice"
            out[name] = {k.arg: self.value(k.value) for k in call.keywords}
        return out

    def nodes(self) -> dict[str, list]:
        """``{executable: parameters list}`` of every mbrl_ros Node."""
        out = {}
        for call in self.calls("Node"):
            kwargs = {k.arg: k.value for k in call.keywords}
            if self.value(kwargs["package"]) == "mbrl_ros":
                out[self.value(kwargs["executable"])] = self.value(kwargs["parameters"])
        return out


def run_options() -> dict[str, argparse.Action]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices["run"]._actions}


def config_nodes(config: str) -> set[str]:
    return {n for n in yaml.safe_load(config_path(config).read_text()) if not n.startswith("/")}


@pytest.mark.parametrize("launch_file", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_arguments_are_mbrl_ros_runs(launch_file):
    """Every argument that applies to the launch file's nodes is declared, with a description, the
    choices and the default of ``mbrl-ros run``'s option; nothing else is declared."""
    assert launch_file.name in bringup.LAUNCH_FILES, f"{launch_file.name}: which config is its mbrl-ros run counterpart?"
    config = bringup.LAUNCH_FILES[launch_file.name]
    launch = LaunchFile(launch_file)
    declared = launch.declarations()
    assert set(launch.nodes()) == config_nodes(config), "the launch file starts the nodes of its config"
    assert set(declared) == {a.name for a in bringup.arguments_for(config_nodes(config))}
    options = run_options()
    for name, declaration in declared.items():
        option = options[name]
        assert declaration.get("description"), f"{launch_file.name}: {name} has no description"
        assert declaration.get("choices") == (list(option.choices) if option.choices else None), (launch_file.name, name)
        default = declaration["default_value"]
        if name == "config":
            assert Path(default) == config_path(config)
        elif name == "output_dir":  # a new folder per run, named by its start time
            for folder in (Path(default), Path(option.default)):
                assert folder.parent == default_runs_dir()
                datetime.strptime(folder.name, NAME_FORMAT)
        else:
            assert default == option.default, (launch_file.name, name)
    assert config_path(options["config"].default) == config_path("mbrl_sim") and \
        bringup.LAUNCH_FILES["mbrl_sim.launch.py"] == "mbrl_sim", "mbrl-ros run's default config is mbrl_sim.launch.py's"


@pytest.mark.parametrize("launch_file", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_arguments_set_the_node_parameters_mbrl_ros_run_sets(launch_file):
    """Each node gets the config, the run folder's bag_dir/model_dir before it (the config wins) and
    the arguments' values after it (they win), exactly those bringup.node_parameters applies."""
    launch = LaunchFile(launch_file)
    for node, parameters in launch.nodes().items():
        config_at = parameters.index(Arg("config"))
        before = {k: v for d in parameters[:config_at] for k, v in d.items()}
        after = {k: v for d in parameters[config_at + 1:] for k, v in d.items()}
        expected_after = {param: Arg(a.name) for a in bringup.LAUNCH_ARGUMENTS for n, param in a.sets
                          if n == node and (n, param) not in bringup.OUTPUT_PARAMETERS}
        expected_before = {param: Join([Arg("output_dir"), sub]) for (n, param), sub in bringup.OUTPUT_PARAMETERS.items()
                           if n == node}
        assert after == expected_after, (launch_file.name, node)
        assert before == expected_before, (launch_file.name, node)


@pytest.mark.parametrize("launch_file", LAUNCH_FILES, ids=lambda p: p.name)
def test_a_node_that_exits_shuts_the_launch_down(launch_file):
    launch = LaunchFile(launch_file)
    handlers = launch.calls("OnProcessExit")
    assert handlers, f"{launch_file.name} registers no OnProcessExit"
    for handler in handlers:
        kwargs = {k.arg: k.value for k in handler.keywords}
        assert "target_action" in kwargs and any(
            isinstance(n, ast.Call) and getattr(n.func, "id", None) == "Shutdown" for n in ast.walk(kwargs["on_exit"]))
    # One handler per node: a list comprehension over every node, or one handler each.
    targets = [ast.unparse({k.arg: k.value for k in h.keywords}["target_action"]) for h in handlers]
    comprehension = any(isinstance(n, ast.ListComp) and any(isinstance(c, ast.Call) and c in handlers for c in ast.walk(n))
                        for n in ast.walk(launch.tree))
    assert comprehension or len(set(targets)) == len(launch.nodes())


@pytest.mark.parametrize("config_file", sorted((ROOT / "config").glob("*.yaml")), ids=lambda p: p.name)
def test_the_shipped_configs_agree_with_the_argument_defaults(config_file):
    """Without arguments, ``mbrl-ros run`` and ``ros2 launch`` start what the config says (and what
    ``make demo``, which reads the config, starts); bag_dir and model_dir are left to the run folder."""
    sections = yaml.safe_load(config_file.read_text())
    for argument in bringup.LAUNCH_ARGUMENTS:
        for node, param in argument.sets:
            values = (sections.get(node) or {}).get("ros__parameters", {})
            if (node, param) in bringup.OUTPUT_PARAMETERS:
                assert param not in values, f"{config_file.name}: {node}.{param} would take the output out of the run folder"
            elif param in values:
                assert values[param] == yaml.safe_load(argument.default_value()), (config_file.name, node, param)


@pytest.mark.parametrize("argument", [a for a in bringup.LAUNCH_ARGUMENTS if a.choices], ids=lambda a: a.name)
def test_mbrl_ros_run_refuses_a_value_outside_the_choices_before_starting_anything(argument, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", f"--{argument.name.replace('_', '-')}", "foo"])
    assert exit_.value.code == 2
    assert f"invalid choice: 'foo' (choose from {', '.join(repr(c) for c in argument.choices)})" in capsys.readouterr().err


def test_the_choices_are_the_nodes_own():
    """An argument offers what the node parameter it sets accepts (the settings tables' choices)."""
    from mbrl_ros.control.controller_settings import PARAMETERS
    from mbrl_ros.dynamics.learner import LEARNER_PARAMETERS
    from mbrl_ros.sim.arm import SIM_PARAMETERS
    from mbrl_ros.sim.robots import ROBOTS

    tables = {"mpc_controller": PARAMETERS, "dynamics_learner": LEARNER_PARAMETERS, "sim_node": SIM_PARAMETERS}
    for argument in bringup.LAUNCH_ARGUMENTS:
        for node, param in argument.sets:
            info = tables.get(node, {}).get(param)
            if info is not None and info.choices:
                assert argument.choices == info.choices, (argument.name, node, param)
    assert bringup.ARGUMENTS["robot"].choices == tuple(ROBOTS), "the learner's robot has no choices table: the registry"


def test_mbrl_ros_run_with_rviz_and_no_rviz_installed_says_so_before_starting_anything(capsys, tmp_path):
    from mbrl_ros.launcher import executable_path

    try:
        executable_path("rviz2", "rviz2")
        pytest.skip("rviz2 is installed here")
    except FileNotFoundError:
        pass
    assert main(["run", "--rviz", "true", "--output-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "rviz true needs RViz: rviz2 is not installed" in err
    assert not (tmp_path / "run" / "logs").exists(), "no node was started"


def test_the_shipped_rviz_view_shows_what_the_nodes_publish():
    """Each topic in config/mbrl.rviz is one a node publishes, with the durability it offers."""
    from mbrl_ros.ros import qos

    view = yaml.safe_load((share_dir() / "config" / bringup.RVIZ_CONFIG).read_text())
    topics = {d["Topic" if "Topic" in d else "Description Topic"]["Value"]: d["Topic" if "Topic" in d else "Description Topic"]
              for d in view["Visualization Manager"]["Displays"] if "Topic" in d or "Description Topic" in d}
    offered = {"/robot_description": qos.LATCHED, "/robot_markers": qos.LINK_MARKERS, "/mbrl/plan": qos.LATCHED,
               "/mbrl/goal_marker": qos.LATCHED}
    assert set(topics) == set(offered)
    for topic, display in topics.items():
        assert display["Durability Policy"].replace(" ", "_").upper() == offered[topic].durability.name, topic
    assert view["Visualization Manager"]["Global Options"]["Fixed Frame"] == "panda_link0"
