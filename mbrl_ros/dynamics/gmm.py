"""Gaussian mixture model fitted by expectation-maximisation, with warm-started refits.

Used as the source of normal-inverse-Wishart prior moments for the local linear-Gaussian dynamics
fit: the mixture is fitted to pooled joint samples ``[x_t; u_t; x_{t+1}]`` and, for the samples of
one time step, the responsibility-weighted mixture moments give the prior mean and scale.

Symbols: ``K`` clusters, ``D`` data dimension; ``mu`` ``(K, D)``, ``sigma`` ``(K, D, D)``,
``log_weights`` ``(K,)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp


@dataclass(frozen=True)
class GMMSettings:
    """EM settings.

    Attributes:
        max_iterations: EM iteration cap per fit.
        tolerance: stop when the mean log-likelihood improves by less than this.
        ridge: added to every cluster covariance's diagonal (relative to the data scale is not
            applied; inputs are raw).
        min_cluster_weight: clusters whose total responsibility falls below this many points are
            re-seeded on the worst-explained point.
    """

    max_iterations: int = 100
    tolerance: float = 1e-5
    ridge: float = 1e-6
    min_cluster_weight: float = 1e-3

    def __post_init__(self) -> None:
        if self.max_iterations < 1:
            raise ValueError(f"max_iterations must be >= 1, got {self.max_iterations}")
        if not self.tolerance >= 0.0:
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance}")
        if not self.ridge >= 0.0:
            raise ValueError(f"ridge must be >= 0, got {self.ridge}")
        if not self.min_cluster_weight >= 0.0:
            raise ValueError(f"min_cluster_weight must be >= 0, got {self.min_cluster_weight}")


class GaussianMixture:
    """Full-covariance Gaussian mixture; ``fit`` warm-starts from the previous fit when ``K`` is unchanged."""

    def __init__(self, settings: GMMSettings | None = None, seed: int = 0) -> None:
        self.settings = settings or GMMSettings()
        self._rng = np.random.default_rng(seed)
        self.mu: np.ndarray | None = None
        self.sigma: np.ndarray | None = None
        self.log_weights: np.ndarray | None = None
        self.n_points = 0
        self.iterations_run = 0
        self.log_likelihood = -np.inf

    @property
    def n_clusters(self) -> int:
        return 0 if self.mu is None else self.mu.shape[0]

    @property
    def fitted(self) -> bool:
        return self.mu is not None

    def log_prob_components(self, data: np.ndarray) -> np.ndarray:
        """``log w_k + log N(data_i | mu_k, sigma_k)`` of shape ``(n, K)``."""
        if self.mu is None:
            raise ValueError("the mixture is not fitted yet")
        n, d = data.shape
        chol = np.stack([_safe_cholesky(c) for c in self.sigma])  # (K, d, d)
        diff = (data[None, :, :] - self.mu[:, None, :]).transpose(0, 2, 1)  # (K, d, n)
        z = np.linalg.solve(chol, diff)
        logdet = 2.0 * np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
        out = (-0.5 * np.sum(z * z, axis=1) - 0.5 * (d * np.log(2.0 * np.pi) + logdet)[:, None]).T
        return out + self.log_weights

    def fit(self, data: np.ndarray, n_clusters: int, warm_start: bool = True) -> "GaussianMixture":
        """EM on ``data`` ``(n, D)``. Warm-starts from the current parameters if ``K`` and ``D`` match."""
        data = np.asarray(data, dtype=float)
        if data.ndim != 2 or data.shape[0] < 2:
            raise ValueError(f"GMM data must be (n >= 2, D), got shape {data.shape}")
        if not np.all(np.isfinite(data)):
            raise ValueError("GMM data contains non-finite values")
        if n_clusters < 1:
            raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
        n, d = data.shape
        n_clusters = min(n_clusters, n)
        s = self.settings
        reg = s.ridge * np.eye(d)
        warm = warm_start and self.mu is not None and self.mu.shape == (n_clusters, d)
        if not warm:
            self._init_kmeans(data, n_clusters)
        prev_ll = -np.inf
        self.iterations_run = 0
        for it in range(s.max_iterations):
            logobs = self.log_prob_components(data)
            ll_rows = logsumexp(logobs, axis=1)
            ll = float(np.mean(ll_rows))
            self.iterations_run = it + 1
            if ll - prev_ll < s.tolerance * max(1.0, abs(ll)) and it > 0:
                self.log_likelihood = ll
                break
            prev_ll = ll
            resp = np.exp(logobs - ll_rows[:, None])  # (n, K)
            nk = resp.sum(axis=0)
            weak = nk < max(s.min_cluster_weight, 1e-12)
            if np.any(weak):
                worst = np.argsort(ll_rows)[: int(weak.sum())]
                for k, i in zip(np.flatnonzero(weak), worst):
                    resp[:, k] = 0.0
                    resp[i, k] = 1.0
                nk = resp.sum(axis=0)
            self.log_weights = np.log(nk / n)
            self.mu = (resp.T @ data) / nk[:, None]
            for k in range(n_clusters):
                diff = data - self.mu[k]
                cov = (resp[:, k, None] * diff).T @ diff / nk[k]
                self.sigma[k] = 0.5 * (cov + cov.T) + reg
            self.log_likelihood = ll
        self.n_points = n
        return self

    def _init_kmeans(self, data: np.ndarray, n_clusters: int) -> None:
        n, d = data.shape
        scale = data.std(axis=0) + 1e-12
        z = (data - data.mean(axis=0)) / scale
        centers = [z[self._rng.integers(n)]]
        for _ in range(1, n_clusters):  # k-means++ seeding
            dist = np.min([np.sum((z - c) ** 2, axis=1) for c in centers], axis=0)
            total = dist.sum()
            p = dist / total if total > 0 else np.full(n, 1.0 / n)
            centers.append(z[self._rng.choice(n, p=p)])
        c = np.array(centers)
        for _ in range(10):
            labels = np.argmin(((z[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
            for k in range(n_clusters):
                if np.any(labels == k):
                    c[k] = z[labels == k].mean(axis=0)
        labels = np.argmin(((z[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
        self.mu = np.zeros((n_clusters, d))
        self.sigma = np.zeros((n_clusters, d, d))
        counts = np.zeros(n_clusters)
        global_cov = np.cov(data.T) + self.settings.ridge * np.eye(d)
        for k in range(n_clusters):
            members = data[labels == k]
            counts[k] = len(members)
            if len(members) >= 2:
                self.mu[k] = members.mean(axis=0)
                cov = np.cov(members.T, bias=True) if len(members) > 1 else np.zeros((d, d))
                # Blend with the global covariance so small seed clusters are not singular.
                self.sigma[k] = cov + 0.1 * global_cov
            else:
                self.mu[k] = data[self._rng.integers(n)]
                self.sigma[k] = global_cov.copy()
        counts = np.maximum(counts, 1.0)
        self.log_weights = np.log(counts / counts.sum())

    def prior_moments(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mixture moments weighted by the average responsibility of ``points`` ``(n, D)``.

        Returns ``(mu0 (D,), Phi (D, D))`` with ``mu0 = Σ w_k mu_k`` and
        ``Phi = Σ w_k (sigma_k + (mu_k - mu0)(mu_k - mu0)^T)``.
        """
        logobs = self.log_prob_components(np.atleast_2d(points))
        logresp = logobs - logsumexp(logobs, axis=1, keepdims=True)
        logw = logsumexp(logresp, axis=0) - np.log(logresp.shape[0])
        w = np.exp(logw - logsumexp(logw))
        mu0 = w @ self.mu
        diff = self.mu - mu0
        phi = np.einsum("k,kij->ij", w, self.sigma) + np.einsum("k,ki,kj->ij", w, diff, diff)
        return mu0, 0.5 * (phi + phi.T)


def _safe_cholesky(a: np.ndarray) -> np.ndarray:
    jitter = 0.0
    scale = max(float(np.mean(np.abs(np.diag(a)))), 1e-12)
    for _ in range(8):
        try:
            return np.linalg.cholesky(a + jitter * np.eye(a.shape[0]))
        except np.linalg.LinAlgError:
            jitter = scale * 1e-10 if jitter == 0.0 else jitter * 100.0
    raise np.linalg.LinAlgError("covariance is not positive definite even with jitter")
