"""Descriptions of the arms the simulator (and the physics model) know by name.

A robot is a URDF, the ordered arm joints we control, the end-effector frame, a home configuration
and the joints we hold fixed (the Panda's fingers). Limits are read from the URDF itself by whoever
loads it, so there is one source of truth for them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pybullet_data


@dataclass(frozen=True)
class RobotSpec:
    """A torque-controlled serial arm.

    Attributes:
        name: registry key (``panda``, ``iiwa``).
        urdf_path: absolute path of the URDF.
        joint_names: controlled revolute joints in command order, length ``nq``.
        ee_link: link whose origin is the end-effector point.
        home_positions_rad: default initial configuration, length ``nq``.
        held_joints: joints held at a fixed position by a stiff position servo, e.g. fingers.
        emulates_gravity_compensation: whether the real arm's torque interface adds the gravity
            torque itself (Franka FCI does), so the simulator emulates it by default.
    """

    name: str
    urdf_path: str
    joint_names: tuple[str, ...]
    ee_link: str
    home_positions_rad: tuple[float, ...]
    held_joints: tuple[tuple[str, float], ...] = ()
    emulates_gravity_compensation: bool = False

    @property
    def nq(self) -> int:
        return len(self.joint_names)


_DATA = pybullet_data.getDataPath()

ROBOTS: dict[str, RobotSpec] = {
    "panda": RobotSpec(
        name="panda",
        urdf_path=os.path.join(_DATA, "franka_panda", "panda.urdf"),
        joint_names=tuple(f"panda_joint{i}" for i in range(1, 8)),
        ee_link="panda_grasptarget",
        home_positions_rad=(0.0, -0.5, 0.0, -2.0, 0.0, 1.6, 0.8),
        held_joints=(("panda_finger_joint1", 0.02), ("panda_finger_joint2", 0.02)),
        emulates_gravity_compensation=True,
    ),
    "iiwa": RobotSpec(
        name="iiwa",
        urdf_path=os.path.join(_DATA, "kuka_iiwa", "model.urdf"),
        joint_names=tuple(f"lbr_iiwa_joint_{i}" for i in range(1, 8)),
        ee_link="lbr_iiwa_link_7",
        home_positions_rad=(0.0, 0.5, 0.0, -1.2, 0.0, 1.0, 0.0),
    ),
}


#: The named model mismatches of :mod:`mbrl_ros.sim.mismatch`, listed here so that the command
#: line's parser reads them without loading numpy.
MISMATCH_PROFILES = ("none", "realistic")


def robot_spec(name: str) -> RobotSpec:
    """Return the registered robot called ``name`` or raise ``ValueError`` listing the known ones."""
    try:
        return ROBOTS[name]
    except KeyError:
        raise ValueError(f"unknown robot {name!r}; known robots: {sorted(ROBOTS)}") from None
