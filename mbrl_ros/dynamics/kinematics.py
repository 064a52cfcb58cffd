"""Pinocchio model of a registered arm and its end-effector kinematics (numpy and batched torch).

:func:`load_arm_model` builds the Pinocchio model from the same URDF the simulator loads, reduced to
the controlled arm joints (held joints such as the Panda's fingers are locked at their fixed
positions with ``buildReducedModel``). Joint order equals ``RobotSpec.joint_names``.

:class:`ArmKinematics` gives the world position of the end-effector frame (``RobotSpec.ee_link``, the
point the simulator reports with ``SimulatedArm.ee_position``) and its translational Jacobian
``dp/dq`` (``(3, nq)``, Pinocchio's ``LOCAL_WORLD_ALIGNED`` frame Jacobian), plus a batched torch
forward kinematics over any leading batch shape that agrees with Pinocchio (used by sampling
planners' costs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pinocchio as pin
import torch

from mbrl_ros.sim.robots import RobotSpec, robot_spec

_AXES = {"JointModelRX": (1.0, 0.0, 0.0), "JointModelRY": (0.0, 1.0, 0.0), "JointModelRZ": (0.0, 0.0, 1.0)}


@dataclass(frozen=True)
class ArmModel:
    """A Pinocchio model of the controlled arm joints.

    Attributes:
        spec: the robot description.
        model: Pinocchio model with ``nq == nv == len(spec.joint_names)`` in command order.
        ee_frame_id: Pinocchio frame id of ``spec.ee_link``.
    """

    spec: RobotSpec
    model: pin.Model
    ee_frame_id: int


def load_arm_model(name: str = "panda") -> ArmModel:
    """Build the reduced Pinocchio model of a registered robot (held joints locked)."""
    spec = robot_spec(name)
    full = pin.buildModelFromUrdf(spec.urdf_path)
    q_ref = pin.neutral(full)
    held = dict(spec.held_joints)
    lock_ids = []
    for jid in range(1, full.njoints):
        jname = full.names[jid]
        if jname in spec.joint_names:
            continue
        lock_ids.append(jid)
        if jname in held:
            q_ref[full.joints[jid].idx_q] = held[jname]
    model = pin.buildReducedModel(full, lock_ids, q_ref) if lock_ids else full
    names = tuple(model.names[1:])
    if names != spec.joint_names:
        raise ValueError(f"{spec.urdf_path}: reduced joint order {names} != {spec.joint_names}")
    if model.nq != model.nv:
        raise ValueError(f"{spec.name}: only revolute/prismatic 1-dof joints are supported (nq={model.nq}, nv={model.nv})")
    if not model.existFrame(spec.ee_link):
        raise ValueError(f"{spec.urdf_path} has no frame {spec.ee_link}")
    return ArmModel(spec=spec, model=model, ee_frame_id=model.getFrameId(spec.ee_link))


class ArmKinematics:
    """End-effector point kinematics of an arm (numpy via Pinocchio, batched torch twin).

    ``ee_position(q)`` ``(..., nq) -> (..., 3)`` and ``ee_jacobian(q)`` ``(..., nq) -> (..., 3, nq)``
    call Pinocchio (one call per configuration); ``ee_position_torch(q)`` evaluates the same chain
    in torch for any batch shape, dtype and device.
    """

    def __init__(self, arm: ArmModel) -> None:
        self.arm = arm
        self.model = arm.model
        self.data = self.model.createData()
        self.nq = self.model.nq
        self.frame_id = arm.ee_frame_id
        # Serial chain description for the torch twin: per joint the placement in its parent and
        # the rotation axis, then the end-effector frame placement in its parent joint.
        parents = [self.model.parents[j] for j in range(1, self.model.njoints)]
        if parents != list(range(self.model.njoints - 1)):
            raise ValueError("torch kinematics needs a serial chain")
        rot, trans, axes = [], [], []
        for j in range(1, self.model.njoints):
            jm = self.model.joints[j]
            kind = jm.shortname()
            if kind in _AXES:
                axis = np.array(_AXES[kind])
            elif kind == "JointModelRevoluteUnaligned":
                axis = np.asarray(jm.extract().axis, dtype=float)
            else:
                raise ValueError(f"torch kinematics supports revolute joints only, got {kind}")
            placement = self.model.jointPlacements[j]
            rot.append(placement.rotation.copy())
            trans.append(placement.translation.copy())
            axes.append(axis / np.linalg.norm(axis))
        frame = self.model.frames[self.frame_id]
        chain_end = frame.parentJoint
        if chain_end != self.model.njoints - 1:
            raise ValueError("torch kinematics needs the end-effector frame on the last joint")
        self._rot = np.stack(rot)
        self._trans = np.stack(trans)
        self._axes = np.stack(axes)
        self._ee_offset = frame.placement.translation.copy()
        self._ee_rot = frame.placement.rotation.copy()
        self._torch_cache: dict[tuple[torch.dtype, torch.device], tuple[torch.Tensor, ...]] = {}

    # ---- numpy (Pinocchio) -------------------------------------------------------------------
    def ee_position(self, q: np.ndarray) -> np.ndarray:
        """World position of the end-effector point, ``(..., nq) -> (..., 3)``."""
        q = np.asarray(q, dtype=float)
        flat = q.reshape(-1, self.nq)
        out = np.empty((flat.shape[0], 3))
        for i, qi in enumerate(flat):
            pin.forwardKinematics(self.model, self.data, qi)
            out[i] = pin.updateFramePlacement(self.model, self.data, self.frame_id).translation
        return out.reshape(q.shape[:-1] + (3,))

    def ee_position_jacobian(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Position ``(..., 3)`` and translational Jacobian ``dp/dq`` ``(..., 3, nq)``."""
        q = np.asarray(q, dtype=float)
        flat = q.reshape(-1, self.nq)
        pos = np.empty((flat.shape[0], 3))
        jac = np.empty((flat.shape[0], 3, self.nq))
        for i, qi in enumerate(flat):
            pin.computeJointJacobians(self.model, self.data, qi)
            pos[i] = pin.updateFramePlacement(self.model, self.data, self.frame_id).translation
            jac[i] = pin.getFrameJacobian(self.model, self.data, self.frame_id, pin.LOCAL_WORLD_ALIGNED)[:3]
        return pos.reshape(q.shape[:-1] + (3,)), jac.reshape(q.shape[:-1] + (3, self.nq))

    def ee_jacobian(self, q: np.ndarray) -> np.ndarray:
        """Translational Jacobian ``dp/dq`` of the end-effector point, ``(..., nq) -> (..., 3, nq)``."""
        return self.ee_position_jacobian(q)[1]

    # ---- torch twin ----------------------------------------------------------------------------
    def _consts(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
        key = (dtype, device)
        if key not in self._torch_cache:
            as_t = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
            self._torch_cache[key] = (as_t(self._rot), as_t(self._trans), as_t(self._axes), as_t(self._ee_offset))
        return self._torch_cache[key]

    def ee_position_torch(self, q: torch.Tensor) -> torch.Tensor:
        """Batched forward kinematics in torch, ``(..., nq) -> (..., 3)`` (agrees with Pinocchio).

        Rotations are kept as three column tensors ``(3, n)`` and constant placements are applied
        term by term, skipping zero entries (URDF placements are mostly axis permutations), which
        makes this several times faster than batched 3×3 matrix products on a CPU.
        """
        batch = q.shape[:-1]
        # Work on (3, n) / (nq, n) layouts so every elementwise op runs over contiguous rows.
        qt = q.reshape(-1, self.nq).t().contiguous()
        n = qt.shape[1]
        c, s = torch.cos(qt), torch.sin(qt)
        cols = None  # columns of R_{j-1}, each (3, n)
        p = None
        for j in range(self.nq):
            rot, trans = self._rot[j], self._trans[j]
            if cols is None:
                as_t = lambda v: torch.as_tensor(v, dtype=q.dtype, device=q.device)[:, None].expand(3, n)  # noqa: E731
                P = [as_t(rot[:, k]) for k in range(3)]
                p = as_t(trans)
            else:
                P = [_combine(cols, rot[:, k]) for k in range(3)]
                p = p + _combine(cols, trans)
            cols = _rotate_columns(P, self._axes[j], c[j], s[j])
        p = p + _combine(cols, self._ee_offset)
        return p.t().reshape(batch + (3,))


def _combine(cols: list[torch.Tensor], coeffs: np.ndarray) -> torch.Tensor:
    """``sum_m cols[m] * coeffs[m]`` skipping zeros and avoiding multiplications by ±1."""
    out = None
    for m in range(3):
        a = float(coeffs[m])
        if abs(a) < 1e-12:
            continue
        if abs(a - 1.0) < 1e-12:
            term = cols[m]
        elif abs(a + 1.0) < 1e-12:
            term = -cols[m]
        else:
            term = cols[m] * a
        out = term if out is None else out + term
    if out is None:
        out = torch.zeros_like(cols[0])
    return out


def _rotate_columns(P: list[torch.Tensor], axis: np.ndarray, c: torch.Tensor, s: torch.Tensor) -> list[torch.Tensor]:
    """Columns of ``P @ Rot(axis, angle)`` given the columns of ``P`` ``(3, n)`` and ``cos``, ``sin`` ``(n,)``."""
    x, y, z = P
    a = axis.tolist()
    if a == [0.0, 0.0, 1.0]:
        return [c * x + s * y, c * y - s * x, z]
    if a == [1.0, 0.0, 0.0]:
        return [x, c * y + s * z, c * z - s * y]
    if a == [0.0, 1.0, 0.0]:
        return [c * x - s * z, y, s * x + c * z]
    # Rodrigues: Rot = c I + s [a]x + (1 - c) a a^T, column k of P @ Rot = sum_m P_m Rot[m, k].
    skew = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    outer = np.outer(a, a)
    out = []
    for k in range(3):
        col = None
        for m in range(3):
            coef = c * (1.0 if m == k else 0.0) + s * skew[m, k] + (1.0 - c) * outer[m, k]
            term = P[m] * coef
            col = term if col is None else col + term
        out.append(col)
    return out


def reachable_goals(kinematics: ArmKinematics, q_center_rad, n: int, seed: int, spread_rad: float = 0.5,
                    avoid_m=(), min_separation_m: float = 0.1, from_center_m: tuple[float, float] = (0.0, np.inf),
                    limit_margin_rad: float = 0.0) -> np.ndarray:
    """``n`` seeded end-effector goals ``(n, 3)`` the arm can reach: the end-effector positions of
    joint configurations drawn uniformly within ``spread_rad`` of ``q_center_rad`` (and
    ``limit_margin_rad`` inside the joint limits), each at least ``min_separation_m`` from the points
    in ``avoid_m`` (e.g. a goal trials trained on) and from each other, and ``from_center_m``
    (min, max) from where ``q_center_rad`` puts the end effector."""
    rng = np.random.default_rng(seed)
    q_center = np.asarray(q_center_rad, dtype=float)
    lower = kinematics.model.lowerPositionLimit + limit_margin_rad
    upper = kinematics.model.upperPositionLimit - limit_margin_rad
    center = kinematics.ee_position(q_center)
    taken = [np.asarray(p, dtype=float) for p in avoid_m]
    goals: list[np.ndarray] = []
    for _ in range(1000 * n):
        q = np.clip(q_center + rng.uniform(-spread_rad, spread_rad, q_center.shape), lower, upper)
        p = kinematics.ee_position(q)
        if not from_center_m[0] <= np.linalg.norm(p - center) <= from_center_m[1]:
            continue
        if all(np.linalg.norm(p - other) >= min_separation_m for other in taken + goals):
            goals.append(p)
            if len(goals) == n:
                return np.stack(goals)
    raise ValueError(f"found {len(goals)} of {n} goals {min_separation_m} m apart within {spread_rad} rad of {q_center.tolist()}")
