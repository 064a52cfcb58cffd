"""What the dynamics learner does with arriving trials, independent of how they arrive.

Trials are grouped by controller iteration. When an iteration is complete (``trials_per_iteration``
trials) the local model is fitted: the prior (GMM over recent trials, the global model linearised,
or none) is updated and a time-varying linear-Gaussian model is conditioned on the iteration's
trials. The global ensemble trains incrementally on every trial received so far. Before it trains
on new trials it is scored on them (:class:`UnseenTrialErrors`): they are trials no version has
seen, so the newest version and the one before it are compared on the same held-out data without
holding any trial back from training. The ROS node
(``dynamics_learner``) and ``mbrl-ros fit`` both drive this class; :class:`LearnerNodeSettings`
and :data:`LEARNER_PARAMETERS` are the node's parameters.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from mbrl_ros.data.episodes import Episodes
from mbrl_ros.dynamics import serialization
from mbrl_ros.dynamics.evaluation import PredictionError, k_step_errors, time_invariant
from mbrl_ros.dynamics.ensemble import EnsembleDynamics, EnsembleSettings, TrainStats
from mbrl_ros.dynamics.tvlg import (
    GlobalModelPrior,
    GMMPrior,
    GMMPriorSettings,
    NoPrior,
    TVLGDynamics,
    TVLGFitSettings,
    fit_tvlg,
)
from mbrl_ros.run_folder import MODELS, default_run_dir
from mbrl_ros.settings import ParameterInfo, check_parameters

LOCAL_PRIORS = ("gmm", "global", "none")


@dataclass(frozen=True)
class LearnerSettings:
    """Settings of the learner.

    Attributes:
        trials_per_iteration: trials of one controller iteration the local model is fitted on.
        local_prior: ``gmm``, ``global`` (the ensemble, or before it has trained the physics model
            of ``robot``, linearised along the trials) or ``none`` (ridge regression).
        gmm: GMM prior settings.
        fit: TVLG fit settings (ridge).
        ensemble: ensemble settings; ``None`` disables the global model.
        ensemble_epochs_per_update: epoch cap of each incremental training call.
        semi_parametric: the ensemble learns the residual of the Pinocchio physics model.
        robot: registered robot of the physics model (global prior fallback, semi-parametric base).
        dt_s: control period of the trials (s).
        seed: seeds the GMM.
    """

    trials_per_iteration: int = 5
    local_prior: str = "gmm"
    gmm: GMMPriorSettings = field(default_factory=GMMPriorSettings)
    fit: TVLGFitSettings = field(default_factory=TVLGFitSettings)
    ensemble: EnsembleSettings | None = field(default_factory=EnsembleSettings)
    ensemble_epochs_per_update: int = 50
    semi_parametric: bool = False
    robot: str = "panda"
    dt_s: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        if self.trials_per_iteration < 2:
            raise ValueError(f"trials_per_iteration must be >= 2 (a local fit needs 2 trials), got {self.trials_per_iteration}")
        if self.local_prior not in LOCAL_PRIORS:
            raise ValueError(f"local_prior must be one of {LOCAL_PRIORS}, got {self.local_prior!r}")
        if self.ensemble_epochs_per_update < 1:
            raise ValueError(f"ensemble_epochs_per_update must be >= 1, got {self.ensemble_epochs_per_update}")
        if not self.dt_s > 0.0:
            raise ValueError(f"dt_s must be > 0, got {self.dt_s}")


@dataclass(frozen=True)
class LocalFit:
    """A fitted local model and what it was fitted on."""

    dynamics: TVLGDynamics
    iteration: int
    n_trials: int
    fit_time_s: float


#: Prediction lengths the ensemble is scored at on trials it has not seen (``mbrl-ros fit``'s).
SCORED_STEPS = (1, 5, 20)


@dataclass(frozen=True)
class UnseenTrialErrors:
    """The ensemble's k-step position error (RMS over joints and predictions, mrad) on trials no
    version of it has trained on yet, taken just before it trains on them: for the newest version
    (``latest_mrad``, by k) and, on the same trials, the one before it (``previous_mrad``; empty
    for the first). ``iteration``: the controller iteration of the scored trials."""

    iteration: int
    n_trials: int
    latest_mrad: dict[int, float]
    previous_mrad: dict[int, float]

    @property
    def worse_than_previous(self) -> bool:
        """The newest version predicts these trials worse than the one before it, at the longest k."""
        if not self.previous_mrad:
            return False
        k = max(self.latest_mrad)
        return not self.latest_mrad[k] <= self.previous_mrad[k]  # a diverged (NaN) one is worse

    def as_dict(self) -> dict:
        out = {"unseen_iteration": self.iteration, "unseen_trials": self.n_trials}
        for name, errors in (("latest", self.latest_mrad), ("previous", self.previous_mrad)):
            out.update({f"unseen_{k}step_{name}_mrad": round(v, 2) for k, v in errors.items()})
        return {**out, "worse_than_previous": self.worse_than_previous}


def unseen_trial_errors(model, episodes: Episodes) -> dict[int, float]:
    """``model``'s k-step position error on ``episodes`` (mrad), for each k of :data:`SCORED_STEPS`
    the episodes are long enough for."""
    predict = time_invariant(model)
    out = {}
    for k in SCORED_STEPS:
        if k <= episodes.horizon_steps:
            error = PredictionError.of(k, k_step_errors(predict, episodes, k))
            with np.errstate(over="ignore", invalid="ignore"):
                out[k] = float(1e3 * np.sqrt(np.mean(error.position_rad**2)))
    return out


class ModelLearner:
    """Holds the trials, the prior and the ensemble; thread-safe (``add`` from a callback, fits from
    workers)."""

    def __init__(self, settings: LearnerSettings, nx: int, nu: int) -> None:
        self.settings = settings
        self.nx, self.nu = nx, nu
        self._lock = threading.Lock()
        self._pending: dict[int, list[Episodes]] = {}
        self._new_for_ensemble: list[Episodes] = []
        self._physics = None
        base = self.physics_model() if settings.semi_parametric else None
        self.ensemble = (
            EnsembleDynamics(nx, nu, settings.dt_s, settings.ensemble, base) if settings.ensemble is not None else None
        )
        self.ensemble_trained = False
        # The latest controller iteration whose trials the ensemble has trained on (-1: none, or
        # episodes without one): a planner can wait for a model that has seen recent trials.
        self.ensemble_iteration = -1
        self.prior = self._make_prior()
        self.unseen_errors: UnseenTrialErrors | None = None
        self._previous_ensemble: bytes | None = None  # the version before the newest, serialized

    def physics_model(self):
        if self._physics is None:
            from mbrl_ros.dynamics.physics import PhysicsModel

            self._physics = PhysicsModel.from_robot(self.settings.robot, dt_s=self.settings.dt_s)
        return self._physics

    def start_from_checkpoint(self, path: str) -> tuple[EnsembleDynamics, dict]:
        """Take the ensemble saved at ``path`` as the global model, trained: it predicts (and, with
        the ``global`` prior, serves as the prior) at once, and training continues from its
        weights. Its iteration is not this run's: :attr:`ensemble_iteration` stays until it trains
        on this run's trials. Returns the model and the file's metadata; raises ``ValueError``
        (:class:`~mbrl_ros.dynamics.serialization.SerializationError`) for an unreadable file or an
        ensemble of other dimensions."""
        base = self.physics_model() if self.settings.semi_parametric else None
        model, meta = serialization.load_ensemble(path, base_model=base)
        if (model.nx, model.nu) != (self.nx, self.nu):
            raise ValueError(f"{path}: ensemble has (nx, nu) = ({model.nx}, {model.nu}), the learner ({self.nx}, {self.nu})")
        with self._lock:
            self.ensemble = model
            self.ensemble_trained = True
        return model, meta

    def _make_prior(self):
        if self.settings.local_prior == "gmm":
            return GMMPrior(self.settings.gmm, seed=self.settings.seed)
        if self.settings.local_prior == "global":
            return GlobalModelPrior(self.ensemble if self.ensemble_trained else self.physics_model())
        return NoPrior()

    def add(self, episodes: Episodes) -> int | None:
        """Add one or more trials of one iteration; returns the iteration when this call completes it."""
        if (episodes.nx, episodes.nu) != (self.nx, self.nu):
            raise ValueError(f"episodes have (nx, nu) = ({episodes.nx}, {episodes.nu}), the learner ({self.nx}, {self.nu})")
        iteration = int(episodes.metadata.get("iteration", -1))
        with self._lock:
            pending = self._pending.setdefault(iteration, [])
            before = sum(e.n_trials for e in pending)
            pending.append(episodes)
            self._new_for_ensemble.append(episodes)
        n = self.settings.trials_per_iteration
        # Only the call that crosses N completes the iteration: extra trials join the pending fit
        # instead of queueing a second job for trials that fit_local has already taken.
        return iteration if before < n <= before + episodes.n_trials else None

    def fit_local(self, iteration: int) -> LocalFit:
        """Update the prior with the iteration's trials and fit the TVLG model on them."""
        with self._lock:
            trials = self._pending.pop(iteration)
        episodes = Episodes.concatenate(trials)
        episodes.metadata.setdefault("dt_s", self.settings.dt_s)
        start = time.perf_counter()
        if self.settings.local_prior == "global":
            self.prior = self._make_prior()
        self.prior.update(episodes)
        dynamics = fit_tvlg(episodes, self.prior, self.settings.fit)
        return LocalFit(dynamics, iteration, episodes.n_trials, time.perf_counter() - start)

    def train_global(self, progress: Callable[[int, int], None] | None = None) -> TrainStats | None:
        """Train the ensemble on the trials that arrived since the last call (plus all before);
        ``progress(epoch, max epochs)`` after every epoch."""
        if self.ensemble is None:
            return None
        with self._lock:
            new, self._new_for_ensemble = self._new_for_ensemble, []
        if not new:
            return None
        if self.ensemble_trained:
            self._score_on_unseen(new)
        for episodes in new:
            self.ensemble.add_episodes(episodes)
        previous = serialization.ensemble_to_bytes(self.ensemble) if self.ensemble_trained else None
        stats = self.ensemble.train(max_epochs=self.settings.ensemble_epochs_per_update, progress=progress)
        self._previous_ensemble = previous
        self.ensemble_trained = True
        self.ensemble_iteration = max([self.ensemble_iteration] + [int(e.metadata.get("iteration", -1)) for e in new])
        return stats

    def _score_on_unseen(self, new: list[Episodes]) -> None:
        """Score the newest version and the one before it on the trials about to be trained on, of
        iterations after the last it trained on (a started-from checkpoint's are not known: until
        its first training here, every trial counts)."""
        new = [e for e in new if int(e.metadata.get("iteration", -1)) > self.ensemble_iteration or self.ensemble_iteration < 0]
        if not new:
            return
        by_length: dict[int, list[Episodes]] = {}
        for episodes in new:
            by_length.setdefault(episodes.horizon_steps, []).append(episodes)
        trials = Episodes.concatenate(max(by_length.values(), key=lambda group: sum(e.n_trials for e in group)))
        previous = {}
        if self._previous_ensemble is not None:
            base = self.physics_model() if self.settings.semi_parametric else None
            previous = unseen_trial_errors(serialization.ensemble_from_bytes(self._previous_ensemble, base_model=base)[0], trials)
        iteration = max(int(e.metadata.get("iteration", -1)) for e in new)
        self.unseen_errors = UnseenTrialErrors(iteration, trials.n_trials, unseen_trial_errors(self.ensemble, trials), previous)


@dataclass(frozen=True)
class LearnerNodeSettings:
    """The dynamics_learner node's parameters (see :data:`LEARNER_PARAMETERS`): the learner's
    settings, flat, and what the node does around it. Defaults are :class:`LearnerSettings`' and
    :class:`~mbrl_ros.dynamics.ensemble.EnsembleSettings`'."""

    robot: str = LearnerSettings.robot
    local_prior: str = LearnerSettings.local_prior
    trials_per_iteration: int = LearnerSettings.trials_per_iteration
    dt_s: float = LearnerSettings.dt_s
    ensemble_enabled: bool = True
    ensemble_members: int = EnsembleSettings.n_members
    ensemble_elites: int = EnsembleSettings.n_elites
    ensemble_hidden_units: int = EnsembleSettings.hidden_units
    ensemble_hidden_layers: int = EnsembleSettings.hidden_layers
    ensemble_epochs_per_update: int = LearnerSettings.ensemble_epochs_per_update
    semi_parametric: bool = LearnerSettings.semi_parametric
    seed: int = LearnerSettings.seed
    model_dir: str = field(default_factory=lambda: str(default_run_dir() / MODELS))
    trial_steps: int = 100
    bag_paths: tuple[str, ...] = ("",)
    checkpoint: str = ""
    resume: bool = True
    torch_threads: int = 1

    def __post_init__(self) -> None:
        from mbrl_ros.sim.robots import robot_spec  # imported here, as in physics_model(): fits need no PyBullet

        check_parameters(self, LEARNER_PARAMETERS)
        robot_spec(self.robot)
        self.learner()  # checks the combination (elites <= members, ...)

    def learner(self) -> LearnerSettings:
        ensemble = EnsembleSettings(
            n_members=self.ensemble_members, n_elites=self.ensemble_elites, hidden_units=self.ensemble_hidden_units,
            hidden_layers=self.ensemble_hidden_layers, seed=self.seed,
        ) if self.ensemble_enabled else None
        return LearnerSettings(
            trials_per_iteration=self.trials_per_iteration, local_prior=self.local_prior, ensemble=ensemble,
            ensemble_epochs_per_update=self.ensemble_epochs_per_update, semi_parametric=self.semi_parametric,
            robot=self.robot, dt_s=self.dt_s, seed=self.seed,
        )

    @property
    def seed_bags(self) -> list[str]:
        """The bags to learn from at start (``bag_paths`` without empty entries)."""
        return [p for p in self.bag_paths if p]


LEARNER_PARAMETERS: dict[str, ParameterInfo] = {
    "robot": ParameterInfo("Robot whose joints the episodes hold (physics prior / residual base).", read_only=True),
    "local_prior": ParameterInfo(f"Prior of the local models: {', '.join(LOCAL_PRIORS)}.", read_only=True,
                                 choices=LOCAL_PRIORS),
    "trials_per_iteration": ParameterInfo("Trials per controller iteration.", 2, 100, read_only=True),
    "dt_s": ParameterInfo("Control period of the trials (s).", 0.001, 1.0, read_only=True),
    "ensemble_enabled": ParameterInfo("Train the global neural-network ensemble.", read_only=True),
    "ensemble_members": ParameterInfo("Ensemble size E.", 1, 32, read_only=True),
    "ensemble_elites": ParameterInfo("Members used for prediction.", 1, 32, read_only=True),
    "ensemble_hidden_units": ParameterInfo("Hidden units per layer.", 8, 2048, read_only=True),
    "ensemble_hidden_layers": ParameterInfo("Hidden layers.", 1, 8, read_only=True),
    "ensemble_epochs_per_update": ParameterInfo("Epoch cap per incremental training.", 1, 10000, read_only=True),
    "semi_parametric": ParameterInfo("Ensemble learns the physics model's residual.", read_only=True),
    "seed": ParameterInfo("Seed of the GMM and the ensemble.", 0, 2**31 - 1, read_only=True),
    "model_dir": ParameterInfo("Checkpoint folder (default: models/ in a new run folder, "
                               "$ROS_HOME/mbrl_ros/runs/<start time>).", read_only=True),
    "trial_steps": ParameterInfo("Steps per trial (for bag seeding).", 1, 100000, read_only=True),
    "bag_paths": ParameterInfo("Bags to learn from at start (empty: none).", read_only=True),
    "checkpoint": ParameterInfo("Ensemble checkpoint to start from (empty: none).", read_only=True),
    "resume": ParameterInfo(
        "Without a checkpoint, start from model_dir's ensemble_latest when there is one (a restarted learner "
        "goes on where it stopped); model versions always continue after the highest in model_dir.", read_only=True),
    "torch_threads": ParameterInfo("Torch CPU threads for training.", 1, 64, read_only=True),
}
