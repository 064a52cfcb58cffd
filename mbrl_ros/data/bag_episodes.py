"""Episodes from rosbag2 bags: read the streams, then segment and align them (no ROS needed).

Trials come from the controller's markers (``/mbrl/trial``) when the bag has them; otherwise the
joint states are split where they pause for longer than a control period (an arm reset between
trials, a stopped recording) and every run is cut, from its start, into consecutive windows of
``steps`` control periods of ``dt_s``. Torques are the recorded commands, or for bags of arms
driven by other controllers, the ``effort`` field of the joint states.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from mbrl_ros.arm_contract import COMMAND_TIMEOUT_S

from .alignment import CommandStream, JointMapper, StateStream, TrialMarker, align_trial
from .bags import BagError, DamagedBag, open_bags, read_messages
from .episodes import Episodes


@dataclass(frozen=True)
class BagTopics:
    """Topic names to read; ``trials`` may be absent from a bag."""

    joint_states: str = "/joint_states"
    commands: str = "/effort_controller/commands"
    trials: str = "/mbrl/trial"


@dataclass
class BagStreams:
    """Everything read from the bags, in the chosen joint order."""

    joint_names: tuple[str, ...]
    states: StateStream
    efforts: np.ndarray  # (M, n) joint-state efforts, N·m
    commands: CommandStream
    markers: list[TrialMarker]
    messages_read: int
    damaged: tuple[DamagedBag, ...] = ()


def read_streams(
    paths: Sequence[str | Path],
    topics: BagTopics = BagTopics(),
    joint_names: Sequence[str] | None = None,
    use_commands: bool = True,
    progress: Callable[[int, int], None] | None = None,
    allow_partial: bool = False,
) -> BagStreams:
    """Read joint states (header stamps), commands (log times) and trial markers.

    ``joint_names`` fixes the joint order (default: the first joint state's order); joints are
    mapped by name in every message. ``progress(messages read, messages to read)`` is called as
    reading goes. Raises :class:`BagError` for an empty bag, a missing topic, a command whose
    length is not the number of joints, or a damaged bag unless ``allow_partial`` (then its
    intact part is read).
    """
    bags = open_bags(paths)
    bags.check_usable(allow_partial, "mbrl-ros fit --allow-partial")
    wanted = [bags.require(topics.joint_states, "sensor_msgs/msg/JointState").topic]
    if use_commands:
        wanted.append(bags.require(topics.commands, "std_msgs/msg/Float64MultiArray").topic)
    if topics.trials in bags.topics:
        wanted.append(topics.trials)
    total = sum(bags.message_counts.get(t, 0) for t in wanted)
    mapper = JointMapper(joint_names or None)
    t, q, qd, effort = [], [], [], []
    cmd_t, cmd = [], []
    markers: list[TrialMarker] = []
    count = 0
    for topic, log_ns, msg in read_messages(bags, wanted, include_damaged=allow_partial):
        count += 1
        if progress is not None and count % 2000 == 0:
            progress(count, total)
        if topic == topics.joint_states:
            try:
                idx = mapper.index(msg.name)
            except ValueError as err:
                raise BagError(f"{topic}: {err}") from None
            t.append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
            q.append(np.asarray(msg.position)[idx])
            qd.append(np.asarray(msg.velocity)[idx])
            eff = np.asarray(msg.effort)
            effort.append(eff[idx] if eff.size == len(msg.name) else np.full(len(idx), np.nan))
        elif topic == topics.commands:
            cmd_t.append(log_ns * 1e-9)
            cmd.append(np.asarray(msg.data, dtype=float))
        else:
            try:
                marker = TrialMarker.from_json(msg.data)
            except ValueError:
                continue
            markers.append(marker)
    if progress is not None:
        progress(count, total)
    if not t:
        raise BagError(f"no {topics.joint_states} messages in {', '.join(map(str, bags.paths))}")
    names = mapper.joint_names
    n = len(names)
    bad = {c.size for c in cmd if c.size != n}
    if bad:
        raise BagError(f"torque commands on {topics.commands} have {sorted(bad)} values, the arm has {n} joints {list(names)}")
    # Messages come in log-time order; header stamps need not be in that order.
    order = np.argsort(np.asarray(t), kind="stable")
    states = StateStream(np.asarray(t)[order], np.asarray(q)[order], np.asarray(qd)[order])
    commands = CommandStream(np.asarray(cmd_t), np.asarray(cmd).reshape(-1, n))
    return BagStreams(names, states, np.asarray(effort)[order], commands, markers, count, bags.damaged)


def episodes_from_streams(
    streams: BagStreams,
    dt_s: float,
    steps: int,
    command_timeout_s: float = COMMAND_TIMEOUT_S,
    torque_source: str = "commands",
) -> list[Episodes]:
    """Cut streams into aligned episodes (by trial markers if any, else fixed windows)."""
    if torque_source not in ("commands", "effort"):
        raise ValueError(f"torque_source must be 'commands' or 'effort', got {torque_source!r}")
    commands = streams.commands
    if torque_source == "effort":
        missing = ~np.isfinite(streams.efforts).all(axis=0)
        if missing.any():
            joints = [n for n, m in zip(streams.joint_names, missing) if m]
            raise BagError(f"the joint states carry no effort for {joints}: they cannot be the torques")
        commands = CommandStream(streams.states.t_s, streams.efforts)
        command_timeout_s = np.inf
    # A trial's end marker may be in the bags twice (overlapping bags): one episode per trial.
    ends = sorted({(m.trial, m.start_s): m for m in streams.markers if m.event == "end"}.values(), key=lambda m: m.start_s)
    for before, after in zip(ends, ends[1:]):
        if after.start_s < before.end_s:
            # One controller never runs two trials at once: these are runs recorded on the same
            # clock (each sim starts at 0), and their streams would be interleaved.
            raise BagError(
                f"trials {before.trial} ({before.start_s:.3f}..{before.end_s:.3f} s) and {after.trial} "
                f"({after.start_s:.3f}..{after.end_s:.3f} s) overlap in time: the bags hold more than one run "
                "on the same clock; fit one run at a time"
            )
    if not ends:
        ends = [
            TrialMarker("end", i, -1, float(start), dt_s, steps, (), streams.joint_names, "window")
            for i, start in enumerate(window_starts(streams.states.t_s, dt_s, steps))
        ]
    episodes = []
    for marker in ends:
        try:
            episodes.append(align_trial(streams.states, commands, marker, command_timeout_s))
        except ValueError:
            continue  # a window across a gap, or a trial cut off by the end of the recording
    return episodes


def runs(t_s: np.ndarray, dt_s: float) -> list[tuple[float, float]]:
    """(first, last) sample time of every run of samples ``t_s`` (sorted) without a gap longer than
    ``dt_s``."""
    breaks = np.flatnonzero(np.diff(t_s) > dt_s)
    return [(float(t_s[first]), float(t_s[last])) for first, last in zip(np.r_[0, breaks + 1], np.r_[breaks, t_s.size - 1])]


def run_steps(t_s: np.ndarray, dt_s: float) -> list[int]:
    """The longest window, in periods of ``dt_s``, that each run of samples ``t_s`` holds (see :func:`runs`)."""
    return [int((last - first) / dt_s + 1e-9) for first, last in runs(t_s, dt_s)]


def window_starts(t_s: np.ndarray, dt_s: float, steps: int) -> list[float]:
    """Start times of consecutive windows of ``steps`` periods of ``dt_s`` s, from the start of every
    run of samples ``t_s`` without a gap longer than ``dt_s``."""
    window = dt_s * steps
    starts = []
    for first, last in runs(t_s, dt_s):
        n = int((last - first) / window + 1e-9)
        starts += [first + i * window for i in range(n)]
    return starts
