"""PyBullet arm simulator (ROS-free)."""

from .arm import ArmState, SimSettings, SimulatedArm
from .robots import ROBOTS, RobotSpec, robot_spec

__all__ = ["ArmState", "SimSettings", "SimulatedArm", "ROBOTS", "RobotSpec", "robot_spec"]
