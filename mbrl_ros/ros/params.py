"""Declaring ROS parameters with descriptors (range, choices, description, read-only): one at a
time, or every field of a settings dataclass from its :class:`~mbrl_ros.settings.ParameterInfo` table."""

from __future__ import annotations

import array
from dataclasses import fields

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node

from mbrl_ros.settings import ParameterInfo


def declare(
    node: Node,
    name: str,
    default,
    description: str,
    *,
    low: float | int | None = None,
    high: float | int | None = None,
    read_only: bool = False,
    choices: tuple[str, ...] = (),
):
    """Declare ``name`` with a descriptor and return its current value.

    ``low``/``high`` become a range that rclpy enforces before any callback runs (integer range for
    int defaults, floating-point otherwise). Read-only parameters are fixed at start-up (set them
    from YAML or ``-p``). ``choices`` are listed in the descriptor's constraints (the settings
    class checks them).
    """
    descriptor = ParameterDescriptor(description=description, read_only=read_only)
    if choices:
        descriptor.additional_constraints = f"one of: {', '.join(choices)}"
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


def parameter_value(value):
    """A parameter's value as a settings field holds it: arrays become tuples."""
    return tuple(value) if isinstance(value, (list, tuple, array.array)) else value


def declare_settings(node: Node, defaults, table: dict[str, ParameterInfo]):
    """Declare one parameter per field of the settings dataclass instance ``defaults`` (described by
    ``table``) and return the settings built from the parameters' values (YAML, ``-p`` overrides).

    Fields the node has declared already keep that declaration (a node declares ``robot`` first
    when other defaults depend on it). Raises ``ValueError`` when the values are invalid together.
    """
    values = {}
    for f in fields(defaults):
        info = table[f.name]
        if not node.has_parameter(f.name):
            default = getattr(defaults, f.name)
            declare(node, f.name, list(default) if isinstance(default, tuple) else default, info.description,
                    low=info.low, high=info.high, read_only=info.read_only, choices=info.choices)
        values[f.name] = parameter_value(node.get_parameter(f.name).value)
    return type(defaults)(**values)


def settings_changes(params, table: dict[str, ParameterInfo]) -> dict:
    """``{name: value}`` of the parameters in ``params`` that are settings fields (node-level
    parameters such as ``use_sim_time`` are rclpy's, not settings)."""
    return {p.name: parameter_value(p.value) for p in params if p.name in table}
