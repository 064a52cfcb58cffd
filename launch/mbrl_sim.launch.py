"""The four nodes on the simulated arm (for ROS 2 distro users): ``ros2 launch mbrl_ros mbrl_sim.launch.py``.

Arguments: ``config`` (YAML, default the shipped ``mbrl_sim.yaml``), ``mode`` (lqr_flm, ilqr,
mppi) and ``robot`` (panda, iiwa). The standalone equivalent is ``mbrl-ros run --config mbrl_sim``.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("mbrl_ros")
    config = LaunchConfiguration("config")
    robot = {"robot": LaunchConfiguration("robot")}

    return LaunchDescription(
        [
            DeclareLaunchArgument("config", default_value=os.path.join(share, "config", "mbrl_sim.yaml")),
            DeclareLaunchArgument("mode", default_value="lqr_flm", description="lqr_flm, ilqr or mppi"),
            DeclareLaunchArgument("robot", default_value="panda", description="panda or iiwa"),
            Node(package="mbrl_ros", executable="sim_node", name="sim_node", output="screen",
                 parameters=[config, robot]),
            Node(package="mbrl_ros", executable="trajectory_recorder", name="trajectory_recorder", output="screen",
                 parameters=[config]),
            Node(package="mbrl_ros", executable="dynamics_learner", name="dynamics_learner", output="screen",
                 parameters=[config, robot]),
            Node(package="mbrl_ros", executable="mpc_controller", name="mpc_controller", output="screen",
                 parameters=[config, robot, {"mode": LaunchConfiguration("mode")}]),
        ]
    )
