"""Known-physics dynamics of a registered arm from its URDF (Pinocchio), implementing the protocol.

State ``x = [q; qd]`` (``nx = 2 nq``), action ``u`` = joint torques (N·m). The joint acceleration is
Pinocchio's articulated-body algorithm (ABA)

    qdd = ABA(q, qd, tau),  tau = u - d qd            (gravity-compensated arm: gravity removed)
    tau = u - d qd  with gravity acting              (plain torque interface)

where ``d`` is an optional viscous joint damping. When the arm compensates gravity (the Panda /
Franka FCI default), ``u`` is applied on top of ``g(q)``, which is the same as running ABA with the
gravity vector set to zero. One protocol step advances ``dt_s`` by ``substeps`` semi-implicit Euler
steps of ``h = dt_s / substeps`` with ``u`` held (zero-order hold):

    qd' = qd + h qdd(q, qd, u),  q' = q + h qd'.

``linearize`` chains Pinocchio's analytic ABA derivatives (``computeABADerivatives``) through the
substeps. Torques are not clipped here (planners clamp to the effort limits themselves). Held
joints (the Panda fingers) are locked at their fixed positions (see :mod:`.kinematics`).

``step_torch`` evaluates the batch with ``pinocchio.abaInParallel`` (float64, CPU threads) and
returns a tensor of the input's dtype and device; it is exact, not differentiable by autograd.
"""

from __future__ import annotations

import numpy as np
import pinocchio as pin
import torch

from .kinematics import ArmKinematics, ArmModel, load_arm_model

#: Default Euler substep length: ``substeps = ceil(dt_s / DEFAULT_SUBSTEP_S)`` (see docs/control.md
#: for the measurement against the 1 kHz PyBullet sim that chose it).
DEFAULT_SUBSTEP_S = 0.01


class PhysicsModel:
    """Rigid-body dynamics of an arm at the control period ``dt_s``.

    Args:
        arm: the reduced Pinocchio model (see :func:`load_arm_model`).
        dt_s: control period (> 0).
        gravity_compensated: whether ``u`` is applied on top of the gravity torque.
        joint_damping_nms_per_rad: viscous damping ``d >= 0`` (N·m·s/rad) on every joint.
        substeps: integer number of Euler substeps per control period (>= 1).
        num_threads: OpenMP threads of ``abaInParallel`` for batches of at least
            ``parallel_min_batch`` (256). Default 1: on a shared 2-core machine a parallel region
            stalls whenever another process holds a core (measured 10x slower closed loops).

    Attributes:
        nx, nu, dt_s: protocol dimensions and period.
        kinematics: :class:`ArmKinematics` of the same model.
        effort_limit_nm, position_lower_rad, position_upper_rad: limits from the URDF.
    """

    def __init__(
        self,
        arm: ArmModel,
        dt_s: float = 0.05,
        gravity_compensated: bool = True,
        joint_damping_nms_per_rad: float = 0.0,
        substeps: int = 5,
        num_threads: int | None = None,
    ) -> None:
        if not (np.isfinite(dt_s) and dt_s > 0.0):
            raise ValueError(f"dt_s must be > 0, got {dt_s}")
        if int(substeps) != substeps or substeps < 1:
            raise ValueError(f"substeps must be an integer >= 1, got {substeps}")
        if not (np.isfinite(joint_damping_nms_per_rad) and joint_damping_nms_per_rad >= 0.0):
            raise ValueError(f"joint_damping_nms_per_rad must be >= 0, got {joint_damping_nms_per_rad}")
        self.arm = arm
        self.spec = arm.spec
        self.model = arm.model.copy() if hasattr(arm.model, "copy") else pin.Model(arm.model)
        self.gravity_compensated = bool(gravity_compensated)
        if self.gravity_compensated:
            self.model.gravity = pin.Motion.Zero()
        self.data = self.model.createData()
        self.nq = self.model.nq
        self.nx = 2 * self.nq
        self.nu = self.nq
        self.dt_s = float(dt_s)
        self.substeps = int(substeps)
        self.h = self.dt_s / self.substeps
        self.damping = float(joint_damping_nms_per_rad)
        self.num_threads = int(num_threads or 1)
        self._pool = pin.ModelPool(self.model, self.num_threads)
        #: Smaller batches run on one thread: waking OpenMP workers costs more than it saves there.
        self.parallel_min_batch = 256
        self.kinematics = ArmKinematics(arm)
        self.effort_limit_nm = np.asarray(arm.model.effortLimit, dtype=float).copy()
        self.position_lower_rad = np.asarray(arm.model.lowerPositionLimit, dtype=float).copy()
        self.position_upper_rad = np.asarray(arm.model.upperPositionLimit, dtype=float).copy()
        self._gravity_model = arm.model
        self._gravity_data = arm.model.createData()

    @classmethod
    def from_robot(
        cls,
        name: str = "panda",
        dt_s: float = 0.05,
        gravity_compensated: bool | None = None,
        joint_damping_nms_per_rad: float = 0.0,
        substeps: int | None = None,
        num_threads: int | None = None,
    ) -> "PhysicsModel":
        """Model of a registered robot; ``gravity_compensated=None`` takes the robot's default.

        ``substeps=None`` picks ``ceil(dt_s / 0.01)`` (10 ms Euler steps, see docs/control.md).
        """
        arm = load_arm_model(name)
        if gravity_compensated is None:
            gravity_compensated = arm.spec.emulates_gravity_compensation
        if substeps is None:
            substeps = max(1, int(np.ceil(dt_s / DEFAULT_SUBSTEP_S - 1e-9)))
        return cls(arm, dt_s, gravity_compensated, joint_damping_nms_per_rad, substeps, num_threads)

    # ---- helpers -------------------------------------------------------------------------------
    def mass_matrix(self, q: np.ndarray) -> np.ndarray:
        """Joint-space inertia ``M(q)`` ``(nq, nq)``."""
        M = pin.crba(self.model, self.data, np.asarray(q, dtype=float))
        return np.triu(M) + np.triu(M, 1).T

    def gravity_torque(self, q: np.ndarray) -> np.ndarray:
        """Gravity torque ``g(q)`` of the arm under real gravity (whatever the compensation flag)."""
        return pin.computeGeneralizedGravity(self._gravity_model, self._gravity_data, np.asarray(q, dtype=float))

    def _accel_batch(self, q: np.ndarray, v: np.ndarray, tau: np.ndarray) -> np.ndarray:
        """ABA for a batch ``(B, nq)`` → ``(B, nq)``."""
        B = q.shape[0]
        if B == 1:
            return pin.aba(self.model, self.data, q[0], v[0], tau[0])[None, :].copy()
        out = np.empty((self.nq, B), order="F")
        threads = self.num_threads if B >= self.parallel_min_batch else 1
        pin.abaInParallel(threads, self._pool, np.asfortranarray(q.T), np.asfortranarray(v.T),
                          np.asfortranarray(tau.T), out)
        return out.T

    def _step_flat(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        nq, h = self.nq, self.h
        q = np.array(x[:, :nq], dtype=float)
        v = np.array(x[:, nq:], dtype=float)
        u = np.asarray(u, dtype=float)
        for _ in range(self.substeps):
            tau = u - self.damping * v if self.damping > 0.0 else u
            a = self._accel_batch(q, v, tau)
            v += h * a
            q += h * v
        return np.concatenate([q, v], axis=1)

    def _broadcast(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
        x = np.asarray(x, dtype=float)
        u = np.asarray(u, dtype=float)
        if x.shape[-1] != self.nx or u.shape[-1] != self.nu:
            raise ValueError(f"x must be (..., {self.nx}) and u (..., {self.nu}); got {x.shape}, {u.shape}")
        batch = np.broadcast_shapes(x.shape[:-1], u.shape[:-1])
        x = np.broadcast_to(x, batch + (self.nx,)).reshape(-1, self.nx)
        u = np.broadcast_to(u, batch + (self.nu,)).reshape(-1, self.nu)
        return x, u, batch

    # ---- protocol ------------------------------------------------------------------------------
    def step(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Next state ``(..., nx)`` from ``x`` ``(..., nx)`` and ``u`` ``(..., nu)`` (numpy, float64)."""
        xf, uf, batch = self._broadcast(x, u)
        return self._step_flat(xf, uf).reshape(batch + (self.nx,))

    def step_torch(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Batched next state ``(B, nx)`` from ``(B, nx)``, ``(B, nu)``; input dtype and device."""
        xn = x.detach().to("cpu", torch.float64).numpy()
        un = u.detach().to("cpu", torch.float64).numpy()
        out = self.step(xn, un)
        return torch.from_numpy(out).to(dtype=x.dtype, device=x.device)

    def linearize(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``A = df/dx`` ``(..., nx, nx)`` and ``B = df/du`` ``(..., nx, nu)`` (analytic ABA derivatives)."""
        xf, uf, batch = self._broadcast(x, u)
        A = np.empty((xf.shape[0], self.nx, self.nx))
        Bm = np.empty((xf.shape[0], self.nx, self.nu))
        for i in range(xf.shape[0]):
            A[i], Bm[i] = self._linearize_one(xf[i], uf[i])
        return A.reshape(batch + (self.nx, self.nx)), Bm.reshape(batch + (self.nx, self.nu))

    def step_and_linearize(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Next state ``(nx,)`` and its Jacobians ``A``, ``B`` at one ``(x, u)``, in one pass."""
        x = np.asarray(x, dtype=float)
        u = np.asarray(u, dtype=float)
        if x.shape != (self.nx,) or u.shape != (self.nu,):
            raise ValueError(f"x must be ({self.nx},) and u ({self.nu},); got {x.shape}, {u.shape}")
        A, Bm, x_next = self._linearize_one(x, u, return_next=True)
        return x_next, A, Bm

    def _linearize_one(self, x: np.ndarray, u: np.ndarray, return_next: bool = False):
        nq, nx, h = self.nq, self.nx, self.h
        q = x[:nq].copy()
        v = x[nq:].copy()
        A = np.eye(nx)
        Bm = np.zeros((nx, self.nu))
        eye = np.eye(nq)
        step_jac = np.zeros((nx, nx))
        step_u = np.zeros((nx, nq))
        for _ in range(self.substeps):
            tau = u - self.damping * v
            pin.computeABADerivatives(self.model, self.data, q, v, tau)
            a = self.data.ddq.copy()
            Minv = np.triu(self.data.Minv) + np.triu(self.data.Minv, 1).T
            da_dq = self.data.ddq_dq
            da_dv = self.data.ddq_dv - self.damping * Minv
            # v' = v + h a, q' = q + h v'
            dv_dq = h * da_dq
            dv_dv = eye + h * da_dv
            dv_du = h * Minv
            step_jac[nq:, :nq] = dv_dq
            step_jac[nq:, nq:] = dv_dv
            step_jac[:nq, :nq] = eye + h * dv_dq
            step_jac[:nq, nq:] = h * dv_dv
            step_u[nq:] = dv_du
            step_u[:nq] = h * dv_du
            A = step_jac @ A
            Bm = step_jac @ Bm + step_u
            v = v + h * a
            q = q + h * v
        if return_next:
            return A, Bm, np.concatenate([q, v])
        return A, Bm
