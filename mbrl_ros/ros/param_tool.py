"""``mbrl-ros param list|get|set|describe NODE ...``: ``ros2 param`` for machines without ros2cli,
on rclpy's parameter client. Values are parsed as YAML and coerced to the declared type (an
integer given for a double parameter is sent as a double); refusals print the node's reason."""

from __future__ import annotations

import sys

import yaml
from rcl_interfaces.msg import ParameterType
from rclpy.parameter import Parameter, parameter_value_to_python
from rclpy.parameter_client import AsyncParameterClient

from mbrl_ros.ros.spin import spinning_node, wait_for


class ParameterToolError(RuntimeError):
    """A failed parameter request; the message names the node and the parameter."""


def _call(future, what: str, timeout_s: float):
    if not wait_for(future.done, timeout_s):
        raise ParameterToolError(f"{what}: no answer within {timeout_s:g} s")
    return future.result()


def _coerce(value, declared_type: int):
    if declared_type == ParameterType.PARAMETER_DOUBLE and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if declared_type == ParameterType.PARAMETER_DOUBLE_ARRAY and isinstance(value, list):
        return [float(v) for v in value]
    return value


def run(action: str, node_name: str, name: str | None = None, value: str | None = None, timeout_s: float = 10.0) -> list[str]:
    """Perform one request; returns the lines to print. Raises :class:`ParameterToolError`."""
    target = node_name if node_name.startswith("/") else f"/{node_name}"
    with spinning_node("mbrl_ros_param") as node:
        client = AsyncParameterClient(node, target)
        if not client.wait_for_services(timeout_sec=timeout_s):
            raise ParameterToolError(f"node {target} is not running (no parameter services within {timeout_s:g} s)")
        if action == "list":
            names = _call(client.list_parameters(), f"{target}: list", timeout_s).result.names
            return sorted(names)
        descriptors = _call(client.describe_parameters([name]), f"{target}: describe {name}", timeout_s).descriptors
        if not descriptors or descriptors[0].type == ParameterType.PARAMETER_NOT_SET:
            raise ParameterToolError(f"{target} has no parameter {name!r}")
        descriptor = descriptors[0]
        if action == "describe":
            lines = [f"{name}: {descriptor.description}", f"  type: {Parameter.Type(descriptor.type).name}",
                     f"  read only: {descriptor.read_only}"]
            for r in (*descriptor.floating_point_range, *descriptor.integer_range):
                lines.append(f"  range: [{r.from_value}, {r.to_value}]")
            return lines
        if action == "get":
            msg = _call(client.get_parameters([name]), f"{target}: get {name}", timeout_s).values[0]
            return [f"{name}: {parameter_value_to_python(msg)}"]
        parsed = _coerce(yaml.safe_load(value), descriptor.type)
        result = _call(client.set_parameters([Parameter(name, value=parsed)]), f"{target}: set {name}", timeout_s).results[0]
        if not result.successful:
            raise ParameterToolError(f"{target} refused {name}={value}: {result.reason or 'no reason given'}")
        return [f"{target}: {name} = {parsed}"]


def main(action: str, node_name: str, name: str | None, value: str | None) -> int:
    try:
        for line in run(action, node_name, name, value):
            print(line)
    except ParameterToolError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
