"""Declaring ROS parameters with descriptors (range, choices, description, read-only): one at a
time, or every field of a settings dataclass from its :class:`~mbrl_ros.settings.ParameterInfo`
table, optionally kept in step with live changes (:class:`LiveSettings`)."""

from __future__ import annotations

import array
from dataclasses import fields, replace
from typing import Callable

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
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


def declare_field(node: Node, defaults, table: dict[str, ParameterInfo], name: str):
    """Declare the parameter of one field of the settings dataclass instance ``defaults`` (unless
    the node has declared it already) and return its value."""
    if not node.has_parameter(name):
        info = table[name]
        default = getattr(defaults, name)
        declare(node, name, list(default) if isinstance(default, tuple) else default, info.description,
                low=info.low, high=info.high, read_only=info.read_only, choices=info.choices)
    return parameter_value(node.get_parameter(name).value)


def declare_settings(node: Node, defaults, table: dict[str, ParameterInfo]):
    """Declare one parameter per field of the settings dataclass instance ``defaults`` (described by
    ``table``) and return the settings built from the parameters' values (YAML, ``-p`` overrides).

    Fields the node has declared already keep that declaration (a node declares ``robot`` first,
    with :func:`declare_field`, when other defaults depend on it). Raises ``ValueError`` when the
    values are invalid together.
    """
    return type(defaults)(**{f.name: declare_field(node, defaults, table, f.name) for f in fields(defaults)})


def settings_changes(params, table: dict[str, ParameterInfo]) -> dict:
    """``{name: value}`` of the parameters in ``params`` that are settings fields (node-level
    parameters such as ``use_sim_time`` are rclpy's, not settings)."""
    return {p.name: parameter_value(p.value) for p in params if p.name in table}


class LiveSettings:
    """A node's settings, declared as its parameters and kept in step with them.

    A parameter change is validated as a whole: it is refused, with the settings class's
    ``ValueError`` as the reason, unless the settings with it are valid. Once a change is set,
    :attr:`value` holds the new settings and ``on_change(settings, changed field names)`` runs.
    """

    def __init__(self, node: Node, defaults, table: dict[str, ParameterInfo],
                 on_change: Callable[[object, set[str]], None] | None = None) -> None:
        self.table = table
        self.value = declare_settings(node, defaults, table)
        self._on_change = on_change
        node.add_on_set_parameters_callback(self._check)
        node.add_post_set_parameters_callback(self._apply)

    def _check(self, params) -> SetParametersResult:
        try:
            replace(self.value, **settings_changes(params, self.table))
        except (TypeError, ValueError) as err:
            return SetParametersResult(successful=False, reason=str(err))
        return SetParametersResult(successful=True)

    def _apply(self, params) -> None:
        changes = settings_changes(params, self.table)
        if changes:
            self.value = replace(self.value, **changes)
            if self._on_change is not None:
                self._on_change(self.value, set(changes))
