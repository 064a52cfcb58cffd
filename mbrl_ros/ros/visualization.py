"""What RViz (or any ROS viewer) draws: the robot's URDF as ``robot_description``, the arm's links as
mesh markers for viewers without TF, and the goal as a sphere marker.

``robot_description`` (std_msgs/String, transient local) is the convention since Humble: the
robot_state_publisher and RViz's RobotModel display read it. The link markers carry each URDF mesh
at its pose in the base link's frame, so a viewer whose fixed frame is the base link draws the arm
from ``robot_markers`` alone, without ``/tf`` (``tf2_msgs`` does not install from the Python
registry). Everything here is in the URDF's base link, the frame of ``/mbrl/plan`` as well.
"""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from std_msgs.msg import String
from visualization_msgs.msg import Marker, MarkerArray

from mbrl_ros.sim.description import RobotDescription, visual_poses

#: The goal sphere's diameter (m) and colour (RGBA).
GOAL_DIAMETER_M = 0.05
GOAL_RGBA = (0.9, 0.1, 0.1, 0.8)


def robot_description_msg(description: RobotDescription) -> String:
    return String(data=description.urdf)


def link_markers_msg(description: RobotDescription, link_poses: dict[str, tuple[np.ndarray, np.ndarray]],
                     stamp: Time) -> MarkerArray:
    """One MESH_RESOURCE marker per URDF mesh visual, at its pose now (``link_poses``: each link's
    position and quaternion xyzw in the base link's frame)."""
    markers = MarkerArray()
    for i, (visual, position, orientation) in enumerate(visual_poses(description, link_poses)):
        m = Marker()
        m.header.frame_id = description.base_link
        m.header.stamp = stamp
        m.ns = "robot"
        m.id = i
        m.type = Marker.MESH_RESOURCE
        m.action = Marker.ADD
        m.mesh_resource = visual.mesh_uri
        m.pose.position.x, m.pose.position.y, m.pose.position.z = (float(v) for v in position)
        m.pose.orientation.x, m.pose.orientation.y, m.pose.orientation.z, m.pose.orientation.w = (float(v) for v in orientation)
        m.scale.x, m.scale.y, m.scale.z = (float(v) for v in visual.scale)
        m.color.r, m.color.g, m.color.b, m.color.a = (float(v) for v in visual.rgba)
        markers.markers.append(m)
    return markers


def goal_marker_msg(goal_m, frame_id: str, stamp: Time) -> Marker:
    """The goal as a sphere in ``frame_id``."""
    m = Marker()
    m.header.frame_id = frame_id
    m.header.stamp = stamp
    m.ns = "goal"
    m.id = 0
    m.type = Marker.SPHERE
    m.action = Marker.ADD
    m.pose.position.x, m.pose.position.y, m.pose.position.z = (float(v) for v in goal_m)
    m.pose.orientation.w = 1.0
    m.scale.x = m.scale.y = m.scale.z = GOAL_DIAMETER_M
    m.color.r, m.color.g, m.color.b, m.color.a = GOAL_RGBA
    return m
