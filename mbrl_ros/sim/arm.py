"""A torque-controlled arm simulated in PyBullet, standing in for real hardware (no ROS here).

PyBullet's default velocity motors are switched off once and a torque is sent before every physics
step (a PyBullet torque lasts one step only). Physics runs at 1 kHz by default: at 240 Hz a
torque-controlled arm drifts. Link inertias come from the URDF so that a Pinocchio model built from
the same file describes exactly the simulated arm.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field

import numpy as np
import pybullet
from pybullet_utils.bullet_client import BulletClient

from mbrl_ros.arm_contract import COMMAND_TIMEOUT_S
from mbrl_ros.settings import ParameterInfo, check_parameters

from .mismatch import Mismatch, MismatchSettings, payload_urdf
from .robots import ROBOTS, RobotSpec, robot_spec


@dataclass(frozen=True)
class SimSettings:
    """Simulator settings; :data:`SIM_PARAMETERS` describes each field (unit, range).

    Attributes:
        robot: registered robot name (see :mod:`mbrl_ros.sim.robots`).
        physics_rate_hz: physics step rate; torques are held for one step.
        emulate_gravity_compensation: add the gravity torque g(q) to every command, as Franka's
            FCI does. ``None`` takes the robot's own default (on for the Panda, off for the iiwa).
        joint_damping_nms_per_rad: viscous damping torque -d * qd applied on every arm joint.
        initial_positions_rad: reset configuration; empty takes the robot's home pose.
        reset_noise_rad: standard deviation of Gaussian noise added to the reset configuration.
        seed: seed of the reset-noise generator.
        gui: open the PyBullet GUI (needs a display) instead of running headless.
    """

    robot: str = "panda"
    physics_rate_hz: float = 1000.0
    emulate_gravity_compensation: bool | None = None
    joint_damping_nms_per_rad: float = 0.0
    initial_positions_rad: tuple[float, ...] = ()
    reset_noise_rad: float = 0.0
    seed: int = 0
    gui: bool = False

    def __post_init__(self) -> None:
        check_parameters(self, SIM_PARAMETERS)
        spec = robot_spec(self.robot)
        # The robot's own defaults, resolved here so that the settings say what the arm does.
        if self.emulate_gravity_compensation is None:
            object.__setattr__(self, "emulate_gravity_compensation", spec.emulates_gravity_compensation)
        if not self.initial_positions_rad:
            object.__setattr__(self, "initial_positions_rad", tuple(spec.home_positions_rad))
        q0 = np.asarray(self.initial_positions_rad, dtype=float)
        if q0.shape != (spec.nq,) or not np.all(np.isfinite(q0)):
            raise ValueError(f"initial_positions_rad must be {spec.nq} finite values for {spec.name}, got {q0.tolist()}")

    @property
    def spec(self) -> RobotSpec:
        return robot_spec(self.robot)

    @property
    def gravity_compensated(self) -> bool:
        """Whether commands are applied on top of the gravity torque."""
        return bool(self.emulate_gravity_compensation)


@dataclass(frozen=True)
class SimNodeSettings(SimSettings):
    """The sim_node's parameters: the simulator's settings and how the node runs it.

    Attributes:
        publish_rate_hz: ``joint_states`` (and ``/clock``) rate; must divide ``physics_rate_hz``.
            250 Hz, the controller's torque rate: every subscriber pays per message (the
            recorder's Python executor about 0.6 ms), and a faster stream only oversamples.
        command_timeout_s: longest a command is applied without a new one (simulated time).
        real_time_factor: simulated seconds per wall second; 0 runs as fast as possible.
        publish_clock: publish ``/clock`` and stamp with simulated time.
        rt_priority: SCHED_FIFO priority of the physics thread when paced (0: normal scheduling).
        diagnostics_period_s: period of ``/diagnostics``.
        link_markers_rate_hz: rate of ``robot_markers``, the links' meshes at their poses, for
            viewers without TF (0: not published).
    """

    publish_rate_hz: float = 250.0
    command_timeout_s: float = COMMAND_TIMEOUT_S
    real_time_factor: float = 1.0
    publish_clock: bool = False
    rt_priority: int = 40
    diagnostics_period_s: float = 1.0
    link_markers_rate_hz: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if abs(self.steps_per_tick * self.publish_rate_hz - self.physics_rate_hz) > 1e-6:
            raise ValueError(f"publish_rate_hz {self.publish_rate_hz} must divide physics_rate_hz {self.physics_rate_hz}")

    @property
    def steps_per_tick(self) -> int:
        """Physics steps per published joint state."""
        return round(self.physics_rate_hz / self.publish_rate_hz)


SIM_PARAMETERS: dict[str, ParameterInfo] = {
    "robot": ParameterInfo("Simulated robot: panda or iiwa.", read_only=True, choices=tuple(ROBOTS)),
    "physics_rate_hz": ParameterInfo("Physics step rate (Hz).", 100.0, 10000.0, read_only=True),
    "emulate_gravity_compensation": ParameterInfo(
        "Add g(q) to every command, as Franka's FCI does (commands are torques on top of gravity); "
        "the robot's own default unless set.", read_only=True),
    "joint_damping_nms_per_rad": ParameterInfo("Viscous joint damping (N·m·s/rad).", 0.0, 100.0, read_only=True),
    "initial_positions_rad": ParameterInfo(
        "Reset configuration (rad), one value per arm joint; empty: the robot's home pose.", read_only=True),
    "reset_noise_rad": ParameterInfo("Std of Gaussian noise added on reset (rad).", 0.0, 1.0, read_only=True),
    "seed": ParameterInfo("Seed of the reset noise.", 0, 2**31 - 1, read_only=True),
    "gui": ParameterInfo("Open the PyBullet GUI (needs a display).", read_only=True),
    "publish_rate_hz": ParameterInfo("joint_states rate (Hz); must divide physics_rate_hz.", 1.0, 2000.0,
                                     read_only=True),
    "command_timeout_s": ParameterInfo("Longest a command is applied without a new one (s, sim time).", 0.001, 10.0),
    "real_time_factor": ParameterInfo("Simulated seconds per wall second; 0 runs as fast as possible.", 0.0, 1000.0,
                                      read_only=True),
    "publish_clock": ParameterInfo("Publish /clock and stamp with simulated time (for use_sim_time).", read_only=True),
    "rt_priority": ParameterInfo(
        "SCHED_FIFO priority of the physics thread where permitted, when paced (real_time_factor > 0); "
        "the node's other threads run one below (0: normal scheduling).", 0, 99, read_only=True),
    "diagnostics_period_s": ParameterInfo("Period of /diagnostics (s).", 0.05, 60.0, read_only=True),
    "link_markers_rate_hz": ParameterInfo(
        "Rate of robot_markers (visualization_msgs/MarkerArray): the links' meshes at their poses in the base "
        "link's frame, for viewers without TF (0: off).", 0.0, 100.0, read_only=True),
}


@dataclass
class ArmState:
    """Measured arm state: positions (rad), velocities (rad/s), applied motor torques (N·m), time (s)."""

    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray
    time_s: float

    @property
    def x(self) -> np.ndarray:
        """State vector ``[q; qd]`` of shape ``(2 nq,)``."""
        return np.concatenate([self.position, self.velocity])


@dataclass
class _JointTable:
    arm: list[int] = field(default_factory=list)
    movable: list[int] = field(default_factory=list)  # every non-fixed joint, PyBullet's IK/ID order
    held: list[tuple[int, float]] = field(default_factory=list)
    ee_link: int = -1


class SimulatedArm:
    """A PyBullet arm under joint-torque control.

    ``step(tau)`` clips the command to the URDF effort limits, adds the gravity torque if gravity
    compensation is emulated, clips the total again (the motors' own limit), and advances physics.

    ``mismatch`` makes the arm differ from its URDF (:mod:`mbrl_ros.sim.mismatch`: payload,
    friction, latency, torque gains, observation noise); :meth:`gravity_torque` and
    :meth:`mass_matrix` stay the nominal URDF's, what the arm's own controller knows.
    """

    def __init__(self, settings: SimSettings | None = None, mismatch: MismatchSettings | None = None) -> None:
        self.settings = settings or SimSettings()
        self.spec = self.settings.spec
        self.mismatch = mismatch or MismatchSettings()
        self._mismatch = Mismatch(self.mismatch, self.spec.nq, 1.0 / self.settings.physics_rate_hz, self.settings.seed)
        self._client = self._new_client(self.settings.gui)
        self._body = self._load(self._client, self.mismatch.has_payload)
        self._joints = self._index_joints(self._client, self._body)
        # The nominal URDF's g(q) and M(q) for a body that carries a payload: what FCI adds without a
        # configured load, and what a user's model of the arm says.
        self._model_client, self._model_body, self._model_joints = self._client, self._body, self._joints
        if self.mismatch.has_payload:
            self._model_client = self._new_client(False)
            self._model_body = self._load(self._model_client, False)
            self._model_joints = self._index_joints(self._model_client, self._model_body)
        self.nq = self.spec.nq
        lower, upper, effort, velocity = [], [], [], []
        for j in self._joints.arm:
            info = self._client.getJointInfo(self._body, j)
            lower.append(info[8])
            upper.append(info[9])
            effort.append(info[10])
            velocity.append(info[11])
        self.position_lower_rad = np.array(lower)
        self.position_upper_rad = np.array(upper)
        self.effort_limit_nm = np.array(effort)
        self.velocity_limit_rad_s = np.array(velocity)
        # Bullet's default link damping would make the simulated arm lose energy that no rigid-body
        # model of the URDF predicts; a real arm's friction is modelled by joint damping instead.
        for link in range(-1, self._client.getNumJoints(self._body)):
            self._client.changeDynamics(self._body, link, linearDamping=0.0, angularDamping=0.0)
        self._set_joint_motors()
        self._rng = np.random.default_rng(self.settings.seed)
        self._steps = 0
        self._applied = np.zeros(self.nq)
        self._q = np.zeros(self.nq)
        self._qd = np.zeros(self.nq)
        self.reset()

    @property
    def dt_s(self) -> float:
        """Physics step in seconds."""
        return 1.0 / self.settings.physics_rate_hz

    @property
    def time_s(self) -> float:
        """Simulated time since the last reset."""
        return self._steps * self.dt_s

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.spec.joint_names

    @property
    def gravity_compensated(self) -> bool:
        return self.settings.gravity_compensated

    def _set_joint_motors(self) -> None:
        # The velocity motors, off for a torque-controlled arm, are its Coulomb friction when mismatched.
        self._client.setJointMotorControlArray(
            self._body, self._joints.arm, pybullet.VELOCITY_CONTROL, targetVelocities=[0.0] * self.nq,
            forces=self._mismatch.coulomb.tolist()
        )

    def set_mismatch(self, mismatch: MismatchSettings) -> None:
        """Change the friction, torque gains and observation noise of a running arm; the payload
        (part of the body) and the latency (the command FIFO) stay as constructed."""
        fixed = ("payload_mass_kg", "payload_com_m", "payload_inertia_kgm2", "command_latency_ms")
        changed = [name for name in fixed if getattr(mismatch, name) != getattr(self.mismatch, name)]
        if changed:
            raise ValueError(f"{', '.join(changed)} cannot change while the arm runs")
        runtime = Mismatch(mismatch, self.nq, self.dt_s, self.settings.seed)
        runtime.take_commands(self._mismatch)
        self.mismatch, self._mismatch = mismatch, runtime
        self._set_joint_motors()

    def _new_client(self, gui: bool) -> BulletClient:
        client = BulletClient(connection_mode=pybullet.GUI if gui else pybullet.DIRECT)
        client.setGravity(0.0, 0.0, -9.81)
        client.setTimeStep(1.0 / self.settings.physics_rate_hz)
        return client

    def _load(self, client: BulletClient, with_payload: bool) -> int:
        flags = pybullet.URDF_USE_INERTIA_FROM_FILE
        if not with_payload:
            return client.loadURDF(self.spec.urdf_path, useFixedBase=True, flags=flags)
        with tempfile.TemporaryDirectory(prefix="mbrl_payload_") as folder:
            path = payload_urdf(self.spec.urdf_path, self.spec.ee_link, self.mismatch, folder)
            return client.loadURDF(path, useFixedBase=True, flags=flags)

    def _index_joints(self, client: BulletClient, body: int) -> _JointTable:
        table = _JointTable()
        by_name = {}
        for j in range(client.getNumJoints(body)):
            info = client.getJointInfo(body, j)
            name = info[1].decode()
            by_name[name] = j
            if info[2] != pybullet.JOINT_FIXED:
                table.movable.append(j)
            if info[12].decode() == self.spec.ee_link:
                table.ee_link = j
        missing = [n for n in self.spec.joint_names if n not in by_name]
        if missing or table.ee_link < 0:
            raise ValueError(f"URDF {self.spec.urdf_path} lacks joints {missing} or link {self.spec.ee_link}")
        table.arm = [by_name[n] for n in self.spec.joint_names]
        table.held = [(by_name[n], pos) for n, pos in self.spec.held_joints]
        return table

    def reset(self, positions_rad: np.ndarray | None = None, noise_rad: float | None = None) -> ArmState:
        """Reset to ``positions_rad`` (default: the configured initial configuration) at rest.

        ``noise_rad`` overrides the configured reset noise; the noise generator is seeded once at
        construction so a sequence of resets is reproducible.
        """
        if positions_rad is None:
            positions_rad = np.asarray(self.settings.initial_positions_rad, dtype=float)
        q0 = np.asarray(positions_rad, dtype=float)
        if q0.shape != (self.nq,) or not np.all(np.isfinite(q0)):
            raise ValueError(f"reset positions must be {self.nq} finite values, got {q0.tolist()}")
        sigma = self.settings.reset_noise_rad if noise_rad is None else noise_rad
        if sigma > 0.0:
            q0 = q0 + self._rng.normal(0.0, sigma, self.nq)
        q0 = np.clip(q0, self.position_lower_rad, self.position_upper_rad)
        for j, q in zip(self._joints.arm, q0):
            self._client.resetJointState(self._body, j, float(q), 0.0)
        for j, q in self._joints.held:
            self._client.resetJointState(self._body, j, q, 0.0)
            self._client.setJointMotorControl2(
                self._body, j, pybullet.POSITION_CONTROL, targetPosition=q, force=100.0
            )
        self._steps = 0
        self._applied[:] = 0.0
        self._mismatch.reset()
        self._read_state()
        return self.state()

    def _read_state(self) -> None:
        states = self._client.getJointStates(self._body, self._joints.arm)
        for i, s in enumerate(states):
            self._q[i] = s[0]
            self._qd[i] = s[1]

    def state(self) -> ArmState:
        """The current measured state (copies; with observation noise when mismatched)."""
        q, qd = self._mismatch.observe(self._q, self._qd, self._steps)
        return ArmState(q, qd, self._applied.copy(), self.time_s)

    @staticmethod
    def _movable_positions(joints: _JointTable, q: np.ndarray) -> list[float]:
        """Positions of every movable joint (PyBullet's dynamics API wants all of them)."""
        full = {j: float(v) for j, v in zip(joints.arm, q)}
        full.update({j: float(v) for j, v in joints.held})
        return [full[j] for j in joints.movable]

    def gravity_torque(self, positions_rad: np.ndarray | None = None, nominal: bool = True) -> np.ndarray:
        """Gravity torque g(q) (N·m) of the arm joints at ``positions_rad`` (default: now), of the
        nominal URDF (``nominal=False``: of the simulated body, a payload included)."""
        q = self._q if positions_rad is None else np.asarray(positions_rad, dtype=float)
        client, body, joints = (self._model_client, self._model_body, self._model_joints) if nominal else \
            (self._client, self._body, self._joints)
        zeros = [0.0] * len(joints.movable)
        tau = client.calculateInverseDynamics(body, self._movable_positions(joints, q), zeros, zeros)
        index = [joints.movable.index(j) for j in joints.arm]
        return np.asarray(tau)[index]

    def mass_matrix(self, positions_rad: np.ndarray | None = None) -> np.ndarray:
        """Joint-space inertia M(q) of the arm joints of the nominal URDF, shape ``(nq, nq)``."""
        q = self._q if positions_rad is None else np.asarray(positions_rad, dtype=float)
        joints = self._model_joints
        m = np.asarray(self._model_client.calculateMassMatrix(self._model_body, self._movable_positions(joints, q)))
        index = [joints.movable.index(j) for j in joints.arm]
        return m[np.ix_(index, index)]

    def ee_position(self) -> np.ndarray:
        """World position (m) of the end-effector link origin, by forward kinematics."""
        link = self._client.getLinkState(self._body, self._joints.ee_link, computeForwardKinematics=True)
        return np.asarray(link[4])

    def link_poses(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Every URDF link's frame in the base link's frame now: ``{link: (position m, quaternion
        xyzw)}`` (the base link itself at the identity)."""
        c, body = self._client, self._body
        base_position, base_orientation = c.getBasePositionAndOrientation(body)  # the base's inertial frame
        inertial_position, inertial_orientation = c.getDynamicsInfo(body, -1)[3:5]
        to_base = c.invertTransform(*c.multiplyTransforms(base_position, base_orientation,
                                                          *c.invertTransform(inertial_position, inertial_orientation)))
        base_name = c.getBodyInfo(body)[0].decode()
        poses = {base_name: (np.zeros(3), np.array([0.0, 0.0, 0.0, 1.0]))}
        links = range(c.getNumJoints(body))
        for j, state in zip(links, c.getLinkStates(body, list(links), computeForwardKinematics=True)):
            position, orientation = c.multiplyTransforms(*to_base, state[4], state[5])
            poses[c.getJointInfo(body, j)[12].decode()] = (np.asarray(position), np.asarray(orientation))
        return poses

    def clip_torque(self, tau: np.ndarray) -> np.ndarray:
        """Clip a torque vector to the URDF effort limits."""
        return np.clip(tau, -self.effort_limit_nm, self.effort_limit_nm)

    def step(self, torque_nm: np.ndarray, n_steps: int = 1) -> ArmState:
        """Apply ``torque_nm`` (one value per arm joint) for ``n_steps`` physics steps.

        Raises ``ValueError`` for a wrong-length or non-finite torque; nothing is applied then.
        """
        tau = np.asarray(torque_nm, dtype=float)
        if tau.shape != (self.nq,) or not np.all(np.isfinite(tau)):
            raise ValueError(f"torque must be {self.nq} finite values, got {np.asarray(torque_nm).tolist()}")
        command = self.clip_torque(tau)
        damping = self.settings.joint_damping_nms_per_rad
        mismatch = self._mismatch
        for _ in range(n_steps):
            total = mismatch.delayed(command).copy()
            if self.gravity_compensated:
                total += self.gravity_torque()
            total = mismatch.motor_torque(total)
            if damping > 0.0:
                total -= damping * self._qd
            self._applied = self.clip_torque(total)
            physics = self._applied + mismatch.friction_torque(self._qd) if mismatch.has_viscous else self._applied
            self._client.setJointMotorControlArray(
                self._body, self._joints.arm, pybullet.TORQUE_CONTROL, forces=physics.tolist()
            )
            self._client.stepSimulation()
            self._steps += 1
            self._read_state()
        return self.state()

    def close(self) -> None:
        """Disconnect from the physics server."""
        if self._client is not None:
            if self._model_client is not self._client:
                self._model_client.disconnect()
            self._client.disconnect()
            self._client = None

    def __enter__(self) -> "SimulatedArm":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: pybullet may already be gone
            pass
