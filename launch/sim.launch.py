"""Launch the simulated arm (for ROS 2 distro users): ``ros2 launch mbrl_ros sim.launch.py``.

Arguments: ``config`` (YAML parameters file, default the shipped ``sim_panda.yaml``) and ``robot``.
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
    robot = LaunchConfiguration("robot")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "config", default_value=os.path.join(share, "config", "sim_panda.yaml"), description="YAML parameters"
            ),
            DeclareLaunchArgument("robot", default_value="panda", description="panda or iiwa"),
            Node(
                package="mbrl_ros",
                executable="sim_node",
                name="sim_node",
                output="screen",
                parameters=[config, {"robot": robot}],
            ),
        ]
    )
