"""Conversions between ROS messages and numpy arrays, with validation of everything received."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray


class InvalidMessage(ValueError):
    """A received message that must not be used; the text says why."""


def time_msg(seconds: float) -> Time:
    """``builtin_interfaces/Time`` for a time in seconds."""
    ns = int(round(seconds * 1e9))
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def joint_state_msg(
    names: Sequence[str], position: np.ndarray, velocity: np.ndarray, effort: np.ndarray, stamp: Time
) -> JointState:
    """A stamped ``sensor_msgs/JointState`` with positions, velocities and efforts in ``names`` order."""
    msg = JointState()
    msg.header.stamp = stamp
    msg.name = list(names)
    msg.position = position.tolist()
    msg.velocity = velocity.tolist()
    msg.effort = effort.tolist()
    return msg


def decode_command(msg: Float64MultiArray, n_joints: int) -> np.ndarray:
    """Torques from a ``Float64MultiArray`` command; raises :class:`InvalidMessage` unless it holds
    exactly ``n_joints`` finite values."""
    tau = np.asarray(msg.data, dtype=float)
    if tau.shape != (n_joints,):
        raise InvalidMessage(f"command has {tau.size} values, expected {n_joints}")
    if not np.all(np.isfinite(tau)):
        raise InvalidMessage(f"command has non-finite values: {tau.tolist()}")
    return tau


def command_msg(torque_nm: np.ndarray) -> Float64MultiArray:
    """A ``Float64MultiArray`` torque command (no layout: one value per joint, in joint order)."""
    return Float64MultiArray(data=np.asarray(torque_nm, dtype=float).tolist())
