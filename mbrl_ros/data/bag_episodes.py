"""Episodes from rosbag2 bags: read the streams, then segment and align them (no ROS needed).

Trials come from the controller's markers (``/mbrl/trial``) when the bag has them; otherwise the
recording is cut into consecutive windows of ``steps`` control periods of ``dt_s`` (windows that
straddle a gap in the joint states are dropped). Torques are the recorded commands, or for bags of
arms driven by other controllers, the ``effort`` field of the joint states.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .alignment import CommandStream, StateStream, TrialMarker, align_trial, joint_index
from .bags import BagError, bag_topics, read_messages
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


def read_streams(
    paths: Sequence[str | Path],
    topics: BagTopics = BagTopics(),
    joint_names: Sequence[str] | None = None,
    use_commands: bool = True,
    progress: Callable[[int], None] | None = None,
) -> BagStreams:
    """Read joint states (header stamps), commands (log times) and trial markers.

    ``joint_names`` fixes the joint order (default: the first joint state's order); joints are
    mapped by name in every message. Raises :class:`BagError` for a missing topic or a command
    whose length is not the number of joints.
    """
    present = bag_topics(paths)
    wanted = [topics.joint_states] + ([topics.commands] if use_commands else [])
    if topics.trials in present:
        wanted.append(topics.trials)
    names: tuple[str, ...] | None = tuple(joint_names) if joint_names else None
    t, q, qd, effort = [], [], [], []
    cmd_t, cmd = [], []
    markers: list[TrialMarker] = []
    index_cache: dict[tuple[str, ...], np.ndarray] = {}
    count = 0
    for topic, log_ns, msg in read_messages(paths, wanted):
        count += 1
        if progress is not None and count % 1000 == 0:
            progress(count)
        if topic == topics.joint_states:
            msg_names = tuple(msg.name)
            if names is None:
                names = msg_names
            if msg_names not in index_cache:
                try:
                    index_cache[msg_names] = joint_index(msg_names, names)
                except ValueError as err:
                    raise BagError(f"{topic}: {err}") from None
            idx = index_cache[msg_names]
            t.append(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
            q.append(np.asarray(msg.position)[idx])
            qd.append(np.asarray(msg.velocity)[idx])
            eff = np.asarray(msg.effort)
            effort.append(eff[idx] if eff.size == len(msg_names) else np.full(len(idx), np.nan))
        elif topic == topics.commands:
            cmd_t.append(log_ns * 1e-9)
            cmd.append(np.asarray(msg.data, dtype=float))
        else:
            try:
                marker = TrialMarker.from_json(msg.data)
            except ValueError:
                continue
            markers.append(marker)
    if not t:
        raise BagError(f"no {topics.joint_states} messages in {', '.join(map(str, paths))}")
    n = len(names)
    bad = {c.size for c in cmd if c.size != n}
    if bad:
        raise BagError(f"torque commands on {topics.commands} have {sorted(bad)} values, the arm has {n} joints {list(names)}")
    order = np.argsort(np.asarray(t), kind="stable")
    states = StateStream(np.asarray(t)[order], np.asarray(q)[order], np.asarray(qd)[order])
    commands = CommandStream(np.asarray(cmd_t), np.asarray(cmd).reshape(-1, n))
    return BagStreams(names, states, np.asarray(effort)[order], commands, markers, count)


def episodes_from_streams(
    streams: BagStreams,
    dt_s: float,
    steps: int,
    command_timeout_s: float = 0.05,
    torque_source: str = "commands",
) -> list[Episodes]:
    """Cut streams into aligned episodes (by trial markers if any, else fixed windows)."""
    if torque_source not in ("commands", "effort"):
        raise ValueError(f"torque_source must be 'commands' or 'effort', got {torque_source!r}")
    commands = streams.commands
    if torque_source == "effort":
        commands = CommandStream(streams.states.t_s, streams.efforts)
        command_timeout_s = np.inf
    ends = [m for m in streams.markers if m.event == "end"]
    if not ends:
        t = streams.states.t_s
        window = dt_s * steps
        ends = [
            TrialMarker("end", i, -1, float(start), dt_s, steps, (), streams.joint_names, "window")
            for i, start in enumerate(np.arange(t[0], t[-1] - window, window))
        ]
    episodes = []
    for marker in ends:
        try:
            episodes.append(align_trial(streams.states, commands, marker, command_timeout_s))
        except ValueError:
            continue  # a window across a gap, or a trial cut off by the end of the recording
    return episodes
