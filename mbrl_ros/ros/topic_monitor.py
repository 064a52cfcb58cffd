"""Receiving a topic and measuring what arrives: rate, period jitter, the latest message.

Used by ``mbrl-ros hz``, the demo and the multi-process tests (``ros2 topic hz`` is not always
installed).
"""

from __future__ import annotations

import importlib
import threading
import time

from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.serialization import deserialize_message

from mbrl_ros.realtime import PeriodStats, PeriodSummary


def message_type(name: str):
    """The message class for ``pkg/msg/Type`` (or ``pkg/Type``), e.g. ``sensor_msgs/msg/JointState``."""
    parts = name.split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3:
        raise ValueError(f"message type must look like pkg/msg/Type, got {name!r}")
    module = importlib.import_module(f"{parts[0]}.{parts[1]}")
    return getattr(module, parts[2])


class TopicMonitor:
    """Subscribes to ``topic`` on ``node`` and keeps receive times and the latest message.

    Messages are received serialized and only the latest is deserialized, when asked for: a
    monitor of the 250 Hz joint states then costs the 2 shared cores a fraction of what it did
    deserializing every message (docs/benchmarks.md)."""

    def __init__(self, node: Node, msg_type, topic: str, qos: QoSProfile, window: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._window = window
        self._stats = PeriodStats(window)
        self._msg_type = msg_type
        self._latest_raw: bytes | None = None
        self._latest = None
        self.count = 0
        node.create_subscription(msg_type, topic, self._on_message, qos, raw=True)

    def _on_message(self, raw: bytes) -> None:
        with self._lock:
            self._stats.tick(time.monotonic())
            self._latest_raw, self._latest = raw, None
            self.count += 1

    @property
    def latest(self):
        with self._lock:
            if self._latest is None and self._latest_raw is not None:
                self._latest = deserialize_message(self._latest_raw, self._msg_type)
            return self._latest

    def reset(self) -> None:
        with self._lock:
            self._stats = PeriodStats(self._window)
            self.count = 0

    def summary(self) -> PeriodSummary:
        with self._lock:
            return self._stats.summary()
