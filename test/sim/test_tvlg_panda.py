"""TVLG on simulated Panda trials: the GMM prior makes few-trial fits work."""

import numpy as np
import pytest

from mbrl_ros.control.lg_policy import InitialControllerSettings, initial_pd_policy
from mbrl_ros.data.rollout import rollouts
from mbrl_ros.dynamics.tvlg import GMMPrior, NoPrior, TVLGFitSettings, fit_tvlg
from mbrl_ros.sim import SimSettings, SimulatedArm

T = 100


@pytest.fixture(scope="module")
def trials():
    with SimulatedArm(SimSettings(robot="panda", seed=0, reset_noise_rad=0.005)) as arm:
        q0 = np.array(arm.spec.home_positions_rad)
        policy = initial_pd_policy(T, q0, arm.mass_matrix(q0), InitialControllerSettings(omega_rad_s=6.0, noise_scale_rad_s2=2.0))
        rng = np.random.default_rng(0)
        return rollouts(arm, lambda i: policy.sampler(rng), 8, T, 0.05)


def _one_step_error(model, test):
    errs = [np.linalg.norm(model.step(t, test.x[:, t], test.u[:, t]) - test.x[:, t + 1], axis=1).mean() for t in range(T)]
    return float(np.mean(errs))


def test_gmm_prior_halves_ridge_error_with_three_trials(trials):
    train, test = trials.select([0, 1, 2]), trials.select([3, 4, 5, 6, 7])
    ridge = min(_one_step_error(fit_tvlg(train, NoPrior(), TVLGFitSettings(ridge=r)), test) for r in (1e-6, 1e-3, 1.0))
    prior = GMMPrior()
    prior.update(train)
    gmm = _one_step_error(fit_tvlg(train, prior), test)
    print(f"held-out one-step error: ridge {ridge:.4f}, GMM prior {gmm:.4f}")
    assert gmm <= 0.5 * ridge


def test_two_trials_fit_with_prior_where_plain_regression_fails(trials):
    train = trials.select([0, 1])
    with pytest.raises(np.linalg.LinAlgError, match="singular"):
        fit_tvlg(train, NoPrior(), TVLGFitSettings(ridge=0.0))
    prior = GMMPrior()
    prior.update(train)
    model = fit_tvlg(train, prior)
    assert np.all(np.isfinite(model.Fm))
    assert np.all(np.linalg.eigvalsh(model.dyn_covar) > 0.0)
    assert _one_step_error(model, trials.select([3, 4, 5])) < 0.2


def test_global_model_prior_from_physics(trials):
    from mbrl_ros.dynamics.physics import PhysicsModel
    from mbrl_ros.dynamics.tvlg import GlobalModelPrior

    train = trials.select([0, 1])
    physics = PhysicsModel.from_robot("panda", dt_s=0.05)
    model = fit_tvlg(train, GlobalModelPrior(physics, strength=5.0, noise_var=1e-4))
    error = _one_step_error(model, trials.select([3, 4, 5]))
    print(f"two-trial held-out one-step error, physics-linearised prior: {error:.4f}")
    assert error < 0.15
