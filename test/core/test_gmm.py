"""EM Gaussian mixture: recovers separated clusters, warm-started refits converge faster."""

import numpy as np
import pytest

from mbrl_ros.dynamics.gmm import GaussianMixture, GMMSettings


def _blobs(seed, n=300):
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0, 0.0], [5.0, 5.0, 0.0], [-5.0, 5.0, 3.0]])
    labels = rng.integers(3, size=n)
    return centers[labels] + 0.3 * rng.standard_normal((n, 3)), centers


def test_em_recovers_separated_clusters():
    data, centers = _blobs(0)
    gmm = GaussianMixture(seed=0).fit(data, 3)
    for c in centers:
        assert np.min(np.linalg.norm(gmm.mu - c, axis=1)) < 0.15
    np.testing.assert_allclose(np.exp(gmm.log_weights).sum(), 1.0)
    sig = np.sqrt(np.diagonal(gmm.sigma, axis1=1, axis2=2))
    np.testing.assert_allclose(sig, 0.3, rtol=0.25)


def test_warm_start_refit_is_faster():
    data, _ = _blobs(1)
    gmm = GaussianMixture(seed=1).fit(data, 3)
    cold = gmm.iterations_run
    more, _ = _blobs(2, n=30)
    gmm.fit(np.concatenate([data, more]), 3, warm_start=True)
    assert gmm.iterations_run <= max(2, cold)
    assert gmm.iterations_run < 10


def test_prior_moments_follow_the_responsible_cluster():
    data, centers = _blobs(3)
    gmm = GaussianMixture(seed=3).fit(data, 3)
    mu0, phi = gmm.prior_moments(centers[1][None] + 0.01)
    np.testing.assert_allclose(mu0, centers[1], atol=0.1)
    assert np.all(np.linalg.eigvalsh(phi) > 0)


def test_invalid_input_is_rejected():
    with pytest.raises(ValueError):
        GaussianMixture().fit(np.array([[np.nan, 1.0], [0.0, 1.0]]), 2)
    with pytest.raises(ValueError):
        GMMSettings(max_iterations=0)
