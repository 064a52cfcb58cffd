"""The four nodes on the simulated arm (for ROS 2 distro users): ``ros2 launch mbrl_ros mbrl_sim.launch.py``.

``ros2 launch mbrl_ros mbrl_sim.launch.py --show-args`` lists the arguments. A value outside an
argument's choices is refused before any node starts, and when any node exits the launch shuts the
others down. ``mbrl-ros run`` takes the same arguments (``--mode ilqr``; ``mbrl_ros/bringup.py``).
robot_state_publisher turns ``joint_states`` and the URDF into ``/tf``; with ``rviz:=true`` RViz
shows the arm, the planned end-effector path and the goal (``config/mbrl.rviz``).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, RegisterEventHandler, Shutdown
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node

from mbrl_ros.bringup import RVIZ_CONFIG
from mbrl_ros.run_folder import BAGS, MODELS, default_run_dir
from mbrl_ros.sim.description import robot_description


def _viewers(context):
    """robot_state_publisher on the robot's URDF and, with rviz:=true, RViz; neither is required."""
    share = get_package_share_directory("mbrl_ros")
    description = robot_description(LaunchConfiguration("robot").perform(context))
    use_sim_time = LaunchConfiguration("use_sim_time").perform(context) == "true"
    viewers = [Node(package="robot_state_publisher", executable="robot_state_publisher", output="screen",
                    parameters=[{"robot_description": description.urdf, "use_sim_time": use_sim_time}])]
    if LaunchConfiguration("rviz").perform(context) == "true":
        viewers.append(Node(package="rviz2", executable="rviz2", output="screen",
                            arguments=["-d", os.path.join(share, "config", RVIZ_CONFIG), "-f", description.base_link],
                            parameters=[{"use_sim_time": use_sim_time}]))
    return viewers


def generate_launch_description():
    share = get_package_share_directory("mbrl_ros")
    config = LaunchConfiguration("config")
    robot = LaunchConfiguration("robot")
    use_sim_time = LaunchConfiguration("use_sim_time")
    output_dir = LaunchConfiguration("output_dir")
    arguments = [
        DeclareLaunchArgument("config", default_value=os.path.join(share, "config", "mbrl_sim.yaml"),
                              description="Parameters YAML of the nodes (path)."),
        DeclareLaunchArgument("mode", default_value="lqr_flm", choices=["lqr_flm", "ilqr", "mppi"],
                              description="mpc_controller mode: lqr_flm (learn by trials), ilqr or mppi (receding "
                                          "horizon on the global model)."),
        DeclareLaunchArgument("robot", default_value="panda", choices=["panda", "iiwa"],
                              description="Robot of the sim, the learner and the controller."),
        DeclareLaunchArgument("mismatch", default_value="none", choices=["none", "realistic"],
                              description="Model mismatch of the simulated arm: none (the arm is its URDF) or "
                                          "realistic (a payload, joint friction, command latency, torque gain errors, "
                                          "encoder noise; the controller's physics model stays the URDF)."),
        DeclareLaunchArgument("model_source", default_value="learned", choices=["learned", "physics"],
                              description="Model ilqr/mppi plan on: learned (the ensemble from /mbrl/model; they "
                                          "wait for it) or physics (the URDF)."),
        DeclareLaunchArgument("use_sim_time", default_value="true", choices=["true", "false"],
                              description="true: the recorder and the controller follow the sim's /clock (the "
                                          "learner stays on wall time)."),
        DeclareLaunchArgument("output_dir", default_value=str(default_run_dir()),
                              description="Run folder: the recorder's bags/ and the learner's models/ go here unless "
                                          "the config sets bag_dir or model_dir; by default a new one in "
                                          "$ROS_HOME/mbrl_ros/runs (ROS_HOME: ~/.ros when unset), named by its "
                                          "start time."),
        DeclareLaunchArgument("rviz", default_value="false", choices=["true", "false"],
                              description="true: also start RViz (rviz2, from a ROS 2 distro) with the shipped view of "
                                          "the arm, the planned path and the goal."),
    ]
    # Parameters apply in order: the run folder's bag_dir/model_dir yield to the config, and the
    # arguments override it.
    nodes = [
        Node(package="mbrl_ros", executable="sim_node", name="sim_node", output="screen",
             parameters=[config, {"robot": robot, "mismatch": LaunchConfiguration("mismatch")}]),
        Node(package="mbrl_ros", executable="trajectory_recorder", name="trajectory_recorder", output="screen",
             parameters=[{"bag_dir": PathJoinSubstitution([output_dir, BAGS])}, config, {"use_sim_time": use_sim_time}]),
        Node(package="mbrl_ros", executable="dynamics_learner", name="dynamics_learner", output="screen",
             parameters=[{"model_dir": PathJoinSubstitution([output_dir, MODELS])}, config, {"robot": robot}]),
        Node(package="mbrl_ros", executable="mpc_controller", name="mpc_controller", output="screen",
             parameters=[config, {"robot": robot, "mode": LaunchConfiguration("mode"),
                                  "model_source": LaunchConfiguration("model_source"), "use_sim_time": use_sim_time}]),
    ]
    # Every node is required: one that exits ends the launch.
    on_exit = [
        RegisterEventHandler(OnProcessExit(target_action=node, on_exit=[
            LogInfo(msg=f"{name} exited: shutting the other nodes down"), Shutdown(reason=f"{name} exited")]))
        for name, node in zip(("sim_node", "trajectory_recorder", "dynamics_learner", "mpc_controller"), nodes)
    ]
    return LaunchDescription([
        *arguments,
        LogInfo(msg=["run folder ", output_dir]),
        *nodes,
        *on_exit,
        OpaqueFunction(function=_viewers),
    ])
