"""The launch arguments of the node system: what ``launch/*.launch.py`` declare and ``mbrl-ros run``
accepts, with the same names, choices and defaults, and which node parameters each sets.

Light imports only (the command line's parser reads this). The choices are the package's own lists:
the controller's modes and model sources (:mod:`mbrl_ros.control.modes`) and the registered robots
(:data:`mbrl_ros.sim.robots.ROBOTS`); the run folder is :mod:`mbrl_ros.run_folder`'s. The launch
files state the same declarations for ``ros2 launch``; ``test/ros/test_launch_arguments.py`` checks
that they agree.

An argument's value overrides the config's for the node parameters it sets, except ``output_dir``:
it places ``bag_dir`` and ``model_dir`` in the run folder unless the config (or ``-p``) sets them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mbrl_ros.control.modes import MODEL_SOURCES, MODES
from mbrl_ros.run_folder import BAGS, MODELS, default_run_dir
from mbrl_ros.sim.robots import MISMATCH_PROFILES, ROBOTS

#: The node parameters a run folder fills: ``(node, parameter)`` → its subfolder.
OUTPUT_PARAMETERS: dict[tuple[str, str], str] = {
    ("trajectory_recorder", "bag_dir"): BAGS,
    ("dynamics_learner", "model_dir"): MODELS,
}


@dataclass(frozen=True)
class LaunchArgument:
    """One launch argument.

    Attributes:
        name: as in ``ros2 launch ... name:=value``; ``mbrl-ros run --name-with-dashes value``.
        default: its value when not given (a string, as launch arguments are), or a function
            giving it at start-up (the run folder).
        description: what it does.
        choices: the accepted values (empty: any).
        sets: the node parameters it sets, ``(node, parameter)``.
        applies_with: for an argument that sets no node parameter, the nodes a config must start
            for it to apply (empty: every config).
    """

    name: str
    default: str | Callable[[], str]
    description: str
    choices: tuple[str, ...] = ()
    sets: tuple[tuple[str, str], ...] = ()
    applies_with: tuple[str, ...] = ()

    def default_value(self) -> str:
        return self.default() if callable(self.default) else self.default

    @property
    def nodes(self) -> frozenset[str]:
        return frozenset(node for node, _ in self.sets)


LAUNCH_ARGUMENTS: tuple[LaunchArgument, ...] = (
    LaunchArgument("config", "mbrl_sim", "Parameters YAML of the nodes: a shipped config's name or a path."),
    LaunchArgument("mode", "lqr_flm", "mpc_controller mode: lqr_flm (learn by trials), ilqr or mppi (receding "
                   "horizon on the global model).", MODES, (("mpc_controller", "mode"),)),
    LaunchArgument("robot", "panda", "Robot of the sim, the learner and the controller.", tuple(ROBOTS),
                   (("sim_node", "robot"), ("dynamics_learner", "robot"), ("mpc_controller", "robot"))),
    LaunchArgument("mismatch", "none", "Model mismatch of the simulated arm: none (the arm is its URDF) or realistic "
                   "(a payload, joint friction, command latency, torque gain errors, encoder noise; the controller's "
                   "physics model stays the URDF).", MISMATCH_PROFILES, (("sim_node", "mismatch"),)),
    LaunchArgument("model_source", "learned", "Model ilqr/mppi plan on: learned (the ensemble from /mbrl/model; "
                   "they wait for it) or physics (the URDF).", MODEL_SOURCES, (("mpc_controller", "model_source"),)),
    LaunchArgument("use_sim_time", "true", "true: the recorder and the controller follow the sim's /clock (the "
                   "learner stays on wall time).", ("true", "false"),
                   (("trajectory_recorder", "use_sim_time"), ("mpc_controller", "use_sim_time"))),
    LaunchArgument("output_dir", lambda: str(default_run_dir()), "Run folder: the recorder's bags/ and the learner's "
                   "models/ go here unless the config sets bag_dir or model_dir; by default a new one in "
                   "$ROS_HOME/mbrl_ros/runs (ROS_HOME: ~/.ros when unset), named by its start time.", (),
                   tuple(OUTPUT_PARAMETERS)),
    LaunchArgument("rviz", "false", "true: also start RViz (rviz2, from a ROS 2 distro) with the shipped view of the "
                   "arm, the planned path and the goal.", ("true", "false"), applies_with=("sim_node", "mpc_controller")),
)
ARGUMENTS: dict[str, LaunchArgument] = {a.name: a for a in LAUNCH_ARGUMENTS}

#: Each launch file and the shipped config it starts (its ``config`` default): ``ros2 launch
#: mbrl_ros F`` and ``mbrl-ros run --config C`` bring up the same nodes with the same arguments.
LAUNCH_FILES: dict[str, str] = {"mbrl_sim.launch.py": "mbrl_sim", "sim.launch.py": "sim_panda"}


def arguments_for(nodes: set[str] | frozenset[str]) -> list[LaunchArgument]:
    """The arguments that apply to a config of these nodes (``config`` always)."""
    nodes = set(nodes)
    return [a for a in LAUNCH_ARGUMENTS if a.nodes & nodes or (not a.sets and set(a.applies_with) <= nodes)]


def _parameter_value(text: str):
    """A launch argument's string as the node parameter's value, read as YAML as ``launch_ros`` reads
    a substituted parameter (``true`` → a bool)."""
    import yaml

    return yaml.safe_load(text)


def node_parameters(values: dict[str, str], sections: dict[str, dict]) -> dict[str, dict]:
    """``{node: {parameter: value}}`` the argument ``values`` set on the nodes of a config whose
    sections (``{node or /**: {"ros__parameters": {...}}}``) are ``sections``. An argument's value
    replaces the config's; the run folder's ``bag_dir``/``model_dir`` only fill what the config
    leaves unset."""
    out: dict[str, dict] = {}
    set_in_config = {(node, p) for node, section in sections.items() for p in ((section or {}).get("ros__parameters") or {})}
    wildcard = {p for node, p in set_in_config if node.startswith("/")}
    for arg in LAUNCH_ARGUMENTS:
        if arg.name not in values:
            continue
        for node, param in arg.sets:
            if node not in sections:
                continue
            if (node, param) in OUTPUT_PARAMETERS:
                if (node, param) in set_in_config or param in wildcard:
                    continue
                value = str(Path(values[arg.name]) / OUTPUT_PARAMETERS[(node, param)])
            else:
                value = _parameter_value(values[arg.name])
            out.setdefault(node, {})[param] = value
    return out


#: The shipped RViz view (in the package's ``config/``): the arm (RobotModel on robot_description
#: with robot_state_publisher's TF, or the sim's robot_markers without it), /mbrl/plan, the goal.
RVIZ_CONFIG = "mbrl.rviz"


def viewer_specs(robot: str, use_sim_time: bool, rviz: bool, folder: Path) -> tuple[list, list[str]]:
    """What ``mbrl-ros run`` starts besides the nodes, as the launch file does: robot_state_publisher
    (``/tf`` from ``joint_states`` and the URDF) when a ROS 2 distro provides it, and with ``rviz``
    RViz on the shipped view. Returns the specs (not required: closing RViz ends nothing else) and
    notes for the user. Raises FileNotFoundError when ``rviz`` is asked for and not installed."""
    import yaml

    from mbrl_ros.launcher import NodeSpec, executable_path, share_dir
    from mbrl_ros.sim.description import robot_description

    description = robot_description(robot)
    specs, notes = [], []
    try:
        executable_path("robot_state_publisher", "robot_state_publisher")
    except FileNotFoundError as err:
        notes.append(f"no /tf ({err}); viewers draw the arm from the sim's robot_markers")
    else:
        folder.mkdir(parents=True, exist_ok=True)
        params = folder / "robot_state_publisher.yaml"  # the URDF is too long for a -p argument
        params.write_text(yaml.safe_dump({"robot_state_publisher": {"ros__parameters": {
            "robot_description": description.urdf, "use_sim_time": use_sim_time}}}))
        specs.append(NodeSpec("robot_state_publisher", params_file=str(params), package="robot_state_publisher",
                              required=False))
    if rviz:
        executable_path("rviz2", "rviz2")
        specs.append(NodeSpec("rviz2", parameters={"use_sim_time": use_sim_time}, package="rviz2", required=False,
                              arguments=("-d", str(share_dir() / "config" / RVIZ_CONFIG), "-f", description.base_link)))
    return specs, notes
