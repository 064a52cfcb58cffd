"""A registered robot's URDF as ROS tools read it, and where its link meshes are (no ROS here).

:func:`robot_description` returns the URDF the simulator loads, for ``robot_description`` (what
robot_state_publisher and RViz read), with one change: each mesh ``filename`` (relative, or
PyBullet's ``package://`` relative to the URDF's folder) becomes an absolute ``file://`` URI, so
that a viewer outside PyBullet finds the meshes. Links, joints, origins and limits are untouched.
It also lists each link's mesh visuals (mesh URI, origin in the link frame, scale, colour), which
:func:`visual_poses` places in the base frame for viewers without TF.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .robots import robot_spec


@dataclass(frozen=True)
class MeshVisual:
    """One ``<visual>`` mesh of ``link``: its URI, origin in the link frame (``xyz`` m,
    ``quaternion`` xyzw), ``scale`` and ``rgba`` (the URDF material's colour, or light grey)."""

    link: str
    mesh_uri: str
    xyz: tuple[float, float, float]
    quaternion: tuple[float, float, float, float]
    scale: tuple[float, float, float]
    rgba: tuple[float, float, float, float]


@dataclass(frozen=True)
class RobotDescription:
    """``urdf``: the text to publish; ``base_link``: the root link (the frame of everything the
    nodes publish in space); ``links`` and ``joints``: every name, in file order."""

    robot: str
    urdf: str
    base_link: str
    links: tuple[str, ...]
    joints: tuple[str, ...]
    visuals: tuple[MeshVisual, ...]


def _floats(text: str | None, default: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split()) if text else default


def quaternion_from_rpy(roll: float, pitch: float, yaw: float) -> tuple[float, float, float, float]:
    """The URDF's fixed-axis roll-pitch-yaw (``R = Rz(yaw) Ry(pitch) Rx(roll)``) as a quaternion xyzw."""
    cr, sr = np.cos(roll / 2), np.sin(roll / 2)
    cp, sp = np.cos(pitch / 2), np.sin(pitch / 2)
    cy, sy = np.cos(yaw / 2), np.sin(yaw / 2)
    return (float(sr * cp * cy - cr * sp * sy), float(cr * sp * cy + sr * cp * sy),
            float(cr * cp * sy - sr * sp * cy), float(cr * cp * cy + sr * sp * sy))


def _mesh_uri(filename: str, folder: Path) -> str:
    if filename.startswith("file://"):
        return filename
    relative = filename[len("package://"):] if filename.startswith("package://") else filename
    return "file://" + str((folder / relative).resolve())


@lru_cache(maxsize=None)
def robot_description(robot: str) -> RobotDescription:
    """The description of the registered robot ``robot`` (see the module docstring)."""
    spec = robot_spec(robot)
    path = Path(spec.urdf_path)
    text = path.read_text()
    folder = path.parent
    urdf = re.sub(r'(<mesh\b[^>]*\bfilename=")([^"]+)(")', lambda m: m.group(1) + _mesh_uri(m.group(2), folder) + m.group(3),
                  text)
    root = ET.fromstring(urdf)
    colours = {m.get("name"): _floats(m.find("color").get("rgba"), ())
               for m in root.iter("material") if m.find("color") is not None}
    links = tuple(link.get("name") for link in root.findall("link"))
    joints = tuple(joint.get("name") for joint in root.findall("joint"))
    children = {joint.find("child").get("link") for joint in root.findall("joint")}
    roots = [name for name in links if name not in children]
    if len(roots) != 1:
        raise ValueError(f"{path}: expected one root link, found {roots}")
    visuals = []
    for link in root.findall("link"):
        for visual in link.findall("visual"):
            mesh = visual.find("geometry/mesh")
            if mesh is None:
                continue
            origin = visual.find("origin")
            xyz = _floats(origin.get("xyz") if origin is not None else None, (0.0, 0.0, 0.0))
            rpy = _floats(origin.get("rpy") if origin is not None else None, (0.0, 0.0, 0.0))
            material = visual.find("material")
            rgba: tuple[float, ...] = (0.8, 0.8, 0.8, 1.0)
            if material is not None:
                colour = material.find("color")
                rgba = _floats(colour.get("rgba"), rgba) if colour is not None else colours.get(material.get("name"), rgba)
            visuals.append(MeshVisual(link.get("name"), mesh.get("filename"), xyz, quaternion_from_rpy(*rpy),
                                      _floats(mesh.get("scale"), (1.0, 1.0, 1.0)), rgba))
    return RobotDescription(robot, urdf, roots[0], links, joints, tuple(visuals))


def _rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    u, w = q[:3], q[3]
    return v + 2.0 * np.cross(u, np.cross(u, v) + w * v)


def _multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    (ax, ay, az, aw), (bx, by, bz, bw) = a, b
    return np.array([aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz])


def visual_poses(description: RobotDescription, link_poses: dict[str, tuple[np.ndarray, np.ndarray]]
                 ) -> list[tuple[MeshVisual, np.ndarray, np.ndarray]]:
    """Each mesh visual with its pose in the base frame (position, quaternion xyzw), from the
    links' poses in the base frame (``{link: (position, quaternion xyzw)}``)."""
    out = []
    for visual in description.visuals:
        position, orientation = (np.asarray(v, dtype=float) for v in link_poses[visual.link])
        out.append((visual, position + _rotate(orientation, np.asarray(visual.xyz)),
                    _multiply(orientation, np.asarray(visual.quaternion))))
    return out
