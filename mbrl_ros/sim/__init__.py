"""PyBullet arm simulator (ROS-free)."""

from .arm import SIM_PARAMETERS, ArmState, SimNodeSettings, SimSettings, SimulatedArm
from .robots import ROBOTS, RobotSpec, robot_spec

__all__ = ["SIM_PARAMETERS", "ArmState", "SimNodeSettings", "SimSettings", "SimulatedArm", "ROBOTS", "RobotSpec",
           "robot_spec"]
