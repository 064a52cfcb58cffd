"""ModelLearner: an iteration completes once, however many of its trials arrive; the ensemble says
which iterations it has seen and can start from a checkpoint; the node's settings."""

from dataclasses import fields

import numpy as np
import pytest

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


def _small_ensemble_settings():
    from mbrl_ros.dynamics.ensemble import EnsembleSettings

    return EnsembleSettings(n_members=2, n_elites=1, hidden_units=8, hidden_layers=1)


def test_a_learner_started_from_a_checkpoint_predicts_as_the_saved_ensemble_and_trains_on(tmp_path):
    from mbrl_ros.dynamics import serialization

    settings = LearnerSettings(trials_per_iteration=2, local_prior="none", ensemble_epochs_per_update=2,
                               ensemble=_small_ensemble_settings())
    trained = ModelLearner(settings, nx=NX, nu=NU)
    for seed in range(2):
        trained.add(_trial(seed, iteration=4))
    trained.train_global()
    path = tmp_path / "ensemble.safetensors"
    serialization.save_ensemble(str(path), trained.ensemble, ["a", "b"], model_version=3)

    learner = ModelLearner(settings, nx=NX, nu=NU)
    assert not learner.ensemble_trained
    model, meta = learner.start_from_checkpoint(str(path))
    assert learner.ensemble is model and learner.ensemble_trained and meta["model_version"] == 3
    x, u = np.random.default_rng(7).standard_normal((6, NX)), np.random.default_rng(8).standard_normal((6, NU))
    np.testing.assert_array_equal(learner.ensemble.step(x, u), trained.ensemble.step(x, u))
    # The checkpoint's iterations were another run's; training on this run's trials says which it has seen.
    assert learner.ensemble_iteration == -1
    learner.add(_trial(5, iteration=0))
    learner.train_global()
    assert learner.ensemble_iteration == 0
    assert not np.array_equal(learner.ensemble.step(x, u), trained.ensemble.step(x, u)), "training went on from it"


def test_a_checkpoint_of_another_arm_is_refused(tmp_path):
    from mbrl_ros.dynamics import serialization
    from mbrl_ros.dynamics.ensemble import EnsembleDynamics

    path = tmp_path / "other.safetensors"
    serialization.save_ensemble(str(path), EnsembleDynamics(6, 3, 0.05, _small_ensemble_settings()))
    learner = ModelLearner(LearnerSettings(local_prior="none", ensemble=_small_ensemble_settings()), nx=NX, nu=NU)
    with pytest.raises(ValueError, match=r"\(nx, nu\) = \(6, 3\), the learner \(4, 2\)"):
        learner.start_from_checkpoint(str(path))
    assert not learner.ensemble_trained


def test_the_node_settings_default_to_the_learner_and_ensemble_defaults():
    from mbrl_ros.dynamics.ensemble import EnsembleSettings
    from mbrl_ros.dynamics.learner import LEARNER_PARAMETERS, LearnerNodeSettings

    assert LearnerNodeSettings().learner() == LearnerSettings(ensemble=EnsembleSettings())
    assert set(LEARNER_PARAMETERS) == {f.name for f in fields(LearnerNodeSettings)}
    seeded = LearnerNodeSettings(seed=11, ensemble_members=3, ensemble_elites=2).learner()
    assert (seeded.seed, seeded.ensemble.seed, seeded.ensemble.n_members, seeded.ensemble.n_elites) == (11, 11, 3, 2)
    assert LearnerNodeSettings(ensemble_enabled=False).learner().ensemble is None
    assert LearnerNodeSettings(bag_paths=("", "a.mcap", "")).seed_bags == ["a.mcap"]


@pytest.mark.parametrize("changes, message", [
    ({"ensemble_elites": 8}, "n_elites"),
    ({"trials_per_iteration": 1}, "trials_per_iteration must be in"),
    ({"local_prior": "gp"}, "local_prior must be one of"),
    ({"robot": "ur5"}, "unknown robot"),
    ({"dt_s": 0.0}, "dt_s must be in"),
])
def test_invalid_node_settings_are_refused_naming_the_field(changes, message):
    from mbrl_ros.dynamics.learner import LearnerNodeSettings

    with pytest.raises(ValueError, match=message):
        LearnerNodeSettings(**changes)


def _linear_trials(A: np.ndarray, n: int, seed: int, iteration: int, steps: int = 25) -> Episodes:
    """``n`` trials of ``x+ = A x + 0.1 u`` under random torques."""
    rng = np.random.default_rng(seed)
    u = rng.uniform(-1.0, 1.0, (n, steps, NU))
    x = np.zeros((n, steps + 1, NX))
    x[:, 0] = rng.uniform(-0.5, 0.5, (n, NX))
    B = 0.1 * np.vstack([np.eye(NU), np.eye(NU)])
    for t in range(steps):
        x[:, t + 1] = x[:, t] @ A.T + u[:, t] @ B.T
    return Episodes(x, u, np.tile(np.arange(steps + 1) * 0.05, (n, 1)), metadata={"dt_s": 0.05, "iteration": iteration})


def test_each_version_is_scored_on_trials_no_version_has_seen_and_a_worse_one_is_flagged():
    import copy

    from mbrl_ros.dynamics.ensemble import EnsembleSettings
    from mbrl_ros.dynamics.evaluation import k_step_errors, time_invariant

    settings = LearnerSettings(trials_per_iteration=4, local_prior="none", ensemble_epochs_per_update=60,
                               ensemble=EnsembleSettings(n_members=2, n_elites=1, hidden_units=32, hidden_layers=2))
    learner = ModelLearner(settings, nx=NX, nu=NU)
    A = np.eye(NX) + 0.05 * np.array([[0, 0, 1, 0], [0, 0, 0, 1], [-1, 0, 0, 0], [0, -1, 0, 0]])
    A_changed = np.eye(NX) + 0.05 * np.array([[0, 0, 1, 0], [0, 0, 0, 1], [1, 0, -2, 0], [0, 1, 0, -2]])

    learner.add(_linear_trials(A, 8, seed=0, iteration=0))
    learner.train_global()
    assert learner.unseen_errors is None  # nothing trained before these trials came

    unseen = _linear_trials(A, 4, seed=1, iteration=1)
    v1 = copy.deepcopy(learner.ensemble)
    learner.add(unseen)
    learner.train_global()
    first = learner.unseen_errors
    assert first.iteration == 1 and first.n_trials == 4 and not first.previous_mrad
    assert not first.worse_than_previous
    # The score is the k-step error of the version before this training, on these trials.
    for k in (1, 5, 20):
        error = k_step_errors(time_invariant(v1), unseen, k)[:, :NX // 2]
        assert first.latest_mrad[k] == pytest.approx(1e3 * np.sqrt(np.mean(error**2)), rel=1e-6)
    assert first.latest_mrad[1] < first.latest_mrad[5] < first.latest_mrad[20]

    # More trials of the same arm: the newest version is no worse than the one before.
    learner.add(_linear_trials(A, 4, seed=2, iteration=2))
    learner.train_global()
    same_arm = learner.unseen_errors
    assert same_arm.previous_mrad and not same_arm.worse_than_previous, same_arm

    # Trained on an arm that changed, the newest version predicts the old arm worse than the one before.
    learner.add(_linear_trials(A_changed, 12, seed=3, iteration=3))
    learner.train_global()
    learner.add(_linear_trials(A, 4, seed=4, iteration=4))
    learner.train_global()
    scored = learner.unseen_errors
    assert scored.iteration == 4 and scored.previous_mrad
    assert scored.latest_mrad[20] > scored.previous_mrad[20]
    assert scored.worse_than_previous
    values = scored.as_dict()
    assert values["worse_than_previous"] is True and values["unseen_20step_latest_mrad"] > values["unseen_20step_previous_mrad"]
