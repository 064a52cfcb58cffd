"""Simulated exploration trials written straight into a rosbag2 bag (no ROS needed).

The bag holds what ``ros2 bag record`` would on a real arm: ``/joint_states`` at the arm's publish
rate (stamped, with the applied effort), ``/effort_controller/commands`` at the controller's command
rate, and optionally the controller's trial markers on ``/mbrl/trial``. Trials are separated by a
pause in the recording (the arm being reset). A test fixture, not part of the package: the
``mbrl-ros fit`` tests (``test/sim/test_fit.py``) and its benchmark (``bench/fit.py``, which puts
this folder on ``sys.path``) fit on these bags.

Every trial resets the arm near home and runs the initial controller of LQR-FLM: a
mass-matrix-scaled PD toward a joint target with exploration noise scaled by ``sqrt(diag M)``
(``docs/learning.md``, *Controller and LQR-FLM*), which keeps the Panda's light wrist stable at the
20 Hz zero-order hold. Like the trials of one LQR-FLM iteration, the trials of an iteration share
their controller: the target is drawn once per iteration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Writer

from mbrl_ros.control.lg_policy import InitialControllerSettings, initial_pd_policy
from mbrl_ros.data.alignment import TrialMarker
from mbrl_ros.data.bags import STORAGE, TYPESTORE, qos
from mbrl_ros.data.episodes import Episodes
from mbrl_ros.sim.arm import SimSettings, SimulatedArm

_T = TYPESTORE.types


@dataclass(frozen=True)
class RecordingSettings:
    """What to simulate and how it is recorded.

    Attributes:
        robot: registered robot.
        trials, steps, dt_s: number of trials, control steps per trial, control period (s).
        trials_per_iteration: trials sharing a controller (target) and an iteration number.
        state_rate_hz, command_rate_hz: rates of ``/joint_states`` and of the torque commands; both
            must divide the 1 kHz physics rate.
        storage: ``mcap`` or ``sqlite3``.
        joint_order: joint names in the order the joint states list them (default the robot's;
            joint_state_broadcaster's order is not the URDF's).
        trial_markers: record ``/mbrl/trial`` (our controller's markers); a foreign bag has none.
        pause_s: recording pause between trials.
        target_spread_rad: PD targets are home ± this, uniformly per joint, drawn per iteration.
        noise_scale_rad_s2: exploration noise (torque std / sqrt(M_ii)).
        start_s: time of the first trial on the recording clock.
        seed: seeds targets, noise and reset noise.
    """

    robot: str = "panda"
    trials: int = 10
    steps: int = 100
    dt_s: float = 0.05
    trials_per_iteration: int = 5
    state_rate_hz: float = 500.0
    command_rate_hz: float = 250.0
    storage: str = "mcap"
    joint_order: tuple[str, ...] | None = None
    trial_markers: bool = True
    pause_s: float = 0.5
    target_spread_rad: float = 0.4
    noise_scale_rad_s2: float = 3.0
    start_s: float = 100.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.trials < 1 or self.steps < 1 or self.trials_per_iteration < 1:
            raise ValueError("trials, steps and trials_per_iteration must be >= 1")
        if self.storage not in STORAGE:
            raise ValueError(f"storage must be one of {sorted(STORAGE)}, got {self.storage!r}")
        for name, rate in (("state_rate_hz", self.state_rate_hz), ("command_rate_hz", self.command_rate_hz)):
            if not rate > 0 or abs(1000.0 / rate - round(1000.0 / rate)) > 1e-9:
                raise ValueError(f"{name} must divide the 1 kHz physics rate, got {rate}")
        if abs(self.dt_s * 1000.0 - round(self.dt_s * 1000.0)) > 1e-9 or self.dt_s <= 0:
            raise ValueError(f"dt_s must be a positive multiple of 1 ms, got {self.dt_s}")
        state_ms = round(1000.0 / self.state_rate_hz)
        if round(1000.0 / self.command_rate_hz) % state_ms or round(self.dt_s * 1000.0) % state_ms:
            raise ValueError("the joint-state period must divide the command period and dt_s")


def _stamp(t_s: float):
    ns = int(round(t_s * 1e9))
    return _T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9)


class _BagOut:
    """The three topics of a recording, serialized with the Kilted typestore."""

    def __init__(self, writer: Writer, markers: bool) -> None:
        self.writer = writer
        self.states = writer.add_connection("/joint_states", "sensor_msgs/msg/JointState", typestore=TYPESTORE,
                                            offered_qos_profiles=[qos(reliable=True, depth=10)])
        self.commands = writer.add_connection("/effort_controller/commands", "std_msgs/msg/Float64MultiArray",
                                              typestore=TYPESTORE, offered_qos_profiles=[qos(reliable=True, depth=1)])
        self.markers = writer.add_connection("/mbrl/trial", "std_msgs/msg/String", typestore=TYPESTORE,
                                             offered_qos_profiles=[qos(reliable=True, depth=10, transient_local=True)]) if markers else None
        self.messages = 0

    def _write(self, connection, t_s: float, msg, msgtype: str) -> None:
        self.writer.write(connection, int(round(t_s * 1e9)), TYPESTORE.serialize_cdr(msg, msgtype))
        self.messages += 1

    def joint_state(self, t_s: float, names: list[str], order: np.ndarray, position, velocity, effort) -> None:
        header = _T["std_msgs/msg/Header"](stamp=_stamp(t_s), frame_id="")
        msg = _T["sensor_msgs/msg/JointState"](header=header, name=names, position=position[order],
                                               velocity=velocity[order], effort=effort[order])
        self._write(self.states, t_s, msg, "sensor_msgs/msg/JointState")

    def command(self, t_s: float, torque: np.ndarray) -> None:
        layout = _T["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)
        self._write(self.commands, t_s, _T["std_msgs/msg/Float64MultiArray"](layout=layout, data=torque.copy()),
                    "std_msgs/msg/Float64MultiArray")

    def marker(self, t_s: float, marker: TrialMarker) -> None:
        if self.markers is not None:
            self._write(self.markers, t_s, _T["std_msgs/msg/String"](data=marker.to_json()), "std_msgs/msg/String")


def record_exploration(path: str | Path, settings: RecordingSettings = RecordingSettings()) -> tuple[Episodes, int]:
    """Simulate and record the trials into the bag ``path``; returns the simulated trials at the
    control steps (what a perfect alignment of the bag gives back) and the number of messages."""
    s = settings
    rng = np.random.default_rng(s.seed)
    physics_per_state = int(round(1000.0 / s.state_rate_hz))
    physics_per_command = int(round(1000.0 / s.command_rate_hz))
    physics_per_step = int(round(s.dt_s * 1000.0))
    with SimulatedArm(SimSettings(robot=s.robot, seed=s.seed, reset_noise_rad=0.02)) as arm, \
            Writer(Path(path), version=9, storage_plugin=STORAGE[s.storage]) as writer:
        names = list(s.joint_order or arm.joint_names)
        order = np.array([arm.joint_names.index(n) for n in names])
        home = np.array(arm.spec.home_positions_rad)
        M0 = arm.mass_matrix(home)
        out = _BagOut(writer, s.trial_markers)
        x = np.zeros((s.trials, s.steps + 1, 2 * arm.nq))
        u = np.zeros((s.trials, s.steps, arm.nq))
        for trial in range(s.trials):
            if trial % s.trials_per_iteration == 0:
                target = home + rng.uniform(-s.target_spread_rad, s.target_spread_rad, arm.nq)
                gravity = None if arm.gravity_compensated else arm.gravity_torque(target)
                policy = initial_pd_policy(s.steps, target, M0, InitialControllerSettings(
                    omega_rad_s=6.0, noise_scale_rad_s2=s.noise_scale_rad_s2), gravity_torque_nm=gravity)
            controller = policy.sampler(rng)
            t0 = s.start_s + trial * (s.steps * s.dt_s + s.pause_s)
            marker = TrialMarker("start", trial, trial // s.trials_per_iteration, t0, s.dt_s, s.steps, (), tuple(arm.joint_names), "exploration")
            out.marker(t0 - 0.01, marker)
            state = arm.reset(home)
            out.joint_state(t0, names, order, state.position, state.velocity, state.effort)
            for k in range(s.steps):
                x[trial, k] = state.x
                u[trial, k] = arm.clip_torque(controller(state.x, k))
                for i in range(k * physics_per_step, (k + 1) * physics_per_step, physics_per_state):
                    if i % physics_per_command == 0:
                        out.command(t0 + i * 1e-3, u[trial, k])
                    state = arm.step(u[trial, k], physics_per_state)
                    out.joint_state(t0 + (i + physics_per_state) * 1e-3, names, order, state.position, state.velocity, state.effort)
            x[trial, s.steps] = state.x
            end = TrialMarker("end", trial, marker.iteration, t0, s.dt_s, s.steps, (), tuple(arm.joint_names), "exploration")
            out.marker(t0 + s.steps * s.dt_s + 0.001, end)
        stamps = np.broadcast_to(s.dt_s * np.arange(s.steps + 1), (s.trials, s.steps + 1))
        truth = Episodes(x, u, stamps, np.zeros(0), {"dt_s": s.dt_s, "joint_names": list(arm.joint_names), "robot": s.robot})
        return truth, out.messages
