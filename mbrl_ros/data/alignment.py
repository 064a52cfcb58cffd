"""Turning recorded streams (joint states, torque commands, trial markers) into episodes.

Streams arrive at their own rates and joint orders; a controller acts at a fixed period. A trial
marker says when a trial started, its period ``dt_s`` and its length ``steps``. The episode's state
``x_k`` is the joint state interpolated at ``start_s + k dt_s`` (k = 0..T) and its torque ``u_k`` is
the command in force in the middle of step k (zero when none was, or when the last one was older
than the arm's command timeout: that is what the arm applied). No ROS imports here: the recorder
node and ``mbrl-ros fit`` both use this.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from .episodes import Episodes

TRIAL_MARKER_VERSION = 1
#: Name lists whose joint index a :class:`JointMapper` keeps.
_INDEXES_KEPT = 64
#: A trial starts, ends after its steps, or is aborted (its episode must not be learned from).
TRIAL_EVENTS = ("start", "end", "abort")


def _listed(names: Sequence[str], most: int = 20) -> str:
    """``names`` as a list for a message, the first ``most`` of a longer one."""
    names = list(names)
    return str(names) if len(names) <= most else f"{names[:most]} and {len(names) - most} more"


class JointMapper:
    """Where a fixed list of joints sits in messages that name their joints in any order.

    Joint order differs between arms and drivers (joint_state_broadcaster does not keep the URDF's),
    so joints are always mapped by name. ``joint_names`` is the order wanted; ``None`` takes the
    first message's joints, in its order. The index of each list of message names is computed once
    (the last :data:`_INDEXES_KEPT` lists). A message naming a joint twice is ambiguous and refused.
    """

    def __init__(self, joint_names: Sequence[str] | None = None) -> None:
        self.joint_names: tuple[str, ...] | None = None if joint_names is None else tuple(joint_names)
        self._index: dict[tuple[str, ...], np.ndarray] = {}

    def index(self, names: Sequence[str]) -> np.ndarray:
        """Indices of :attr:`joint_names` in a message's ``names``, so ``values[index]`` is in the
        wanted order. Raises ``ValueError`` naming the joints the message lacks or names twice."""
        names = tuple(names)
        index = self._index.get(names)
        if index is None:
            position = {n: i for i, n in enumerate(names)}
            if len(position) != len(names):
                twice = sorted(n for n, count in Counter(names).items() if count > 1)
                raise ValueError(f"joints {_listed(twice)} are named more than once in the message")
            if self.joint_names is None:
                self.joint_names = names
            missing = [n for n in self.joint_names if n not in position]
            if missing:
                raise ValueError(f"joints {_listed(missing)} are not in the message (it has {_listed(names)})")
            if len(self._index) >= _INDEXES_KEPT:  # a stream of ever new name lists must not grow it
                del self._index[next(iter(self._index))]
            index = self._index[names] = np.array([position[n] for n in self.joint_names], dtype=int)
        return index


@dataclass(frozen=True)
class TrialMarker:
    """The controller's description of one trial, published at its start and end.

    Attributes:
        event: ``"start"``, ``"end"`` or ``"abort"`` (:data:`TRIAL_EVENTS`).
        trial: running trial number (unique per controller run).
        iteration: controller iteration the trial belongs to.
        start_s: time of step 0 on the controller's clock (s).
        dt_s: control period of the trial's policy (s).
        steps: number of steps T.
        goal: task goal (end-effector target, m).
        joint_names: controlled joints, the order of ``x`` and ``u``.
        mode: controller mode that ran the trial.
    """

    event: str
    trial: int
    iteration: int
    start_s: float
    dt_s: float
    steps: int
    goal: tuple[float, ...] = ()
    joint_names: tuple[str, ...] = ()
    mode: str = ""
    version: int = field(default=TRIAL_MARKER_VERSION)

    def __post_init__(self) -> None:
        if self.event not in TRIAL_EVENTS:
            raise ValueError(f"trial marker event must be one of {TRIAL_EVENTS}, got {self.event!r}")
        if self.version != TRIAL_MARKER_VERSION:
            raise ValueError(f"trial marker version {self.version} is not {TRIAL_MARKER_VERSION}")
        if not (np.isfinite(self.start_s) and np.isfinite(self.dt_s) and self.dt_s > 0 and self.steps >= 1):
            raise ValueError(f"trial marker needs finite start_s, dt_s > 0 and steps >= 1: {self}")
        if not all(np.isfinite(self.goal)):
            raise ValueError(f"trial marker goal must be finite: {self.goal}")

    @property
    def end_s(self) -> float:
        return self.start_s + self.steps * self.dt_s

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "TrialMarker":
        try:
            raw = json.loads(text)
            raw["goal"] = tuple(float(v) for v in raw.get("goal", ()))
            raw["joint_names"] = tuple(raw.get("joint_names", ()))
            return cls(**raw)
        except (TypeError, KeyError, json.JSONDecodeError) as err:
            raise ValueError(f"not a trial marker: {err}") from None


@dataclass
class StateStream:
    """Joint states in the controller's joint order: times ``(M,)`` s, positions and velocities ``(M, n)``."""

    t_s: np.ndarray
    position: np.ndarray
    velocity: np.ndarray


@dataclass
class CommandStream:
    """Torque commands: receive times ``(K,)`` s and torques ``(K, n)`` N·m."""

    t_s: np.ndarray
    torque: np.ndarray


def align_trial(
    states: StateStream, commands: CommandStream, marker: TrialMarker, command_timeout_s: float
) -> Episodes:
    """One trial as an :class:`Episodes` of N = 1.

    Raises ``ValueError`` when the states do not cover the trial (a gap longer than a step, or the
    stream starting late / ending early by more than half a step).
    """
    times = marker.start_s + marker.dt_s * np.arange(marker.steps + 1)
    # In time order whatever order they arrived in (interpolation and the command lookup need it).
    order = np.argsort(states.t_s, kind="stable")
    states = StateStream(np.asarray(states.t_s, dtype=float)[order], states.position[order], states.velocity[order])
    order = np.argsort(commands.t_s, kind="stable")
    commands = CommandStream(np.asarray(commands.t_s, dtype=float)[order], commands.torque[order])
    t = states.t_s
    if t.size < 2:
        raise ValueError(f"trial {marker.trial}: {t.size} joint states, cannot align")
    tolerance = 0.5 * marker.dt_s
    if t[0] > times[0] + tolerance or t[-1] < times[-1] - tolerance:
        raise ValueError(
            f"trial {marker.trial}: joint states cover {t[0]:.3f}..{t[-1]:.3f} s, trial is {times[0]:.3f}..{times[-1]:.3f} s"
        )
    inside = (t >= times[0] - marker.dt_s) & (t <= times[-1] + marker.dt_s)
    if inside.sum() >= 2 and np.diff(t[inside]).max() > marker.dt_s:
        raise ValueError(f"trial {marker.trial}: joint states have a gap of {np.diff(t[inside]).max():.3f} s")
    q = np.stack([np.interp(times, t, states.position[:, j]) for j in range(states.position.shape[1])], axis=1)
    qd = np.stack([np.interp(times, t, states.velocity[:, j]) for j in range(states.velocity.shape[1])], axis=1)

    n = states.position.shape[1]
    u = np.zeros((marker.steps, n))
    if commands.t_s.size:
        middle = times[:-1] + 0.5 * marker.dt_s
        latest = np.searchsorted(commands.t_s, middle, side="right") - 1
        valid = latest >= 0
        valid[valid] &= middle[valid] - commands.t_s[latest[valid]] <= command_timeout_s
        u[valid] = commands.torque[latest[valid]]
    return Episodes(
        x=np.concatenate([q, qd], axis=1)[None],
        u=u[None],
        timestamps_s=(times - times[0])[None],
        goal=np.asarray(marker.goal, dtype=float),
        metadata={
            "trial": marker.trial,
            "iteration": marker.iteration,
            "dt_s": marker.dt_s,
            "joint_names": list(marker.joint_names),
            "mode": marker.mode,
            "start_s": marker.start_s,
        },
    )
