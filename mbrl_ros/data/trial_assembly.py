"""The recorder's streams turned into one episode per trial, and where each trial's bag ends (no ROS).

The trajectory_recorder node hands every message it receives to a :class:`TrialAssembler`: a
decoded joint state with its header stamp, a torque command with its log time (commands carry no
stamp), a trial marker with its log time. The assembler keeps the recent streams, the open trials
(started, not ended) and the ended ones still waiting for their last joint states. A trial is
finished once its end marker has arrived and a joint state stamped at or after its end: it is
aligned (:func:`~mbrl_ros.data.alignment.align_trial`) into an episode, returned with the log time
its bag is to be cut at (every message logged up to the trial's end, its end marker included), or
reported when its states do not cover it. A trial still open when the next one starts was aborted
(one controller runs one trial at a time, and ends one before it starts the next): it is reported
then, or once the joint states are :data:`END_MARKER_WAIT_S` past its end. Joint states and
commands are kept from a second before the oldest pending trial's start; while no trial is open,
for :data:`IDLE_HISTORY_S`, since a start marker can arrive after the trial's first states.

:class:`RecorderNodeSettings` and :data:`RECORDER_PARAMETERS` are the node's parameters.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from mbrl_ros.settings import ParameterInfo, check_parameters
from mbrl_ros.arm_contract import COMMAND_TIMEOUT_S
from mbrl_ros.run_folder import BAGS, default_run_dir

from .alignment import CommandStream, JointMapper, StateStream, TrialMarker, align_trial
from .bags import STORAGE
from .episodes import Episodes

#: Joint states and commands kept while no trial is open (s).
IDLE_HISTORY_S = 5.0
#: A trial's streams are taken from this long before its start to this long after its end (s);
#: pruning keeps this much before the oldest pending start.
MARGIN_S = 1.0
#: An open trial whose end marker has not come by the time the joint states are this far past its
#: end is given up, so that the history can be pruned again (s). A trial the controller aborts is
#: given up sooner: when its next trial starts.
END_MARKER_WAIT_S = 60.0
#: Finished trials remembered, so that an end marker delivered twice (markers are transient-local:
#: a subscription that matches the controller again receives its last 10) starts nothing.
_FINISHED_KEPT = 1000


@dataclass(frozen=True)
class RecorderNodeSettings:
    """The trajectory_recorder node's parameters; see :data:`RECORDER_PARAMETERS`."""

    bag_dir: str = field(default_factory=lambda: str(default_run_dir() / BAGS))
    storage: str = "mcap"
    command_timeout_s: float = COMMAND_TIMEOUT_S

    def __post_init__(self) -> None:
        check_parameters(self, RECORDER_PARAMETERS)


RECORDER_PARAMETERS: dict[str, ParameterInfo] = {
    "bag_dir": ParameterInfo("Folder receiving one bag per trial (default: bags/ in a new run folder, "
                             "$ROS_HOME/mbrl_ros/runs/<start time>).", read_only=True),
    "storage": ParameterInfo("Bag storage: mcap or sqlite3.", read_only=True, choices=tuple(STORAGE)),
    "command_timeout_s": ParameterInfo(
        "The arm's command timeout (s): older commands count as zero torque.", 0.001, 10.0),
}


@dataclass(frozen=True)
class EpisodeReady:
    """A finished trial: its episode, to publish, and its bag, to cut.

    Attributes:
        marker: the trial's end marker.
        episode: the trial aligned to its control period (N = 1).
        bag_until_ns: the trial's bag holds every message logged up to this log time (ns).
        bag_name: ``trial_0007``; a trial number seen before in this run gets ``_2``, ``_3``, ...
    """

    marker: TrialMarker
    episode: Episodes
    bag_until_ns: int
    bag_name: str


@dataclass(frozen=True)
class UnalignedTrial:
    """A trial that gives no episode: its states do not cover it, or its end marker never came."""

    marker: TrialMarker
    reason: str


class TrialAssembler:
    """Buffers the recorder's streams and windows them into trials; feed it every message.

    ``command_timeout_s`` is the arm's command timeout: in an episode, a command older than that
    counts as zero torque (it may be changed at any time).
    """

    def __init__(self, command_timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        self.command_timeout_s = command_timeout_s
        self._states: list[tuple[float, tuple[str, ...], np.ndarray]] = []  # (stamp s, joint names, [q; qd])
        self._commands: list[tuple[float, np.ndarray]] = []  # (log time s, torques)
        self._open: TrialMarker | None = None  # the start marker of the trial in progress
        self._ended: dict[TrialMarker, int] = {}  # end markers of trials not finished -> their log time (ns)
        # (trial, start_s) of the last finished trials, oldest first: a repeated end marker is ignored.
        self._finished: dict[tuple[int, float], None] = {}
        self._episodes_per_number: Counter[int] = Counter()
        self._mappers: dict[tuple[str, ...] | None, JointMapper] = {}
        self._newest_state_s = -np.inf

    @property
    def open_trials(self) -> int:
        """Trials started and not ended (0 or 1)."""
        return int(self._open is not None)

    @property
    def history_s(self) -> float:
        """Time spanned by the joint states held (s)."""
        if len(self._states) < 2:
            return 0.0
        stamps = [s[0] for s in self._states]
        return max(stamps) - min(stamps)

    def add_state(self, stamp_s: float, joint_names: Sequence[str], x: np.ndarray) -> list[EpisodeReady | UnalignedTrial]:
        """A valid joint state ``x = [q; qd]`` in the order ``joint_names``, stamped ``stamp_s``;
        returns the trials it finishes, oldest first."""
        self._states.append((float(stamp_s), tuple(joint_names), np.asarray(x, dtype=float)))
        self._newest_state_s = max(self._newest_state_s, float(stamp_s))
        finished = self._give_up_unended() + self._finish()
        self._prune()
        return finished

    def add_command(self, log_ns: int, torque: np.ndarray) -> None:
        """A valid torque command logged (sent) at ``log_ns``."""
        self._commands.append((log_ns * 1e-9, np.asarray(torque, dtype=float)))

    def add_marker(self, log_ns: int, marker: TrialMarker) -> list[EpisodeReady | UnalignedTrial]:
        """A trial marker logged at ``log_ns``; returns the trials finished by it: an end marker
        arriving after its trial's last joint states, a start marker while a trial is open."""
        key = (marker.trial, marker.start_s)
        if marker.event == "start":
            # One controller runs one trial at a time and publishes a trial's end marker before the
            # next start: a trial still open now was aborted (or its controller restarted).
            aborted, self._open = self._open, marker
            if aborted is None:
                return []
            self._remember_finished(aborted)
            return [UnalignedTrial(aborted, f"trial {aborted.trial}: trial {marker.trial} started before its end marker came")]
        if self._open is not None and (self._open.trial, self._open.start_s) == key:
            self._open = None
        if marker.event == "abort":
            # The controller gave the trial up (reset, state lost): its torques are not its policy's.
            self._ended.pop(marker, None)
            self._remember_finished(marker)
            return []
        if key not in self._finished:
            self._ended.setdefault(marker, log_ns)
        return self._finish()

    def _finish(self) -> list[EpisodeReady | UnalignedTrial]:
        """Every ended trial whose states are complete (one stamped at or after its end), in time order."""
        ready = sorted((m for m in self._ended if self._newest_state_s >= m.end_s), key=lambda m: m.end_s)
        finished: list[EpisodeReady | UnalignedTrial] = []
        for marker in ready:
            marker_log_ns = self._ended.pop(marker)
            self._remember_finished(marker)
            try:
                states = self._state_stream(marker)
                episode = align_trial(states, self._command_stream(marker, states.position.shape[1]), marker,
                                      self.command_timeout_s)
            except ValueError as err:
                finished.append(UnalignedTrial(marker, str(err)))
                continue
            self._episodes_per_number[marker.trial] += 1
            repeat = self._episodes_per_number[marker.trial]
            finished.append(EpisodeReady(
                # The bag holds what the episode was made of: up to the newest state, the first at or
                # after the end, which the last step interpolates towards (1 us over the float stamp,
                # so the state logged at its stamp in ns is inside).
                marker, episode, bag_until_ns=max(round(self._newest_state_s * 1e9) + 1000, marker_log_ns),
                bag_name=f"trial_{marker.trial:04d}" + (f"_{repeat}" if repeat > 1 else ""),
            ))
        return finished

    def _remember_finished(self, marker: TrialMarker) -> None:
        self._finished[(marker.trial, marker.start_s)] = None
        if len(self._finished) > _FINISHED_KEPT:
            del self._finished[next(iter(self._finished))]

    def _give_up_unended(self) -> list[UnalignedTrial]:
        gone = self._open
        if gone is None or self._newest_state_s <= gone.end_s + END_MARKER_WAIT_S:
            return []
        self._open = None
        self._remember_finished(gone)  # reported once: an end marker later than this starts nothing
        return [UnalignedTrial(gone, f"trial {gone.trial}: no end marker {END_MARKER_WAIT_S:g} s after its end")]

    def _state_stream(self, marker: TrialMarker) -> StateStream:
        """The trial's joint states in its joint order (the states' own when the marker names none)."""
        wanted = marker.joint_names or None
        mapper = self._mappers.setdefault(wanted, JointMapper(wanted))
        low, high = marker.start_s - MARGIN_S, marker.end_s + MARGIN_S
        t, q, qd = [], [], []
        for stamp, names, x in self._states:
            if low <= stamp <= high:
                index = mapper.index(names)
                t.append(stamp)
                q.append(x[index])
                qd.append(x[len(names) + index])
        if not t:
            raise ValueError(f"trial {marker.trial}: no joint states")
        return StateStream(np.asarray(t), np.asarray(q), np.asarray(qd))

    def _command_stream(self, marker: TrialMarker, n_joints: int) -> CommandStream:
        low, high = marker.start_s - MARGIN_S, marker.end_s + MARGIN_S
        rows = [c for c in self._commands if low <= c[0] <= high and c[1].size == n_joints]
        if not rows:
            return CommandStream(np.zeros(0), np.zeros((0, n_joints)))
        return CommandStream(np.array([c[0] for c in rows]), np.stack([c[1] for c in rows]))

    def _prune(self) -> None:
        pending = [m.start_s for m in ([self._open] if self._open else []) + list(self._ended)]
        keep_from = (min(pending) if pending else self._newest_state_s - IDLE_HISTORY_S) - MARGIN_S
        # Amortised: the lists are rebuilt once they hold a margin's worth more than needed.
        if self._states and self._states[0][0] < keep_from - MARGIN_S:
            self._states = [s for s in self._states if s[0] >= keep_from]
            self._commands = [c for c in self._commands if c[0] >= keep_from]
