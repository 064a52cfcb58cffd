"""Trajectory costs with exact derivatives (numpy) and a batched torch twin (sampling planners).

Shapes: a trajectory is ``X`` ``(T+1, nx)`` and ``U`` ``(T, nu)``; the per-step cost vector has
``T+1`` entries, index ``T`` being the terminal cost (a function of ``x_T`` only). The torch twin
takes batches ``X`` ``(B, T+1, nx)``, ``U`` ``(B, T, nu)`` and returns the total ``(B,)``.

:class:`ReachCost` (arm, ``x = [q; qd]``, ``u`` = torques in N·m) — exact semantics, ``t < T``::

    l_t = 0.5 w_q  |q_t - q*|^2              joint-space target (skipped when q* is None)
        + 0.5 w_ee |p(q_t) - p*|^2           end-effector point target (skipped when p* is None)
        + 0.5 sum_i r_i u_{t,i}^2            torque effort, r_i = w_u / M_ii(q_ref) if inertia-scaled
        + 0.5 w_qd |qd_t|^2                  velocity damping
        + 0.5 w_lim sum_i viol_i(q_t)^2      soft joint-limit barrier

    l_T = same with the ``*_terminal`` weights and no effort term,

with ``p(q)`` the end-effector point of :class:`~mbrl_ros.dynamics.kinematics.ArmKinematics` (world
frame, metres) and ``viol_i = max(0, q_i - (upper_i - m)) + min(0, q_i - (lower_i + m))`` for the
margin ``m``. Derivatives are exact except the end-effector Hessian, which is the Gauss–Newton
``w_ee J^T J`` (``J = dp/dq`` from Pinocchio's frame Jacobian). Scaling the torque weight by the
inverse joint inertia makes effort comparable across the shoulder and the much lighter wrist.
Targets change per plan through :meth:`ReachCost.set_targets` (no rebuilding).

:class:`QuadraticCost` is the generic ``0.5 (x - x*)^T Q (x - x*) + 0.5 u^T R u`` with terminal
``0.5 (x_T - x*)^T QT (x_T - x*)`` (toy systems, tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class CostExpansion:
    """Second-order expansion of the per-step costs along ``(X, U)``.

    Attributes:
        l: ``(T+1,)`` per-step costs; ``l[T]`` is terminal.
        lx: ``(T+1, nx)``; lu: ``(T, nu)``; lxx: ``(T+1, nx, nx)``; luu: ``(T, nu, nu)``;
        lux: ``(T, nu, nx)``.
    """

    l: np.ndarray
    lx: np.ndarray
    lu: np.ndarray
    lxx: np.ndarray
    luu: np.ndarray
    lux: np.ndarray


def _check_traj(X: np.ndarray, U: np.ndarray, nx: int, nu: int) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=float)
    U = np.asarray(U, dtype=float)
    if X.ndim != 2 or U.ndim != 2 or X.shape[1] != nx or U.shape[1] != nu or X.shape[0] != U.shape[0] + 1:
        raise ValueError(f"expected X (T+1, {nx}) and U (T, {nu}); got {X.shape}, {U.shape}")
    return X, U


def _nonneg(name: str, value: float) -> None:
    if not (np.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be finite and >= 0, got {value}")


@dataclass(frozen=True)
class CostSettings:
    """Weights and targets of :class:`ReachCost` (see the module docstring for the formula).

    Attributes:
        ee_target_m: initial end-effector target (world, m) or ``None`` for no EE term.
        joint_target_rad: joint-space target or ``None`` for no joint term.
        ee_weight, ee_weight_terminal: ``w_ee`` running / terminal (1/m²).
        joint_weight, joint_weight_terminal: ``w_q`` running / terminal (1/rad²).
        effort_weight: ``w_u`` (1/(N·m)²; per kg·m² when inertia-scaled).
        effort_inertia_scaled: divide ``w_u`` per joint by ``M_ii`` at the reference configuration.
        velocity_weight, velocity_weight_terminal: ``w_qd`` running / terminal (s²/rad²).
        limit_weight: ``w_lim`` of the soft joint-limit barrier (1/rad²), running and terminal.
        limit_margin_rad: the barrier starts this far inside each URDF limit.
    """

    ee_target_m: tuple[float, float, float] | None = None
    joint_target_rad: tuple[float, ...] | None = None
    ee_weight: float = 10.0
    ee_weight_terminal: float = 1000.0
    joint_weight: float = 0.0
    joint_weight_terminal: float = 0.0
    effort_weight: float = 1e-3
    effort_inertia_scaled: bool = True
    velocity_weight: float = 0.01
    velocity_weight_terminal: float = 10.0
    limit_weight: float = 100.0
    limit_margin_rad: float = 0.05

    def __post_init__(self) -> None:
        for name in (
            "ee_weight", "ee_weight_terminal", "joint_weight", "joint_weight_terminal", "effort_weight",
            "velocity_weight", "velocity_weight_terminal", "limit_weight", "limit_margin_rad",
        ):
            _nonneg(name, getattr(self, name))
        if self.ee_target_m is not None:
            p = np.asarray(self.ee_target_m, dtype=float)
            if p.shape != (3,) or not np.all(np.isfinite(p)):
                raise ValueError(f"ee_target_m must be 3 finite values, got {self.ee_target_m}")
        if self.joint_target_rad is not None:
            q = np.asarray(self.joint_target_rad, dtype=float)
            if q.ndim != 1 or not np.all(np.isfinite(q)):
                raise ValueError(f"joint_target_rad must be finite values, got {self.joint_target_rad}")


class ReachCost:
    """Arm reaching cost (see module docstring).

    Args:
        settings: weights and initial targets.
        kinematics: end-effector kinematics (:class:`~mbrl_ros.dynamics.kinematics.ArmKinematics`).
        position_lower_rad, position_upper_rad: joint limits ``(nq,)`` for the barrier.
        effort_weights: per-joint ``r_i`` ``(nq,)``; built from ``settings`` by :meth:`for_model`.
    """

    def __init__(self, settings: CostSettings, kinematics, position_lower_rad, position_upper_rad, effort_weights) -> None:
        self.settings = settings
        self.kin = kinematics
        nq = kinematics.nq
        self.nq = nq
        self.nx = 2 * nq
        self.nu = nq
        self.lower = np.asarray(position_lower_rad, dtype=float) + settings.limit_margin_rad
        self.upper = np.asarray(position_upper_rad, dtype=float) - settings.limit_margin_rad
        self.r = np.asarray(effort_weights, dtype=float)
        if self.lower.shape != (nq,) or self.upper.shape != (nq,) or self.r.shape != (nq,):
            raise ValueError("limits and effort weights must have one value per joint")
        if np.any(self.r < 0) or not np.all(np.isfinite(self.r)):
            raise ValueError(f"effort weights must be finite and >= 0, got {self.r}")
        self.ee_target: np.ndarray | None = None
        self.joint_target: np.ndarray | None = None
        self.set_targets(settings.ee_target_m, settings.joint_target_rad)
        self._torch: dict = {}

    @classmethod
    def for_model(cls, model, settings: CostSettings, reference_q_rad=None) -> "ReachCost":
        """Build from a :class:`~mbrl_ros.dynamics.physics.PhysicsModel` (limits, kinematics, inertia).

        ``reference_q_rad`` (default: the robot's home) is where ``M_ii`` is taken for the
        inertia-scaled effort weights.
        """
        q_ref = np.asarray(model.spec.home_positions_rad if reference_q_rad is None else reference_q_rad, dtype=float)
        r = np.full(model.nu, settings.effort_weight)
        if settings.effort_inertia_scaled:
            r = r / np.diag(model.mass_matrix(q_ref))
        return cls(settings, model.kinematics, model.position_lower_rad, model.position_upper_rad, r)

    def set_targets(self, ee_target_m=None, joint_target_rad=None) -> None:
        """Set the end-effector and/or joint target for the next plans (``None`` disables a term)."""
        if ee_target_m is not None:
            p = np.asarray(ee_target_m, dtype=float)
            if p.shape != (3,) or not np.all(np.isfinite(p)):
                raise ValueError(f"ee target must be 3 finite values, got {ee_target_m}")
            self.ee_target = p.copy()
        else:
            self.ee_target = None
        if joint_target_rad is not None:
            q = np.asarray(joint_target_rad, dtype=float)
            if q.shape != (self.nq,) or not np.all(np.isfinite(q)):
                raise ValueError(f"joint target must be {self.nq} finite values, got {joint_target_rad}")
            self.joint_target = q.copy()
        else:
            self.joint_target = None

    def set_ee_target(self, ee_target_m) -> None:
        """Change only the end-effector target (keeps the joint target)."""
        self.set_targets(ee_target_m, self.joint_target)

    def _weights(self, T: int) -> dict[str, np.ndarray]:
        s = self.settings
        def w(run, term):
            out = np.full(T + 1, run)
            out[T] = term
            return out
        return {
            "q": w(s.joint_weight, s.joint_weight_terminal) if self.joint_target is not None else np.zeros(T + 1),
            "ee": w(s.ee_weight, s.ee_weight_terminal) if self.ee_target is not None else np.zeros(T + 1),
            "qd": w(s.velocity_weight, s.velocity_weight_terminal),
            "lim": np.full(T + 1, s.limit_weight),
        }

    def _violation(self, q):
        return np.maximum(0.0, q - self.upper) + np.minimum(0.0, q - self.lower)

    def evaluate(self, X: np.ndarray, U: np.ndarray) -> np.ndarray:
        """Per-step costs ``(T+1,)``."""
        X, U = _check_traj(X, U, self.nx, self.nu)
        T = U.shape[0]
        w = self._weights(T)
        q, qd = X[:, : self.nq], X[:, self.nq :]
        l = 0.5 * w["qd"] * np.sum(qd**2, axis=1)
        l += 0.5 * w["lim"] * np.sum(self._violation(q) ** 2, axis=1)
        if self.joint_target is not None:
            l += 0.5 * w["q"] * np.sum((q - self.joint_target) ** 2, axis=1)
        if self.ee_target is not None and np.any(w["ee"] > 0):
            p = self.kin.ee_position(q)
            l += 0.5 * w["ee"] * np.sum((p - self.ee_target) ** 2, axis=1)
        l[:T] += 0.5 * np.sum(self.r * U**2, axis=1)
        return l

    def quadratize(self, X: np.ndarray, U: np.ndarray) -> CostExpansion:
        """Exact gradients and Hessians (Gauss–Newton for the end-effector term)."""
        X, U = _check_traj(X, U, self.nx, self.nu)
        T = U.shape[0]
        nq, nx, nu = self.nq, self.nx, self.nu
        w = self._weights(T)
        q, qd = X[:, :nq], X[:, nq:]
        l = self.evaluate(X, U)
        lx = np.zeros((T + 1, nx))
        lxx = np.zeros((T + 1, nx, nx))
        idx_q = np.arange(nq)
        idx_v = np.arange(nq, nx)
        lx[:, nq:] = w["qd"][:, None] * qd
        lxx[:, idx_v, idx_v] += w["qd"][:, None]
        viol = self._violation(q)
        lx[:, :nq] += w["lim"][:, None] * viol
        lxx[:, idx_q, idx_q] += w["lim"][:, None] * (viol != 0.0)
        if self.joint_target is not None:
            lx[:, :nq] += w["q"][:, None] * (q - self.joint_target)
            lxx[:, idx_q, idx_q] += w["q"][:, None]
        if self.ee_target is not None and np.any(w["ee"] > 0):
            p, J = self.kin.ee_position_jacobian(q)
            e = p - self.ee_target
            lx[:, :nq] += w["ee"][:, None] * np.einsum("tij,ti->tj", J, e)
            lxx[:, :nq, :nq] += w["ee"][:, None, None] * np.einsum("tij,tik->tjk", J, J)
        lu = self.r * U
        luu = np.zeros((T, nu, nu))
        luu[:, np.arange(nu), np.arange(nu)] = self.r
        lux = np.zeros((T, nu, nx))
        return CostExpansion(l=l, lx=lx, lu=lu, lxx=lxx, luu=luu, lux=lux)

    def _torch_consts(self, T: int, dtype, device):
        key = (T, dtype, device, None if self.ee_target is None else tuple(self.ee_target),
               None if self.joint_target is None else tuple(self.joint_target))
        cached = self._torch.get("key")
        if cached != key:
            as_t = lambda a: torch.as_tensor(np.asarray(a), dtype=dtype, device=device)  # noqa: E731
            w = self._weights(T)
            self._torch = {
                "key": key,
                "w": {k: as_t(v) for k, v in w.items()},
                "r": as_t(self.r),
                "lower": as_t(self.lower),
                "upper": as_t(self.upper),
                "ee": None if self.ee_target is None else as_t(self.ee_target),
                "qt": None if self.joint_target is None else as_t(self.joint_target),
                "use_ee": self.ee_target is not None and bool(np.any(w["ee"] > 0)),
            }
        return self._torch

    def evaluate_torch(self, X: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
        """Total cost ``(B,)`` of ``X`` ``(B, T+1, nx)``, ``U`` ``(B, T, nu)``; agrees with :meth:`evaluate`."""
        T = U.shape[-2]
        c = self._torch_consts(T, X.dtype, X.device)
        w = c["w"]
        q, qd = X[..., : self.nq], X[..., self.nq :]
        per = 0.5 * w["qd"] * (qd * qd).sum(-1)
        viol = torch.clamp(q - c["upper"], min=0.0) + torch.clamp(q - c["lower"], max=0.0)
        per = per + 0.5 * w["lim"] * (viol * viol).sum(-1)
        if c["qt"] is not None:
            dq = q - c["qt"]
            per = per + 0.5 * w["q"] * (dq * dq).sum(-1)
        if c["use_ee"]:
            e = self.kin.ee_position_torch(q) - c["ee"]
            per = per + 0.5 * w["ee"] * (e * e).sum(-1)
        total = per.sum(-1) + 0.5 * (U * U * c["r"]).sum((-1, -2))
        return total


class QuadraticCost:
    """``l_t = 0.5 (x_t - x*)^T Q (x_t - x*) + 0.5 u_t^T R u_t``, ``l_T = 0.5 (x_T - x*)^T QT (x_T - x*)``.

    ``Q``, ``QT`` ``(nx, nx)`` and ``R`` ``(nu, nu)`` symmetric; ``x_goal`` ``(nx,)`` (settable).
    """

    def __init__(self, Q, R, QT, x_goal=None) -> None:
        self.Q = np.asarray(Q, dtype=float)
        self.R = np.asarray(R, dtype=float)
        self.QT = np.asarray(QT, dtype=float)
        self.nx = self.Q.shape[0]
        self.nu = self.R.shape[0]
        if self.Q.shape != (self.nx, self.nx) or self.QT.shape != (self.nx, self.nx) or self.R.shape != (self.nu, self.nu):
            raise ValueError("Q, QT must be (nx, nx) and R (nu, nu)")
        self.x_goal = np.zeros(self.nx) if x_goal is None else np.asarray(x_goal, dtype=float).copy()

    def evaluate(self, X, U) -> np.ndarray:
        X, U = _check_traj(X, U, self.nx, self.nu)
        E = X - self.x_goal
        l = 0.5 * np.einsum("ti,ij,tj->t", E, self.Q, E)
        l[-1] = 0.5 * E[-1] @ self.QT @ E[-1]
        l[:-1] += 0.5 * np.einsum("ti,ij,tj->t", U, self.R, U)
        return l

    def quadratize(self, X, U) -> CostExpansion:
        X, U = _check_traj(X, U, self.nx, self.nu)
        T = U.shape[0]
        E = X - self.x_goal
        lxx = np.broadcast_to(self.Q, (T + 1, self.nx, self.nx)).copy()
        lxx[T] = self.QT
        lx = np.einsum("tij,tj->ti", lxx, E)
        return CostExpansion(
            l=self.evaluate(X, U), lx=lx, lu=U @ self.R.T, lxx=lxx,
            luu=np.broadcast_to(self.R, (T, self.nu, self.nu)).copy(), lux=np.zeros((T, self.nu, self.nx)),
        )

    def evaluate_torch(self, X: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
        as_t = lambda a: torch.as_tensor(a, dtype=X.dtype, device=X.device)  # noqa: E731
        E = X - as_t(self.x_goal)
        run = 0.5 * torch.einsum("bti,ij,btj->b", E[:, :-1], as_t(self.Q), E[:, :-1])
        term = 0.5 * torch.einsum("bi,ij,bj->b", E[:, -1], as_t(self.QT), E[:, -1])
        eff = 0.5 * torch.einsum("bti,ij,btj->b", U, as_t(self.R), U)
        return run + term + eff
