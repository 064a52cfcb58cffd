"""ModelLearner: an iteration completes once, however many of its trials arrive; the ensemble says
which iterations it has seen."""

import numpy as np

from mbrl_ros.data.episodes import Episodes
from mbrl_ros.dynamics.learner import LearnerSettings, ModelLearner

NX, NU, T = 4, 2, 5


def _trial(seed: int, iteration: int = 0) -> Episodes:
    rng = np.random.default_rng(seed)
    return Episodes(
        rng.standard_normal((1, T + 1, NX)), rng.standard_normal((1, T, NU)),
        np.tile(np.arange(T + 1) * 0.05, (1, 1)), metadata={"dt_s": 0.05, "iteration": iteration},
    )


def test_more_than_n_trials_of_one_iteration_give_one_job_and_the_fit_uses_them_all():
    learner = ModelLearner(LearnerSettings(trials_per_iteration=3, local_prior="none", ensemble=None), nx=NX, nu=NU)
    completed = [learner.add(_trial(seed)) for seed in range(5)]
    assert completed == [None, None, 0, None, None]
    fit = learner.fit_local(0)
    assert fit.iteration == 0 and fit.n_trials == 5
    assert np.all(np.isfinite(fit.dynamics.Fm))


def test_a_batch_crossing_n_completes_the_iteration_and_late_trials_start_a_new_job():
    learner = ModelLearner(LearnerSettings(trials_per_iteration=3, local_prior="none", ensemble=None), nx=NX, nu=NU)
    assert learner.add(_trial(0)) is None
    assert learner.add(Episodes.concatenate([_trial(1), _trial(2), _trial(3)])) == 0
    assert learner.fit_local(0).n_trials == 4
    # Trials that arrive after the fit took the iteration's pending ones count afresh.
    assert [learner.add(_trial(seed)) for seed in range(4, 7)] == [None, None, 0]


def test_the_ensemble_reports_the_latest_iteration_it_has_trained_on():
    from mbrl_ros.dynamics.ensemble import EnsembleSettings

    settings = LearnerSettings(trials_per_iteration=2, local_prior="none", ensemble_epochs_per_update=2,
                               ensemble=EnsembleSettings(n_members=2, n_elites=1, hidden_units=8, hidden_layers=1))
    learner = ModelLearner(settings, nx=NX, nu=NU)
    assert learner.ensemble_iteration == -1
    for seed, iteration in ((0, 0), (1, 0), (2, 1)):
        learner.add(_trial(seed, iteration))
    learner.train_global()
    assert learner.ensemble_iteration == 1  # a planner waiting for iteration 1's trials may use it
    learner.add(_trial(3, 0))  # a late trial of an older iteration does not move it back
    learner.train_global()
    assert learner.ensemble_iteration == 1
