"""Probabilistic ensemble: protocol, trajectory sampling, autograd linearisation, incremental training."""

import numpy as np
import pytest
import torch

from mbrl_ros.dynamics.base import begin_rollout
from mbrl_ros.dynamics.ensemble import EnsembleDynamics, EnsembleSettings

SMALL = dict(n_members=4, n_elites=3, hidden_units=32, hidden_layers=2, batch_size=64, seed=0)


def _pendulum_data(n, seed, spread=1.0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-spread, spread, (n, 2))
    u = rng.uniform(-spread, spread, (n, 1))
    dt = 0.05
    v = x[:, 1] + dt * (-9.81 * np.sin(x[:, 0]) + u[:, 0])
    xn = np.c_[x[:, 0] + dt * v, v] + 1e-3 * rng.standard_normal((n, 2))
    return x, u, xn


@pytest.fixture(scope="module")
def model():
    m = EnsembleDynamics(2, 1, 0.05, EnsembleSettings(**SMALL, max_epochs_per_train=60))
    m.add_transitions(*_pendulum_data(600, 0))
    m.train()
    return m


def test_implements_the_protocol_and_predicts(model):
    x, u, xn = _pendulum_data(200, 1)
    assert (model.nx, model.nu, model.dt_s) == (2, 1, 0.05)
    # step: the elite mean, over any leading dimensions; step_torch: a (B, nx) batch in its dtype.
    batched = model.step(x[:6].reshape(2, 3, 2), u[:6].reshape(2, 3, 1))
    assert batched.shape == (2, 3, 2)
    np.testing.assert_allclose(batched.reshape(6, 2), model.step(x[:6], u[:6]), atol=1e-12)
    begin_rollout(model, 6, torch.Generator().manual_seed(0))
    sampled = model.step_torch(torch.tensor(x[:6]), torch.tensor(u[:6]))
    assert sampled.shape == (6, 2) and sampled.dtype == torch.float64
    mean, ale, epi = model.predict(x, u)
    assert mean.shape == ale.shape == epi.shape == (200, 2)
    assert np.all(ale > 0) and np.all(epi >= 0)
    rmse = np.sqrt(np.mean((mean - xn) ** 2))
    assert rmse < 0.02, rmse
    assert model.step(x[0], u[0]).shape == (2,)


def test_epistemic_variance_grows_off_distribution(model):
    x, u, _ = _pendulum_data(200, 2)
    _, _, epi_in = model.predict(x, u)
    _, _, epi_out = model.predict(x * 4.0, u * 4.0)
    assert epi_out.mean() > 10 * epi_in.mean()


def test_linearize_matches_finite_differences(model):
    x = np.array([[0.3, -0.2], [-0.5, 0.4]])
    u = np.array([[0.1], [-0.3]])
    A, B = model.linearize(x, u)
    assert A.shape == (2, 2, 2) and B.shape == (2, 2, 1)
    h = 1e-4
    for i in range(2):
        dx = np.zeros(2)
        dx[i] = h
        fd = (model.step(x + dx, u) - model.step(x - dx, u)) / (2 * h)
        np.testing.assert_allclose(A[:, :, i], fd, rtol=1e-2, atol=1e-3)
    fd = (model.step(x, u + h) - model.step(x, u - h)) / (2 * h)
    np.testing.assert_allclose(B[:, :, 0], fd, rtol=1e-2, atol=1e-3)


def test_trajectory_sampling_ts_inf_keeps_members_ts1_redraws(model):
    x = torch.zeros(64, 2, dtype=torch.float64)
    u = torch.zeros(64, 1, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    begin_rollout(model, 64, gen)
    first = model._member_index.clone()
    out = model.step_torch(x, u)
    assert out.shape == (64, 2) and out.dtype == torch.float64
    model.step_torch(x, u)
    assert torch.equal(model._member_index, first)  # TS-inf: fixed for the whole rollout
    assert len(set(first.tolist())) > 1
    # Same generator seed -> same samples.
    begin_rollout(model, 64, torch.Generator().manual_seed(0))
    again = model.step_torch(x, u)
    torch.testing.assert_close(again, out)
    ts1 = EnsembleDynamics(2, 1, 0.05, EnsembleSettings(**SMALL, propagation="ts1", sample_aleatoric=False))
    ts1.load_state_arrays(model.state_arrays())
    begin_rollout(ts1, 64, torch.Generator().manual_seed(1))
    a = ts1.step_torch(x.float(), u.float())
    b = ts1.step_torch(x.float(), u.float())
    assert a.dtype == torch.float32
    assert not torch.equal(a, b)  # TS1: members redrawn each step


def test_incremental_training_uses_new_data():
    m = EnsembleDynamics(2, 1, 0.05, EnsembleSettings(**SMALL, max_epochs_per_train=20))
    m.add_transitions(*_pendulum_data(100, 3, spread=0.5))
    first = m.train()
    x, u, xn = _pendulum_data(200, 4, spread=1.0)
    err_before = np.sqrt(np.mean((m.step(x, u) - xn) ** 2))
    m.add_transitions(*_pendulum_data(400, 5, spread=1.0))
    second = m.train()
    err_after = np.sqrt(np.mean((m.step(x, u) - xn) ** 2))
    assert m.train_summary["n_transitions"] == 500 and m.train_summary["train_calls"] == 2
    assert second.n_train + second.n_holdout == 500 and first.n_train + first.n_holdout == 100
    assert err_after < err_before


class _Linear:
    nx, nu, dt_s = 2, 1, 0.05

    def step(self, x, u):
        x = np.asarray(x)
        return np.stack([x[..., 0] + 0.05 * x[..., 1], x[..., 1] + 0.05 * np.asarray(u)[..., 0]], axis=-1)

    def step_torch(self, x, u):
        return torch.stack([x[:, 0] + 0.05 * x[:, 1], x[:, 1] + 0.05 * u[:, 0]], dim=-1)

    def linearize(self, x, u):
        batch = np.broadcast_shapes(np.shape(x)[:-1], np.shape(u)[:-1])
        A = np.broadcast_to(np.array([[1.0, 0.05], [0.0, 1.0]]), batch + (2, 2)).copy()
        B = np.broadcast_to(np.array([[0.0], [0.05]]), batch + (2, 1)).copy()
        return A, B


def test_semi_parametric_learns_the_residual():
    x, u, xn = _pendulum_data(600, 6)
    m = EnsembleDynamics(2, 1, 0.05, EnsembleSettings(**SMALL, max_epochs_per_train=60), base_model=_Linear())
    m.add_transitions(x, u, xn)
    m.train()
    xt, ut, xnt = _pendulum_data(200, 7)
    base_err = np.sqrt(np.mean((_Linear().step(xt, ut) - xnt) ** 2))
    err = np.sqrt(np.mean((m.step(xt, ut) - xnt) ** 2))
    assert err < 0.2 * base_err
    A, _ = m.linearize(xt[:1], ut[:1])
    assert A.shape == (1, 2, 2)
    begin_rollout(m, 8, torch.Generator().manual_seed(0))
    assert m.step_torch(torch.as_tensor(xt[:8]), torch.as_tensor(ut[:8])).shape == (8, 2)


@pytest.mark.parametrize("kwargs", [dict(n_elites=8), dict(holdout_fraction=0.0), dict(propagation="bogus"),
                                    dict(init_min_logvar=1.0, init_max_logvar=0.0)])
def test_settings_are_validated(kwargs):
    with pytest.raises(ValueError):
        EnsembleSettings(**kwargs)


def test_analytic_jacobians_match_finite_differences_in_float64(model):
    """The reverse-mode Jacobians against central differences of the same network in float64
    (the float32 network's own rounding would hide an error of 1e-4)."""
    m = EnsembleDynamics(2, 1, 0.05, EnsembleSettings(**SMALL))
    m.load_state_arrays(model.state_arrays())
    m.net.double()
    m._invalidate()
    rng = np.random.default_rng(3)
    x, u = rng.normal(size=(6, 2)), rng.normal(size=(6, 1))
    A, B = m.linearize(x, u)
    h = 1e-6
    for i in range(2):
        dx = np.zeros(2)
        dx[i] = h
        np.testing.assert_allclose(A[:, :, i], (m.step(x + dx, u) - m.step(x - dx, u)) / (2 * h), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(B[:, :, 0], (m.step(x, u + h) - m.step(x, u - h)) / (2 * h), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("batch", [7, 64, 101])
def test_ts_inf_each_sample_gets_its_own_members_prediction(model, batch):
    """Grouped by member, every sample's next state is what its elite alone predicts for it, and the
    elites get nearly equal shares."""
    settings = EnsembleSettings(**{**SMALL, "sample_aleatoric": False})
    m = EnsembleDynamics(2, 1, 0.05, settings)
    m.load_state_arrays(model.state_arrays())
    rng = np.random.default_rng(4)
    x = torch.as_tensor(rng.normal(size=(batch, 2)), dtype=torch.float32)
    u = torch.as_tensor(rng.normal(size=(batch, 1)), dtype=torch.float32)
    begin_rollout(m, batch, torch.Generator().manual_seed(5))
    out = m.step_torch(x, u)
    counts = torch.bincount(m._member_index, minlength=len(m.elites))
    assert int(counts.max() - counts.min()) <= -(-batch // len(m.elites)) - batch // len(m.elites) + 1
    z = ((torch.cat([x, u], -1).double() - m.in_mean) / m.in_std).float()
    for i in range(batch):
        member = m.elites[int(m._member_index[i])]
        mean, _ = m.net(z[i].expand(settings.n_members, 1, 3))
        alone = x[i].double() + mean[member, 0].double() * m.out_std + m.out_mean
        torch.testing.assert_close(out[i].double(), alone, rtol=1e-5, atol=1e-6)
