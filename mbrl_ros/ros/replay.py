"""``mbrl-ros replay``: a bag's messages back onto their topics, standing in for ``ros2 bag play``.

Every topic is offered with the QoS its publishers offered when it was recorded (rosbag2 keeps
them in the bag; :func:`mbrl_ros.data.bags.adapted_qos` reconciles several publishers) and every
message goes out as the CDR bytes it was recorded as (rclpy's ``Publisher.publish`` takes
``bytes``), at its recorded time offset divided by ``rate``. With ``clock``, ``/clock`` carries the
bag's time as the messages go out, so ``use_sim_time`` nodes (a recorder stamping commands by
their arrival) see the time of the recording. Playback starts when every topic has a subscriber or
after ``wait_s``, and ends once reliable subscribers have acknowledged everything.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Sequence

from rclpy.duration import Duration
from rclpy.qos import DurabilityPolicy, HistoryPolicy, LivelinessPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import Qos, QosTime
from builtin_interfaces.msg import Time
from rosgraph_msgs.msg import Clock

from mbrl_ros.data.bags import BagError, BagSet, open_bags, read_raw
from mbrl_ros.progress import ProgressBar
from mbrl_ros.ros import qos
from mbrl_ros.ros.spin import spinning_node, wait_for
from mbrl_ros.ros.topic_monitor import message_type

#: rosbag2 writes an unset deadline / lifespan / lease as 0 or as one of these "infinite" values.
_INFINITE_S = 2**31 - 1


def _policy(enum, value):
    member = enum.__members__.get(value.name)
    return enum.SYSTEM_DEFAULT if member is None or member.name == "UNKNOWN" else member


def _duration(value: QosTime) -> Duration | None:
    if value.sec == 0 and value.nsec == 0 or value.sec >= _INFINITE_S:
        return None
    return Duration(seconds=value.sec, nanoseconds=value.nsec)


def rclpy_qos(recorded: Qos, history_depth: int | None = None) -> QoSProfile:
    """The rclpy profile of a QoS recorded in a bag (unset durations stay at their defaults), with
    another history depth if given."""
    profile = QoSProfile(
        history=_policy(HistoryPolicy, recorded.history),
        depth=history_depth or max(1, recorded.depth),
        reliability=_policy(ReliabilityPolicy, recorded.reliability),
        durability=_policy(DurabilityPolicy, recorded.durability),
        liveliness=_policy(LivelinessPolicy, recorded.liveliness),
        avoid_ros_namespace_conventions=recorded.avoid_ros_namespace_conventions,
    )
    for name in ("deadline", "lifespan", "liveliness_lease_duration"):
        duration = _duration(getattr(recorded, name))
        if duration is not None:
            setattr(profile, name, duration)
    return profile


@dataclass(frozen=True)
class ReplaySettings:
    """How to replay.

    Attributes:
        rate: playback speed factor (> 0).
        clock: publish ``/clock`` with the bag's time.
        topics: only these topics (``None``: all).
        wait_s: longest wait for every topic to have a subscriber before playing.
        history_depth: history depth of every publisher instead of the recorded one. A reliable
            publisher keeps only that many messages for a subscriber that falls behind (10 for
            joint states: 20 ms at 500 Hz); a deeper history lets a busy subscriber catch up.
        allow_partial: replay the intact part of damaged bags.
    """

    rate: float = 1.0
    clock: bool = False
    topics: tuple[str, ...] | None = None
    wait_s: float = 2.0
    history_depth: int | None = None
    allow_partial: bool = False

    def __post_init__(self) -> None:
        if not self.rate > 0.0:
            raise ValueError(f"rate must be > 0, got {self.rate}")
        if self.history_depth is not None and self.history_depth < 1:
            raise ValueError(f"history depth must be >= 1, got {self.history_depth}")


@dataclass(frozen=True)
class ReplayStats:
    """Messages published per topic, the recording time they span and the wall time they took."""

    counts: dict[str, int]
    recording_s: float
    wall_s: float


def replay(bags: BagSet, node, settings: ReplaySettings = ReplaySettings(), progress=None) -> ReplayStats:
    """Publish the bags' messages from ``node``."""
    s = settings
    names = list(s.topics or sorted(bags.topics))
    if s.clock and "/clock" in names:
        raise BagError("the bag has its own /clock topic: replay it without --clock (or leave /clock out with --topics)")
    publishers = {}
    for name in names:
        spec = bags.require(name)
        try:
            msg_class = message_type(spec.msgtype)
        except (ImportError, AttributeError, ValueError):
            raise BagError(f"cannot replay {name}: message type {spec.msgtype} is not installed") from None
        publishers[name] = node.create_publisher(msg_class, name, rclpy_qos(spec.offered_qos, s.history_depth))
    clock_pub = node.create_publisher(Clock, "/clock", qos.CLOCK) if s.clock else None
    wait_for(lambda: all(p.get_subscription_count() > 0 for p in publishers.values()), s.wait_s)

    total = sum(bags.message_counts.get(n, 0) for n in names)
    counts = dict.fromkeys(names, 0)
    start_ns, last_ns, start_wall = None, 0, time.monotonic()
    for spec, log_ns, raw in read_raw(bags, names, include_damaged=s.allow_partial):
        if start_ns is None:
            start_ns, start_wall = log_ns, time.monotonic()
        last_ns = log_ns
        delay = start_wall + (log_ns - start_ns) * 1e-9 / s.rate - time.monotonic()
        if delay > 0.0:
            time.sleep(delay)
        if clock_pub is not None:
            clock_pub.publish(Clock(clock=Time(sec=log_ns // 10**9, nanosec=log_ns % 10**9)))
        publishers[spec.topic].publish(bytes(raw))
        counts[spec.topic] += 1
        if progress is not None:
            progress(sum(counts.values()), total)
    wall_s = time.monotonic() - start_wall
    for publisher in publishers.values():
        publisher.wait_for_all_acked(Duration(seconds=5.0))
    return ReplayStats(counts, (last_ns - (start_ns or 0)) * 1e-9, wall_s)


def main(paths: Sequence[str], settings: ReplaySettings) -> int:
    """``mbrl-ros replay``: problems with the bag are one line on stderr and exit code 1."""
    try:
        bags = open_bags(paths)
        bags.check_usable(settings.allow_partial, "mbrl-ros replay --allow-partial")
        bar = ProgressBar(f"replaying at rate {settings.rate:g}", "messages")
        with spinning_node("mbrl_ros_replay") as node:
            try:
                stats = replay(bags, node, settings, bar)
            except KeyboardInterrupt:
                bar.finish("interrupted")
                return 130
        bar.finish()
    except BagError as err:
        print(f"mbrl-ros replay: {err}", file=sys.stderr)
        return 1
    print(f"replayed {stats.recording_s:.2f} s of recording in {stats.wall_s:.2f} s: "
          + ", ".join(f"{n} messages on {t}" for t, n in stats.counts.items()), flush=True)
    return 0
