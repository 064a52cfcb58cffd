"""PyBullet arm simulator (ROS-free).

The names below load on first use, so that the robot registry (:mod:`mbrl_ros.sim.robots`) is
read without loading PyBullet (the command line's parser lists the robots).
"""

from importlib import import_module

_EXPORTS = {
    "SIM_PARAMETERS": "arm", "ArmState": "arm", "SimNodeSettings": "arm", "SimSettings": "arm", "SimulatedArm": "arm",
    "ROBOTS": "robots", "RobotSpec": "robots", "robot_spec": "robots",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
