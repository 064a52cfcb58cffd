"""Declaring ROS parameters with descriptors (range, description, read-only) in one line each."""

from __future__ import annotations

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node


def declare(
    node: Node,
    name: str,
    default,
    description: str,
    *,
    low: float | int | None = None,
    high: float | int | None = None,
    read_only: bool = False,
):
    """Declare ``name`` with a descriptor and return its current value.

    ``low``/``high`` become a range that rclpy enforces before any callback runs (integer range for
    int defaults, floating-point otherwise). Read-only parameters are fixed at start-up (set them
    from YAML or ``-p``).
    """
    descriptor = ParameterDescriptor(description=description, read_only=read_only)
    if low is not None and high is not None:
        if isinstance(default, bool):
            raise TypeError(f"parameter {name}: a boolean has no range")
        if isinstance(default, int):
            descriptor.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=0)]
        else:
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)
            ]
    return node.declare_parameter(name, default, descriptor).value
