"""The simulated arm alone (for ROS 2 distro users): ``ros2 launch mbrl_ros sim.launch.py``.

``--show-args`` lists the arguments; a value outside an argument's choices is refused before the
node starts, and the launch ends when the node exits. ``mbrl-ros run --config sim_panda`` is the
same without ``ros2 launch`` (``mbrl_ros/bringup.py``).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, RegisterEventHandler, Shutdown
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    share = get_package_share_directory("mbrl_ros")
    config = LaunchConfiguration("config")
    sim = Node(package="mbrl_ros", executable="sim_node", name="sim_node", output="screen",
               parameters=[config, {"robot": LaunchConfiguration("robot"), "mismatch": LaunchConfiguration("mismatch")}])
    return LaunchDescription([
        DeclareLaunchArgument("config", default_value=os.path.join(share, "config", "sim_panda.yaml"),
                              description="Parameters YAML of sim_node (path)."),
        DeclareLaunchArgument("robot", default_value="panda", choices=["panda", "iiwa"],
                              description="Robot of the sim."),
        DeclareLaunchArgument("mismatch", default_value="none", choices=["none", "realistic"],
                              description="Model mismatch of the simulated arm: none (the arm is its URDF) or "
                                          "realistic (a payload, joint friction, command latency, torque gain errors, "
                                          "encoder noise)."),
        sim,
        RegisterEventHandler(OnProcessExit(target_action=sim, on_exit=[
            LogInfo(msg="sim_node exited"), Shutdown(reason="sim_node exited")])),
    ])
