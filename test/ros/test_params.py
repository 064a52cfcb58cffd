"""Node parameters from settings dataclasses: declared from their table, validated as a whole, kept live."""

from dataclasses import dataclass

import pytest
import rclpy
from rclpy.parameter import Parameter

from mbrl_ros.ros.params import LiveSettings, declare_field, declare_settings
from mbrl_ros.settings import ParameterInfo, check_parameters


@dataclass(frozen=True)
class Window:
    low_m: float = 0.1
    high_m: float = 0.5
    label: str = "w"
    size: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        check_parameters(self, TABLE)
        if not self.low_m < self.high_m:
            raise ValueError(f"low_m {self.low_m} must be below high_m {self.high_m}")
        if not self.size:  # a default that depends on another field, as the start pose on the robot
            object.__setattr__(self, "size", (self.high_m - self.low_m,))


TABLE = {
    "low_m": ParameterInfo("Lower edge (m).", 0.0, 1.0),
    "high_m": ParameterInfo("Upper edge (m).", 0.0, 1.0),
    "label": ParameterInfo("Name.", read_only=True, choices=("w", "v")),
    "size": ParameterInfo("Size (m).", read_only=True),
}


@pytest.fixture
def node():
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("settings_test", context=context, parameter_overrides=[Parameter("high_m", value=0.8)])
    yield node
    node.destroy_node()
    rclpy.shutdown(context=context)


def test_settings_are_declared_from_their_table_with_overrides(node):
    assert declare_field(node, Window(), TABLE, "label") == "w"
    settings = declare_settings(node, Window(), TABLE)
    assert settings == Window(high_m=0.8, size=(0.5 - 0.1,)), "declared defaults, YAML/-p overrides on top"
    descriptor = node.describe_parameter("low_m")
    assert descriptor.description == "Lower edge (m)."
    assert (descriptor.floating_point_range[0].from_value, descriptor.floating_point_range[0].to_value) == (0.0, 1.0)
    assert node.describe_parameter("label").read_only and "one of: w, v" in node.describe_parameter("label").additional_constraints


def test_a_change_is_validated_as_a_whole_and_applied(node):
    changes = []
    live = LiveSettings(node, Window(), TABLE, lambda settings, changed: changes.append((settings, changed)))
    (result,) = node.set_parameters([Parameter("low_m", value=0.9)])
    assert not result.successful and "low_m 0.9 must be below high_m 0.8" in result.reason
    assert live.value.low_m == 0.1 and changes == []
    (result,) = node.set_parameters([Parameter("low_m", value=0.3)])
    assert result.successful and live.value.low_m == 0.3
    assert changes == [(live.value, {"low_m"})]
    (result,) = node.set_parameters([Parameter("use_sim_time", value=True)])
    assert result.successful and len(changes) == 1, "rclpy's own parameters are not settings"


def test_the_recorder_applies_a_new_command_timeout(tmp_path):
    from mbrl_ros.nodes.trajectory_recorder import TrajectoryRecorder

    rclpy.init(args=["--ros-args", "-p", f"bag_dir:={tmp_path}"])
    try:
        recorder = TrajectoryRecorder()
        assert recorder._trials.command_timeout_s == 0.05
        (result,) = recorder.set_parameters([Parameter("command_timeout_s", value=0.2)])
        assert result.successful and recorder._trials.command_timeout_s == 0.2
        recorder.shutdown()
        recorder.destroy_node()
    finally:
        rclpy.shutdown()
