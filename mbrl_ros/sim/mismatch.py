"""A simulated arm that differs from its URDF: the model mismatch a real arm has (no ROS here).

A controller's physics model is the nominal URDF, what a user of a real arm has. The real arm
carries an unmodelled gripper or payload, its joints have friction, its encoders are noisy, its
commands arrive over a bus a little late, and its torque constants are a few per cent off.
:class:`MismatchSettings` describes each (all off by default); :class:`Mismatch` applies them to
the PyBullet arm of :mod:`mbrl_ros.sim.arm`:

* payload: a link of ``payload_mass_kg`` fixed to the end-effector link, its centre of mass
  ``payload_com_m`` from the link's origin (in the link frame), its principal inertia about that
  centre ``payload_inertia_kgm2``. The simulated body is loaded from a copy of the URDF with that
  link added, so Featherstone's algorithm moves it exactly; the emulated gravity compensation
  still adds the nominal arm's g(q), as Franka's FCI does when the load is not configured.
* friction per joint: Coulomb ``coulomb_friction_nm`` is PyBullet's joint motor at zero target
  velocity with that force limit, solved implicitly with the contact constraints, so a joint
  sticks under a smaller torque instead of chattering around zero velocity as an explicit
  ``-c sign(qd)`` would at 1 kHz; viscous ``viscous_friction_nms_per_rad`` is the torque ``-b qd``
  added before every physics step.
* latency: every command waits ``command_latency_ms`` in a FIFO of physics steps before it reaches
  the motors (gravity compensation, computed on the arm, is not delayed).
* torque gain: the motors apply ``torque_gain`` times the torque asked of them (gravity
  compensation included).
* noise: ``position_noise_rad`` and ``velocity_noise_rad_s`` (Gaussian σ) on the observed joint
  state only, drawn once per physics step from a generator of its own seed; the physics, and the
  end-effector position a benchmark measures, stay true.

:func:`mismatch_profile` names the usual combinations (``none``, ``realistic``).
"""

from __future__ import annotations

import os
import re
import tempfile
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from mbrl_ros.settings import ParameterInfo, check_parameters

from .robots import MISMATCH_PROFILES

#: Name of the link a payload is attached as.
PAYLOAD_LINK = "mbrl_payload"

# Coulomb friction levels identified on a Franka Panda (Gaz, Cognetti, Oliva, Robuffo Giordano,
# De Luca, "Dynamic identification of the Franka Emika Panda robot with retrieval of feasible
# parameters using penalty-based optimization", RA-L 2019: FI_1, the saturation of their sigmoid
# friction model, in N·m, as in their code, github.com/marcocognetti/FrankaEmikaPandaDynModel),
# and a small viscous term on top.
PANDA_COULOMB_NM = (0.55, 0.87, 0.64, 1.28, 0.84, 0.30, 0.56)
REALISTIC_VISCOUS_NMS_PER_RAD = 0.1


@dataclass(frozen=True)
class MismatchSettings:
    """How the simulated arm differs from its URDF; :data:`MISMATCH_PARAMETERS` describes each field.

    Per-joint values are tuples of one value per arm joint, or empty (no friction, unit gain).
    Every per-joint tuple given must have the same length (the arm checks it against its joints).

    Attributes:
        mismatch: the profile these settings started from (:func:`mismatch_profile`).
        payload_mass_kg: mass fixed to the end-effector link (0: none).
        payload_com_m: its centre of mass in the end-effector link's frame.
        payload_inertia_kgm2: its principal moments of inertia about its centre of mass, along the
            end-effector link's axes (all zero: a point mass).
        viscous_friction_nms_per_rad: viscous friction ``b`` per joint (torque ``-b qd``).
        coulomb_friction_nm: Coulomb friction level per joint (stiction up to it at rest).
        position_noise_rad, velocity_noise_rad_s: σ of Gaussian noise on the observed state.
        command_latency_ms: delay of every command before it reaches the motors; a whole number
            of physics steps.
        torque_gain: applied over asked torque per joint (1: exact).
    """

    mismatch: str = "none"
    payload_mass_kg: float = 0.0
    payload_com_m: tuple[float, ...] = (0.0, 0.0, 0.0)
    payload_inertia_kgm2: tuple[float, ...] = (0.0, 0.0, 0.0)
    viscous_friction_nms_per_rad: tuple[float, ...] = ()
    coulomb_friction_nm: tuple[float, ...] = ()
    position_noise_rad: float = 0.0
    velocity_noise_rad_s: float = 0.0
    command_latency_ms: float = 0.0
    torque_gain: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        check_parameters(self, MISMATCH_PARAMETERS)
        _check_values("payload_com_m", self.payload_com_m, -0.5, 0.5, 3)
        _check_values("payload_inertia_kgm2", self.payload_inertia_kgm2, 0.0, 1.0, 3)
        a, b, c = self.payload_inertia_kgm2
        # A body's principal moments satisfy the triangle inequality; Bullet integrates others
        # without complaint, into motion no rigid body makes.
        if a + b < c - 1e-12 or b + c < a - 1e-12 or a + c < b - 1e-12:
            raise ValueError(f"payload_inertia_kgm2 {list(self.payload_inertia_kgm2)} is no rigid body's: "
                             "each principal moment must be at most the sum of the other two")
        lengths = {}
        for name, low, high in (("viscous_friction_nms_per_rad", 0.0, 100.0), ("coulomb_friction_nm", 0.0, 50.0),
                                ("torque_gain", 0.5, 1.5)):
            values = getattr(self, name)
            _check_values(name, values, low, high)
            if values:
                lengths[name] = len(values)
        if len(set(lengths.values())) > 1:
            raise ValueError(f"per-joint mismatch values must be one per joint, got lengths {lengths}")

    @property
    def joints(self) -> int | None:
        """The number of joints the per-joint values are for (``None``: none given)."""
        for values in (self.viscous_friction_nms_per_rad, self.coulomb_friction_nm, self.torque_gain):
            if values:
                return len(values)
        return None

    @property
    def has_payload(self) -> bool:
        return self.payload_mass_kg > 0.0

    @property
    def active(self) -> bool:
        """Whether the arm differs from its URDF at all."""
        return (self.has_payload or any(self.viscous_friction_nms_per_rad) or any(self.coulomb_friction_nm)
                or self.position_noise_rad > 0.0 or self.velocity_noise_rad_s > 0.0 or self.command_latency_ms > 0.0
                or any(g != 1.0 for g in self.torque_gain))

    def as_dict(self) -> dict:
        """Every field, tuples as lists (for ``/diagnostics`` and JSON)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def replace(self, **changes) -> "MismatchSettings":
        return replace(self, **changes)


def _check_values(name: str, values: tuple, low: float, high: float, length: int | None = None) -> None:
    v = np.asarray(values, dtype=float)
    if length is not None and v.shape != (length,):
        raise ValueError(f"{name} must be {length} values, got {list(values)}")
    if v.size and not (np.all(np.isfinite(v)) and np.all(v >= low) and np.all(v <= high)):
        raise ValueError(f"{name} values must be in [{low}, {high}], got {list(values)}")


#: Profile names, in the order they are listed.
PROFILES = MISMATCH_PROFILES

MISMATCH_PARAMETERS: dict[str, ParameterInfo] = {
    "mismatch": ParameterInfo(
        "Model-mismatch profile: the defaults of the other mismatch parameters (none: the arm is its URDF; "
        "realistic: a 1.5 kg payload, Panda-level joint friction, 2 ms command latency, encoder noise, "
        "2 % torque gain errors).", read_only=True, choices=PROFILES),
    "payload_mass_kg": ParameterInfo("Payload fixed to the end-effector link, unknown to the URDF (kg).",
                                     0.0, 20.0, read_only=True),
    "payload_com_m": ParameterInfo("Payload centre of mass in the end-effector link's frame (m), 3 values in "
                                   "[-0.5, 0.5].", read_only=True),
    "payload_inertia_kgm2": ParameterInfo("Payload principal inertia about its centre of mass, along the end-effector "
                                          "link's axes (kg·m²), 3 values in [0, 1].", read_only=True),
    "viscous_friction_nms_per_rad": ParameterInfo("Viscous joint friction per joint (N·m·s/rad), in [0, 100]; live."),
    "coulomb_friction_nm": ParameterInfo("Coulomb joint friction per joint (N·m), in [0, 50]; sticks below it; live."),
    "position_noise_rad": ParameterInfo("σ of Gaussian noise on the published joint positions (rad); live.",
                                        0.0, 0.1),
    "velocity_noise_rad_s": ParameterInfo("σ of Gaussian noise on the published joint velocities (rad/s); live.",
                                          0.0, 10.0),
    "command_latency_ms": ParameterInfo("Delay of every command before it reaches the motors (ms, simulated time); "
                                        "a whole number of physics steps.", 0.0, 200.0, read_only=True),
    "torque_gain": ParameterInfo("Applied over commanded torque per joint (gravity compensation included), "
                                 "in [0.5, 1.5]; empty: 1; live."),
}


def mismatch_profile(name: str = "none", joints: int = 7) -> MismatchSettings:
    """The settings of profile ``name`` with per-joint values for ``joints`` joints.

    ``realistic``: a 1.5 kg payload (a gripper and a part) 4 cm behind and 2 cm beside the grasp
    point, the Coulomb friction identified on a Panda (:data:`PANDA_COULOMB_NM`, for arms of 7
    joints; 0.5 N·m otherwise) and 0.1 N·m·s/rad viscous, 2 ms command latency (a fieldbus cycle
    and a half), encoder noise of 0.1 mrad and velocity noise of 5 mrad/s (a differentiated
    encoder), torque gains 2 % off, alternately high and low.
    """
    if name not in PROFILES:
        raise ValueError(f"mismatch must be one of {list(PROFILES)}, got {name!r}")
    zeros = (0.0,) * joints
    if name == "none":
        return MismatchSettings(viscous_friction_nms_per_rad=zeros, coulomb_friction_nm=zeros, torque_gain=(1.0,) * joints)
    coulomb = PANDA_COULOMB_NM if joints == len(PANDA_COULOMB_NM) else (0.5,) * joints
    return MismatchSettings(
        mismatch=name, payload_mass_kg=1.5, payload_com_m=(0.02, 0.0, -0.04), payload_inertia_kgm2=(0.0025, 0.0025, 0.0025),
        viscous_friction_nms_per_rad=(REALISTIC_VISCOUS_NMS_PER_RAD,) * joints, coulomb_friction_nm=coulomb,
        position_noise_rad=1e-4, velocity_noise_rad_s=5e-3, command_latency_ms=2.0,
        torque_gain=tuple(1.02 if i % 2 == 0 else 0.98 for i in range(joints)),
    )


def payload_urdf(urdf_path: str, parent_link: str, settings: MismatchSettings, folder: str) -> str:
    """Write a copy of ``urdf_path`` into ``folder`` with the payload as a link fixed to
    ``parent_link``; returns its path. Mesh paths become absolute (the copy lives elsewhere)."""
    source = Path(urdf_path)
    text = source.read_text()

    def absolute(match: re.Match) -> str:
        name = match.group(2)
        name = name[len("package://"):] if name.startswith("package://") else name
        return match.group(1) + str((source.parent / name).resolve()) + match.group(3)

    root = ET.fromstring(re.sub(r'(<mesh\b[^>]*\bfilename=")([^"]+)(")', absolute, text))
    if parent_link not in {link.get("name") for link in root.findall("link")}:
        raise ValueError(f"{urdf_path} has no link {parent_link}")
    ixx, iyy, izz = settings.payload_inertia_kgm2
    link = ET.SubElement(root, "link", name=PAYLOAD_LINK)
    inertial = ET.SubElement(link, "inertial")
    ET.SubElement(inertial, "origin", xyz=" ".join(repr(float(v)) for v in settings.payload_com_m), rpy="0 0 0")
    ET.SubElement(inertial, "mass", value=repr(float(settings.payload_mass_kg)))
    ET.SubElement(inertial, "inertia", ixx=repr(ixx), iyy=repr(iyy), izz=repr(izz), ixy="0", ixz="0", iyz="0")
    joint = ET.SubElement(root, "joint", name=f"{PAYLOAD_LINK}_joint", type="fixed")
    ET.SubElement(joint, "parent", link=parent_link)
    ET.SubElement(joint, "child", link=PAYLOAD_LINK)
    ET.SubElement(joint, "origin", xyz="0 0 0", rpy="0 0 0")
    fd, path = tempfile.mkstemp(suffix=".urdf", prefix=f"{source.stem}_payload_", dir=folder)
    with os.fdopen(fd, "w") as fh:
        fh.write(ET.tostring(root, encoding="unicode"))
    return path


class Mismatch:
    """The runtime side of :class:`MismatchSettings` for an arm of ``nq`` joints stepped every
    ``dt_s``: the command FIFO, the friction and gain vectors, the observation noise.

    Raises ``ValueError`` when the per-joint values are not ``nq`` long or the latency is not a
    whole number of physics steps.
    """

    def __init__(self, settings: MismatchSettings, nq: int, dt_s: float, seed: int = 0) -> None:
        if settings.joints not in (None, nq):
            raise ValueError(f"per-joint mismatch values must be {nq} long (one per joint), got {settings.joints}")
        steps = settings.command_latency_ms * 1e-3 / dt_s
        if abs(steps - round(steps)) > 1e-6:
            raise ValueError(f"command_latency_ms {settings.command_latency_ms:g} is not a whole number of physics "
                             f"steps ({1e3 * dt_s:g} ms)")
        self.settings = settings
        self.nq = nq
        self.latency_steps = int(round(steps))
        self.viscous = np.asarray(settings.viscous_friction_nms_per_rad or (0.0,) * nq, dtype=float)
        self.coulomb = np.asarray(settings.coulomb_friction_nm or (0.0,) * nq, dtype=float)
        self.gain = np.asarray(settings.torque_gain or (1.0,) * nq, dtype=float)
        self.has_viscous = bool(np.any(self.viscous))
        self.has_gain = bool(np.any(self.gain != 1.0))
        self.noisy = settings.position_noise_rad > 0.0 or settings.velocity_noise_rad_s > 0.0
        self._sigma = np.concatenate([np.full(nq, settings.position_noise_rad), np.full(nq, settings.velocity_noise_rad_s)])
        # Its own generator (seeded apart from the reset noise's), so that noise never changes the
        # sequence of reset configurations the arm's seed gives.
        self._rng = np.random.default_rng([int(seed), 0x6E6F6973])
        self._fifo: deque = deque()
        self._noise = np.zeros(2 * nq)
        self._noise_step = -1
        self.reset()

    def reset(self) -> None:
        """An arm reset: the bus holds no command (zeros), the next observation draws fresh noise."""
        self._fifo = deque(np.zeros(self.nq) for _ in range(self.latency_steps))
        self._noise_step = -1

    def take_commands(self, other: "Mismatch") -> None:
        """Continue with the commands ``other`` holds on the bus (a live change of the other options)."""
        if other.latency_steps == self.latency_steps:
            self._fifo = other._fifo

    def delayed(self, command: np.ndarray) -> np.ndarray:
        """The command reaching the motors this physics step, given the one sent now."""
        if self.latency_steps == 0:
            return command
        self._fifo.append(np.array(command, dtype=float))
        return self._fifo.popleft()

    def motor_torque(self, torque: np.ndarray) -> np.ndarray:
        """What the motors apply when asked for ``torque``."""
        return self.gain * torque if self.has_gain else torque

    def friction_torque(self, qd: np.ndarray) -> np.ndarray:
        """The viscous friction torque at joint velocities ``qd`` (Coulomb friction is the joint motors')."""
        return -self.viscous * qd

    def observe(self, q: np.ndarray, qd: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
        """The measured ``(q, qd)`` at physics step ``step``: one noise sample per step."""
        if not self.noisy:
            return q.copy(), qd.copy()
        if step != self._noise_step:
            self._noise = self._rng.standard_normal(2 * self.nq) * self._sigma
            self._noise_step = step
        return q + self._noise[: self.nq], qd + self._noise[self.nq:]
