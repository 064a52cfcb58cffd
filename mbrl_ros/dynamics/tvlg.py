"""Time-varying linear-Gaussian (TVLG) dynamics fitted by Bayesian linear regression.

For every step ``t``: ``p(x_{t+1} | x_t, u_t) = N(Fm_t [x_t; u_t] + fv_t, dyn_covar_t)``.

Shapes: ``Fm`` ``(T, nx, nx + nu)``, ``fv`` ``(T, nx)``, ``dyn_covar`` ``(T, nx, nx)``; the initial
state distribution ``x0_mean`` ``(nx,)``, ``x0_covar`` ``(nx, nx)``.

Fit: the joint Gaussian over ``y = [x_t; u_t; x_{t+1}]`` (dimension ``D = 2 nx + nu``) is estimated
from the ``N`` trials' samples at ``t`` under a normal-inverse-Wishart prior with mean ``mu0``,
scale ``Phi`` and pseudo-counts ``m`` (mean) and ``n0`` (covariance): the posterior covariance is

    Σ = (N S + Phi + N m / (N + m) (ȳ - mu0)(ȳ - mu0)^T) / (N + n0)

with ``S`` the empirical covariance and ``ȳ`` the sample mean. Conditioning ``x_{t+1}`` on
``[x_t; u_t]`` gives ``Fm_t = Σ_{x' z} Σ_{zz}^{-1}``, ``fv_t = ȳ_{x'} - Fm_t ȳ_z`` and
``dyn_covar_t = Σ_{x'x'} - Fm_t Σ_{zz} Fm_t^T``.

Priors (objects with ``update(episodes)`` and ``moments(t, points) -> (mu0, Phi, m, n0)``):
:class:`GMMPrior` (mixture over pooled transitions), :class:`GlobalModelPrior` (any dynamics model
of the shared protocol linearised at the step's sample mean) and :class:`NoPrior` (ridge only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mbrl_ros.data.episodes import Episodes
from mbrl_ros.dynamics.gmm import GaussianMixture, GMMSettings


@dataclass
class TVLGDynamics:
    """A fitted time-varying linear-Gaussian model (see the module docstring for shapes)."""

    Fm: np.ndarray
    fv: np.ndarray
    dyn_covar: np.ndarray
    x0_mean: np.ndarray
    x0_covar: np.ndarray
    dt_s: float = float("nan")

    def __post_init__(self) -> None:
        T, nx, nz = self.Fm.shape
        if self.fv.shape != (T, nx) or self.dyn_covar.shape != (T, nx, nx):
            raise ValueError(f"inconsistent TVLG shapes: Fm {self.Fm.shape}, fv {self.fv.shape}, dyn_covar {self.dyn_covar.shape}")
        if self.x0_mean.shape != (nx,) or self.x0_covar.shape != (nx, nx):
            raise ValueError(f"x0_mean/x0_covar must be ({nx},)/({nx}, {nx}), got {self.x0_mean.shape}/{self.x0_covar.shape}")

    @property
    def horizon_steps(self) -> int:
        return self.Fm.shape[0]

    @property
    def nx(self) -> int:
        return self.Fm.shape[1]

    @property
    def nu(self) -> int:
        return self.Fm.shape[2] - self.Fm.shape[1]

    def step(self, t: int, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Mean next state at step ``t``; ``x`` ``(..., nx)``, ``u`` ``(..., nu)``."""
        z = np.concatenate([x, u], axis=-1)
        return z @ self.Fm[t].T + self.fv[t]

    def linearize(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """``(A_t, B_t)`` of step ``t``."""
        return self.Fm[t, :, : self.nx].copy(), self.Fm[t, :, self.nx :].copy()


class NoPrior:
    """No prior: plain regression, regularised only by the fit's ridge."""

    def update(self, episodes: Episodes) -> None:  # noqa: D401 - nothing to learn
        return None

    def moments(self, t: int, points: np.ndarray):
        d = points.shape[1]
        return np.zeros(d), np.zeros((d, d)), 0.0, 0.0


@dataclass(frozen=True)
class GMMPriorSettings:
    """GMM prior settings (GPS defaults).

    Attributes:
        max_clusters: upper bound on ``K``.
        min_samples_per_cluster: ``K = max(2, min(max_clusters, n_points / min_samples_per_cluster))``.
        max_trials: how many most recent trials the mixture is fitted on.
        strength: scales the prior pseudo-counts ``m`` and ``n0``.
        ridge: EM covariance ridge.
        max_em_iterations: EM iteration cap.
    """

    max_clusters: int = 20
    min_samples_per_cluster: int = 40
    max_trials: int = 20
    strength: float = 1.0
    ridge: float = 1e-6
    max_em_iterations: int = 100

    def __post_init__(self) -> None:
        if self.max_clusters < 1 or self.min_samples_per_cluster < 1 or self.max_trials < 1:
            raise ValueError("max_clusters, min_samples_per_cluster and max_trials must be >= 1")
        if not self.strength > 0.0:
            raise ValueError(f"strength must be > 0, got {self.strength}")
        if not self.ridge >= 0.0:
            raise ValueError(f"ridge must be >= 0, got {self.ridge}")


class GMMPrior:
    """NIW prior from a Gaussian mixture over pooled ``[x_t; u_t; x_{t+1}]`` of recent trials.

    ``update`` appends trials, keeps the last ``max_trials`` and refits the mixture, warm-started
    from the previous fit when the cluster count is unchanged.
    """

    def __init__(self, settings: GMMPriorSettings | None = None, seed: int = 0) -> None:
        self.settings = settings or GMMPriorSettings()
        self.gmm = GaussianMixture(GMMSettings(max_iterations=self.settings.max_em_iterations, ridge=self.settings.ridge), seed)
        self._x: np.ndarray | None = None
        self._u: np.ndarray | None = None
        self.last_fit_time_s = 0.0

    @property
    def n_trials(self) -> int:
        return 0 if self._x is None else self._x.shape[0]

    def update(self, episodes: Episodes) -> None:
        s = self.settings
        if self._x is None or self._x.shape[1:] != episodes.x.shape[1:]:
            self._x, self._u = episodes.x.copy(), episodes.u.copy()
        else:
            self._x = np.concatenate([self._x, episodes.x])[-s.max_trials :]
            self._u = np.concatenate([self._u, episodes.u])[-s.max_trials :]
        n, T = self._u.shape[:2]
        data = np.concatenate([self._x[:, :-1], self._u, self._x[:, 1:]], axis=2).reshape(n * T, -1)
        k = int(max(2, min(s.max_clusters, (n * T) // s.min_samples_per_cluster)))
        start = time.perf_counter()
        self.gmm.fit(data, k, warm_start=True)
        self.last_fit_time_s = time.perf_counter() - start

    def moments(self, t: int, points: np.ndarray):
        if not self.gmm.fitted:
            raise ValueError("GMMPrior.update must be called with trials before fitting")
        mu0, phi = self.gmm.prior_moments(points)
        # Pseudo-counts as in GPS: m = n0 = 1 scaled by the strength (Phi is a covariance times m).
        m = n0 = self.settings.strength
        return mu0, phi * m, m, n0


class GlobalModelPrior:
    """NIW prior from a global dynamics model linearised at each step's sample mean.

    ``model`` honours the shared protocol (``step`` and ``linearize``). The prior joint covariance
    is the empirical covariance of ``[x; u]`` plus ``input_var`` × identity, pushed through the
    linearisation, plus
    ``noise_covar`` (default: the model's ``predict_variance`` if it has one, else
    ``noise_var`` × identity).
    """

    def __init__(self, model, strength: float = 1.0, noise_var: float = 1e-4, input_var: float = 1e-2) -> None:
        if not strength > 0.0 or not noise_var > 0.0 or not input_var > 0.0:
            raise ValueError(f"strength, noise_var and input_var must be > 0, got {strength}, {noise_var}, {input_var}")
        self.model = model
        self.strength = float(strength)
        self.noise_var = float(noise_var)
        self.input_var = float(input_var)

    def update(self, episodes: Episodes) -> None:
        return None

    def moments(self, t: int, points: np.ndarray):
        nx, nu = self.model.nx, self.model.nu
        z = points[:, : nx + nu]
        zbar = z.mean(axis=0)
        szz = np.cov(z.T, bias=True) if z.shape[0] > 1 else np.zeros((nx + nu, nx + nu))
        # A full-rank input spread so the linearisation informs every direction, also the ones the
        # few trials did not excite.
        szz = szz + self.input_var * np.eye(nx + nu)
        A, B = self.model.linearize(zbar[:nx], zbar[nx:])
        G = np.concatenate([np.asarray(A), np.asarray(B)], axis=1)
        xn = np.asarray(self.model.step(zbar[:nx], zbar[nx:]), dtype=float)
        var = getattr(self.model, "predict_variance", None)
        if var is not None:
            noise = np.diag(np.asarray(var(zbar[:nx], zbar[nx:]), dtype=float).reshape(nx) + self.noise_var)
        else:
            noise = self.noise_var * np.eye(nx)
        mu0 = np.concatenate([zbar, xn])
        top = np.concatenate([szz, szz @ G.T], axis=1)
        bottom = np.concatenate([G @ szz, G @ szz @ G.T + noise], axis=1)
        sigma = np.concatenate([top, bottom], axis=0)
        m = n0 = self.strength
        return mu0, sigma * n0, m, n0


@dataclass(frozen=True)
class TVLGFitSettings:
    """Fit settings.

    Attributes:
        ridge: added to the ``[x; u]`` block of the posterior covariance before conditioning
            (GPS uses 1e-6). With ``NoPrior`` and ``ridge = 0`` fewer than ``nx + nu + 1`` trials
            is singular and the fit raises ``numpy.linalg.LinAlgError``.
        x0_var_floor: lower bound on the diagonal of the initial-state covariance.
        unbiased_covariance: when the effective sample count ``N + n0`` is at least
            ``2 (nx + nu + 1)``, scale ``dyn_covar`` by ``(N + n0) / (N + n0 - nx - nu - 1)`` (the
            degrees-of-freedom correction of a regression residual; at most 2). With fewer samples
            the residual covariance is left as the prior-weighted estimate (GPS behaviour).
    """

    ridge: float = 1e-6
    x0_var_floor: float = 1e-6
    unbiased_covariance: bool = True

    def __post_init__(self) -> None:
        if not self.ridge >= 0.0 or not self.x0_var_floor >= 0.0:
            raise ValueError(f"ridge and x0_var_floor must be >= 0, got {self.ridge}, {self.x0_var_floor}")


def condition_joint_gaussian(points: np.ndarray, nz: int, mu0, phi, m, n0, ridge: float, weights=None,
                             unbiased_covariance: bool = False):
    """Posterior joint covariance under the NIW prior, conditioned on the first ``nz`` dims.

    ``points`` ``(N, D)`` with ``D = nz + nx``. Returns ``(Fm (nx, nz), fv (nx,), covar (nx, nx))``.
    Raises ``numpy.linalg.LinAlgError`` if the ``[x; u]`` block is singular.
    """
    n, d = points.shape
    w = np.full(n, 1.0 / n) if weights is None else np.asarray(weights) / np.sum(weights)
    mean = w @ points
    diff = points - mean
    emp = (w[:, None] * diff).T @ diff
    emp = 0.5 * (emp + emp.T)
    dm = mean - mu0
    sigma = (n * emp + phi + (n * m) / (n + m) * np.outer(dm, dm)) / (n + n0)
    sigma = 0.5 * (sigma + sigma.T)
    szz = sigma[:nz, :nz] + ridge * np.eye(nz)
    cond = np.linalg.cond(szz)
    if not np.isfinite(cond) or cond > 1e14:
        raise np.linalg.LinAlgError(
            f"the [x; u] covariance is singular (condition number {cond:.3g}) with {n} samples of dimension {nz}: "
            "use a prior, more trials, or a ridge"
        )
    Fm = np.linalg.solve(szz, sigma[:nz, nz:]).T
    fv = mean[nz:] - Fm @ mean[:nz]
    covar = sigma[nz:, nz:] - Fm @ szz @ Fm.T
    covar = 0.5 * (covar + covar.T)
    if unbiased_covariance and n + n0 >= 2 * (nz + 1):
        covar *= (n + n0) / (n + n0 - nz - 1)
    return Fm, fv, covar


def fit_tvlg(episodes: Episodes, prior=None, settings: TVLGFitSettings | None = None) -> TVLGDynamics:
    """Fit :class:`TVLGDynamics` to the ``N`` trials of ``episodes`` (``prior=None`` means no prior).

    The prior must already be updated with the trials it should know about (``prior.update``).
    """
    settings = settings or TVLGFitSettings()
    prior = prior or NoPrior()
    x, u = episodes.x, episodes.u
    N, T, nu = u.shape
    nx = x.shape[2]
    nz = nx + nu
    Fm = np.zeros((T, nx, nz))
    fv = np.zeros((T, nx))
    dyn = np.zeros((T, nx, nx))
    for t in range(T):
        pts = np.concatenate([x[:, t], u[:, t], x[:, t + 1]], axis=1)
        mu0, phi, m, n0 = prior.moments(t, pts)
        try:
            Fm[t], fv[t], dyn[t] = condition_joint_gaussian(
                pts, nz, mu0, phi, m, n0, settings.ridge, unbiased_covariance=settings.unbiased_covariance
            )
        except np.linalg.LinAlgError as exc:
            raise np.linalg.LinAlgError(f"TVLG fit failed at step t={t}: {exc}") from None
    x0_mean = x[:, 0].mean(axis=0)
    x0_var = x[:, 0].var(axis=0) if N > 1 else np.zeros(nx)
    x0_covar = np.diag(np.maximum(x0_var, settings.x0_var_floor))
    return TVLGDynamics(Fm, fv, dyn, x0_mean, x0_covar, float(episodes.metadata.get("dt_s", float("nan"))))
