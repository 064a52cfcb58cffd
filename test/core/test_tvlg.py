"""TVLG dynamics: Bayesian linear regression recovers a known linear-Gaussian system."""

import numpy as np
import pytest

from mbrl_ros.data.episodes import Episodes
from mbrl_ros.dynamics.tvlg import (
    GlobalModelPrior,
    GMMPrior,
    NoPrior,
    TVLGFitSettings,
    condition_joint_gaussian,
    fit_tvlg,
)


def _linear_system(seed, nx=4, nu=2, T=20, N=20, noise=0.03):
    rng = np.random.default_rng(seed)
    A = np.eye(nx) + 0.1 * rng.standard_normal((nx, nx))
    B = rng.standard_normal((nx, nu))
    c = 0.1 * rng.standard_normal(nx)
    L = noise * rng.standard_normal((nx, nx))
    W = L @ L.T + 0.2 * noise**2 * np.eye(nx)
    x = np.zeros((N, T + 1, nx))
    u = rng.standard_normal((N, T, nu))
    x[:, 0] = rng.standard_normal((N, nx))
    for t in range(T):
        x[:, t + 1] = x[:, t] @ A.T + u[:, t] @ B.T + c + rng.multivariate_normal(np.zeros(nx), W, N)
    ep = Episodes(x, u, np.tile(np.arange(T + 1) * 0.05, (N, 1)), metadata={"dt_s": 0.05})
    return ep, np.concatenate([A, B], axis=1), c, W


def test_recovers_dynamics_and_noise_from_20_trials():
    ep, Fm_true, c, W = _linear_system(seed=0)
    model = fit_tvlg(ep)
    rel = [np.linalg.norm(model.Fm[t] - Fm_true) / np.linalg.norm(Fm_true) for t in range(model.horizon_steps)]
    assert np.max(rel) < 0.05, f"relative Frobenius error of Fm up to {np.max(rel):.3f}"
    cov_err = np.linalg.norm(model.dyn_covar.mean(axis=0) - W) / np.linalg.norm(W)
    assert cov_err < 0.20, f"covariance relative error {cov_err:.3f}"
    np.testing.assert_allclose(model.fv.mean(axis=0), c, atol=0.05)
    assert model.dt_s == 0.05


def test_plain_regression_is_singular_with_few_trials_but_priors_fit():
    ep, Fm_true, _, _ = _linear_system(seed=1, N=2)
    with pytest.raises(np.linalg.LinAlgError, match="singular"):
        fit_tvlg(ep, NoPrior(), TVLGFitSettings(ridge=0.0))
    big, _, _, _ = _linear_system(seed=1, N=10)
    prior = GMMPrior()
    prior.update(big)
    model = fit_tvlg(ep, prior)
    assert np.all(np.isfinite(model.Fm))
    assert np.all(np.linalg.eigvalsh(model.dyn_covar) > 0.0)
    rel = np.linalg.norm(model.Fm - Fm_true, axis=(1, 2)) / np.linalg.norm(Fm_true)
    assert np.mean(rel) < 0.2


class _KnownLinear:
    def __init__(self, Fm, c):
        self.nx, self.nu, self.dt_s = Fm.shape[0], Fm.shape[1] - Fm.shape[0], 0.05
        self.Fm, self.c = Fm, c

    def step(self, x, u):
        return np.concatenate([x, u], axis=-1) @ self.Fm.T + self.c

    def linearize(self, x, u):
        return self.Fm[:, : self.nx], self.Fm[:, self.nx :]


def test_global_model_prior_supplies_the_linearisation():
    ep, Fm_true, c, _ = _linear_system(seed=2, N=2)
    model = fit_tvlg(ep, GlobalModelPrior(_KnownLinear(Fm_true, c), strength=10.0, noise_var=1e-3))
    rel = np.linalg.norm(model.Fm - Fm_true, axis=(1, 2)) / np.linalg.norm(Fm_true)
    assert np.mean(rel) < 0.05


def test_prior_free_conditioning_matches_least_squares():
    rng = np.random.default_rng(3)
    pts = rng.standard_normal((50, 5))
    pts[:, 3:] = pts[:, :3] @ rng.standard_normal((3, 2)) + 0.01 * rng.standard_normal((50, 2))
    Fm, fv, _ = condition_joint_gaussian(pts, 3, np.zeros(5), np.zeros((5, 5)), 0.0, 0.0, 0.0)
    Z = np.c_[pts[:, :3], np.ones(50)]
    W = np.linalg.lstsq(Z, pts[:, 3:], rcond=None)[0]
    np.testing.assert_allclose(Fm, W[:3].T, atol=1e-10)
    np.testing.assert_allclose(fv, W[3], atol=1e-10)
