"""Time-varying linear-Gaussian controller ``p(u_t | x_t) = N(K_t (x_t - x̂_t) + k_t + û_t, Σ_t)``.

Shapes for ``T`` steps: ``K`` ``(T, nu, nx)``, ``k`` ``(T, nu)``, ``x_hat`` ``(T, nx)``, ``u_hat``
``(T, nu)``, ``covar`` ``(T, nu, nu)`` (torque covariance in (N·m)²). Torques are commands on top of
gravity compensation when the arm compensates gravity.

The same controller in absolute form is ``u_t = K_t x_t + k_abs_t + noise`` with
``k_abs_t = k_t + û_t - K_t x̂_t`` (:meth:`LinearGaussianPolicy.k_abs`), the form the LQR-FLM
update works in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class LinearGaussianPolicy:
    """The controller; validates shapes, symmetry and positive definiteness of ``covar``."""

    def __init__(self, K, k, x_hat, u_hat, covar) -> None:
        self.K = np.array(K, dtype=float)
        self.k = np.array(k, dtype=float)
        self.x_hat = np.array(x_hat, dtype=float)
        self.u_hat = np.array(u_hat, dtype=float)
        covar = np.array(covar, dtype=float)
        if self.K.ndim != 3:
            raise ValueError(f"K must be (T, nu, nx), got {self.K.shape}")
        T, nu, nx = self.K.shape
        for name, arr, shape in (
            ("k", self.k, (T, nu)),
            ("x_hat", self.x_hat, (T, nx)),
            ("u_hat", self.u_hat, (T, nu)),
            ("covar", covar, (T, nu, nu)),
        ):
            if arr.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
        for name, arr in (("K", self.K), ("k", self.k), ("x_hat", self.x_hat), ("u_hat", self.u_hat), ("covar", covar)):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} contains non-finite values")
        self.covar = 0.5 * (covar + np.swapaxes(covar, 1, 2))
        try:
            self.chol = np.linalg.cholesky(self.covar)
        except np.linalg.LinAlgError:
            raise ValueError("covar must be positive definite at every step") from None
        self.inv_covar = np.linalg.inv(self.covar)
        self.inv_covar = 0.5 * (self.inv_covar + np.swapaxes(self.inv_covar, 1, 2))

    @property
    def horizon_steps(self) -> int:
        return self.K.shape[0]

    @property
    def nx(self) -> int:
        return self.K.shape[2]

    @property
    def nu(self) -> int:
        return self.K.shape[1]

    def k_abs(self) -> np.ndarray:
        """Offsets of the absolute form ``u = K x + k_abs``, shape ``(T, nu)``."""
        return self.k + self.u_hat - np.einsum("tij,tj->ti", self.K, self.x_hat)

    @classmethod
    def from_absolute(cls, K, k_abs, covar, x_hat=None, u_hat=None) -> "LinearGaussianPolicy":
        """Build from ``u = K x + k_abs``; with ``x_hat``/``u_hat`` given, ``k`` is expressed about them."""
        K = np.asarray(K, dtype=float)
        T, nu, nx = K.shape
        if x_hat is None:
            x_hat = np.zeros((T, nx))
        if u_hat is None:
            u_hat = np.zeros((T, nu))
        k = np.asarray(k_abs) - np.asarray(u_hat) + np.einsum("tij,tj->ti", K, x_hat)
        return cls(K, k, x_hat, u_hat, covar)

    def mean_action(self, x: np.ndarray, t: int) -> np.ndarray:
        """Mean torque at step ``t`` for state ``x`` ``(nx,)``."""
        return self.K[t] @ (x - self.x_hat[t]) + self.k[t] + self.u_hat[t]

    def action(self, x: np.ndarray, t: int, noise: np.ndarray | None = None) -> np.ndarray:
        """Torque at step ``t``; ``noise`` ``(nu,)`` is a standard-normal draw (None: the mean)."""
        u = self.mean_action(x, t)
        if noise is not None:
            u = u + self.chol[t] @ noise
        return u

    def sampler(self, rng: np.random.Generator):
        """A controller ``(x, t) -> u`` drawing fresh standard-normal noise from ``rng`` each step."""
        return lambda x, t: self.action(x, t, rng.standard_normal(self.nu))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Named float64 arrays (``K``, ``k``, ``x_hat``, ``u_hat``, ``covar``) for serialisation."""
        return {"K": self.K.copy(), "k": self.k.copy(), "x_hat": self.x_hat.copy(), "u_hat": self.u_hat.copy(), "covar": self.covar.copy()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "LinearGaussianPolicy":
        missing = [n for n in ("K", "k", "x_hat", "u_hat", "covar") if n not in arrays]
        if missing:
            raise ValueError(f"linear-Gaussian policy arrays lack {missing}")
        return cls(arrays["K"], arrays["k"], arrays["x_hat"], arrays["u_hat"], arrays["covar"])


@dataclass(frozen=True)
class InitialControllerSettings:
    """Initial controller: a mass-matrix-scaled PD around a joint target plus scaled noise.

    Mean ``u = M(q0) (ω² (q_target - q) - 2 ζ ω qd)`` (torque on top of gravity compensation);
    noise standard deviation ``noise_scale * sqrt(M_ii(q0))`` per joint (N·m). ω = 6–10 rad/s with
    ζ = 0.9 is the usual range: it keeps the light wrist stable at a 20 Hz zero-order hold.

    Attributes:
        omega_rad_s: PD natural frequency ω.
        zeta: damping ratio ζ.
        noise_scale_rad_s2: exploration noise, as an acceleration scale (torque std / sqrt(M_ii)).
    """

    omega_rad_s: float = 8.0
    zeta: float = 0.9
    noise_scale_rad_s2: float = 1.0

    def __post_init__(self) -> None:
        if not self.omega_rad_s > 0.0:
            raise ValueError(f"omega_rad_s must be > 0, got {self.omega_rad_s}")
        if not self.zeta > 0.0:
            raise ValueError(f"zeta must be > 0, got {self.zeta}")
        if not self.noise_scale_rad_s2 > 0.0:
            raise ValueError(f"noise_scale_rad_s2 must be > 0, got {self.noise_scale_rad_s2}")


def pd_gain(mass_matrix: np.ndarray, omega_rad_s: float, zeta: float) -> np.ndarray:
    """``K = -M [ω² I, 2 ζ ω I]`` ``(nq, 2 nq)``: a PD on ``x = [q; qd]`` that gives every joint the
    same natural frequency ``ω`` and damping ratio ``ζ`` whatever its inertia."""
    M = np.asarray(mass_matrix, dtype=float)
    return np.concatenate([-omega_rad_s**2 * M, -2.0 * zeta * omega_rad_s * M], axis=1)


def initial_pd_policy(
    horizon_steps: int,
    q_target_rad: np.ndarray,
    mass_matrix: np.ndarray,
    settings: InitialControllerSettings | None = None,
    gravity_torque_nm: np.ndarray | None = None,
) -> LinearGaussianPolicy:
    """The initial linear-Gaussian controller holding/moving to ``q_target_rad`` (see the settings).

    ``gravity_torque_nm`` (e.g. ``g(q_target)``) is added as feed-forward ``û`` for an arm that does
    not compensate gravity itself; leave it ``None`` when it does (the Panda under FCI).
    """
    s = settings or InitialControllerSettings()
    q_target = np.asarray(q_target_rad, dtype=float)
    M = np.asarray(mass_matrix, dtype=float)
    nq = q_target.shape[0]
    if M.shape != (nq, nq):
        raise ValueError(f"mass_matrix must be ({nq}, {nq}), got {M.shape}")
    if horizon_steps < 1:
        raise ValueError(f"horizon_steps must be >= 1, got {horizon_steps}")
    gains = pd_gain(M, s.omega_rad_s, s.zeta)
    T = horizon_steps
    K = np.broadcast_to(gains, (T, nq, 2 * nq))
    x_hat = np.broadcast_to(np.concatenate([q_target, np.zeros(nq)]), (T, 2 * nq))
    covar = np.broadcast_to(np.diag(s.noise_scale_rad_s2**2 * np.diag(M)), (T, nq, nq))
    u_hat = np.zeros((T, nq))
    if gravity_torque_nm is not None:
        g = np.asarray(gravity_torque_nm, dtype=float)
        if g.shape != (nq,) or not np.all(np.isfinite(g)):
            raise ValueError(f"gravity_torque_nm must be {nq} finite values, got {g.tolist()}")
        u_hat[:] = g
    return LinearGaussianPolicy(K, np.zeros((T, nq)), x_hat, u_hat, covar)
