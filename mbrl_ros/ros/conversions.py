"""Conversions between ROS messages and numpy arrays, with validation of everything received."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PointStamped, PoseStamped
from nav_msgs.msg import Path
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from mbrl_ros.data.alignment import JointMapper


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


def decode_command(msg: Float64MultiArray, n_joints: int | None = None) -> np.ndarray:
    """Torques from a ``Float64MultiArray`` command; raises :class:`InvalidMessage` unless its
    values are finite and, given ``n_joints``, exactly that many."""
    tau = np.asarray(msg.data, dtype=float)
    if n_joints is not None and tau.shape != (n_joints,):
        raise InvalidMessage(f"command has {tau.size} values, expected {n_joints}")
    if not np.all(np.isfinite(tau)):
        bad = np.flatnonzero(~np.isfinite(tau))
        raise InvalidMessage(f"command has {bad.size} non-finite values (at {bad[:10].tolist()}) of {tau.size}")
    return tau


def command_msg(torque_nm: np.ndarray) -> Float64MultiArray:
    """A ``Float64MultiArray`` torque command (no layout: one value per joint, in joint order)."""
    return Float64MultiArray(data=np.asarray(torque_nm, dtype=float).tolist())


#: More joints than any arm has: a joint state naming more is refused before it is looked at.
MAX_JOINTS = 1024
#: A serialized joint state larger than this (1024 joints with 255-character names take 0.3 MB) is
#: refused unread: deserializing 10⁶ names holds the GIL for 0.2 s and more, a controller's
#: torque loop with it.
MAX_JOINT_STATE_BYTES = 1 << 20


class JointStateDecoder:
    """``x = [q; qd]`` in a fixed joint order from JointState messages that list their joints in
    any order (mapped by name, :class:`~mbrl_ros.data.alignment.JointMapper`); ``joint_names``
    ``None`` takes the order of the first well-formed message. Rejects messages that name no joint
    or more than :data:`MAX_JOINTS`, whose names, positions and velocities differ in length (or
    efforts, when given), that lack a joint or name one twice, or that hold non-finite positions or
    velocities."""

    def __init__(self, joint_names: Sequence[str] | None = None) -> None:
        self._mapper = JointMapper(joint_names)

    @property
    def joint_names(self) -> tuple[str, ...] | None:
        """The order of ``x`` (``None`` until the first message when none was given)."""
        return self._mapper.joint_names

    def decode(self, msg: JointState) -> np.ndarray:
        names = msg.name
        if not 0 < len(names) <= MAX_JOINTS:
            raise InvalidMessage(f"joint state names {len(names)} joints (from 1 to {MAX_JOINTS} accepted)")
        if len(msg.position) != len(names) or len(msg.velocity) != len(names) or len(msg.effort) not in (0, len(names)):
            raise InvalidMessage(f"joint state has {len(names)} names, {len(msg.position)} positions, "
                                 f"{len(msg.velocity)} velocities, {len(msg.effort)} efforts")
        try:
            index = self._mapper.index(names)
        except ValueError as err:
            raise InvalidMessage(str(err)) from None
        x = np.concatenate([np.asarray(msg.position)[index], np.asarray(msg.velocity)[index]])
        if not np.all(np.isfinite(x)):
            raise InvalidMessage("joint state has non-finite positions or velocities")
        return x

    def decode_raw(self, raw: bytes) -> np.ndarray:
        """:meth:`decode` of a serialized joint state (a ``raw`` subscription's), refused unread
        when larger than :data:`MAX_JOINT_STATE_BYTES`."""
        return self.decode(deserialize_joint_state(raw))


def deserialize_joint_state(raw: bytes) -> JointState:
    """A serialized ``sensor_msgs/JointState``; :class:`InvalidMessage` when larger than
    :data:`MAX_JOINT_STATE_BYTES`, before anything is deserialized."""
    if len(raw) > MAX_JOINT_STATE_BYTES:
        raise InvalidMessage(f"joint state of {len(raw)} bytes (at most {MAX_JOINT_STATE_BYTES} are read)")
    return deserialize_message(raw, JointState)


def decode_point(msg: PointStamped, frame_id: str | None = None) -> np.ndarray:
    """The point's coordinates; raises :class:`InvalidMessage` unless they are finite and, given
    ``frame_id``, the point is in that frame (or names none: then it is taken to be)."""
    p = np.array([msg.point.x, msg.point.y, msg.point.z])
    if not np.all(np.isfinite(p)):
        raise InvalidMessage(f"goal has non-finite coordinates: {p.tolist()}")
    if frame_id is not None and msg.header.frame_id not in ("", frame_id):
        raise InvalidMessage(f"goal is in frame {msg.header.frame_id[:100]!r}, not {frame_id!r}")
    return p


def path_msg(points_m: np.ndarray, frame_id: str, stamp: Time) -> Path:
    """A ``nav_msgs/Path`` through ``points_m`` ``(N, 3)`` (identity orientations)."""
    path = Path()
    path.header.frame_id = frame_id
    path.header.stamp = stamp
    for p in points_m:
        pose = PoseStamped()
        pose.header = path.header
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = (float(v) for v in p)
        pose.pose.orientation.w = 1.0
        path.poses.append(pose)
    return path
