"""``mbrl-ros fit``: dynamics models fitted offline from rosbag2 bags, and how well they predict.

The bags (MCAP or sqlite3, from our recorder or anyone's ``ros2 bag record``) are read and cut
into episodes on the control period (:mod:`mbrl_ros.data.bag_episodes`); within every controller
iteration the episodes are split, seeded, into ones to fit on and ones held out. On the first the
models of the learner node are fitted the way the node fits them
(:class:`~mbrl_ros.dynamics.learner.ModelLearner`): a local time-varying linear-Gaussian (TVLG)
model per iteration with the GMM prior accumulating the trials, and the neural-network ensemble on
all of them; the TVLG models without a prior are fitted as well, to show what the prior buys. They
are written as the node's checkpoints and, with the URDF physics model as a reference, evaluated
on the held-out episodes (:mod:`mbrl_ros.dynamics.evaluation`, :mod:`mbrl_ros.fit_report`).

A local model describes one controller's trials step by step: only episodes of one length ``T``
(and period) fit and evaluate together, so the most common (T, dt) is used for every model and the
episodes of other lengths are counted in the report. Without trial markers all windows are one
group, :data:`WINDOW_STEPS` long unless the runs between pauses are too short for enough of them:
then the length is chosen (:func:`choose_window`) and the output and the report say so. No ROS
needed.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mbrl_ros.arm_contract import COMMAND_TIMEOUT_S
from mbrl_ros.data.bag_episodes import BagStreams, BagTopics, episodes_from_streams, read_streams, run_steps
from mbrl_ros.data.bags import BagError
from mbrl_ros.data.episodes import Episodes
from mbrl_ros.dynamics import serialization
from mbrl_ros.dynamics.ensemble import EnsembleDynamics, EnsembleSettings
from mbrl_ros.dynamics.evaluation import PredictionError, Predictor, hold, k_step_errors, time_invariant, time_varying
from mbrl_ros.dynamics.learner import LearnerSettings, ModelLearner
from mbrl_ros.dynamics.physics import PhysicsModel
from mbrl_ros.dynamics.tvlg import NoPrior, TVLGDynamics, fit_tvlg
from mbrl_ros.fit_report import error_table, errors_json, plot_predictions
from mbrl_ros.progress import ProgressBar
from mbrl_ros.sim.robots import robot_spec

TORQUE_SOURCES = ("commands", "effort")
#: Episode length (control steps) of the windows cut from bags without trial markers, when
#: ``steps`` is not given and the runs between pauses hold enough of them.
WINDOW_STEPS = 100
#: A chosen window length is the longest whose windows cover this share of the recorded steps that
#: the best length covers (a short stretch of joint states does not shrink every window to its size).
WINDOW_COVERAGE = 0.9


class FitError(ValueError):
    """Episodes that cannot be fitted as asked (too few, ...); the message says why."""


@dataclass(frozen=True)
class FitSettings:
    """What ``mbrl-ros fit`` does.

    Attributes:
        bags: bag directories or files, or folders of bags.
        out_dir: where checkpoints, ``report.json`` and ``prediction.png`` go.
        topics: topic names of joint states, torque commands and trial markers.
        torque_source: ``commands`` (the recorded torque commands) or ``effort`` (the joint states'
            effort field, for arms driven by other controllers; it includes gravity, so the physics
            reference then models an arm without gravity compensation).
        dt_s, steps: control period and episode length when the bags have no trial markers;
            ``steps`` ``None``: :data:`WINDOW_STEPS`, or when the runs are too short for enough such
            windows, the length :func:`choose_window` picks.
        command_timeout_s: a command older than this counts as zero torque (the arm's timeout).
        holdout_fraction: share of episodes held out for evaluation (at least one).
        seed: seeds the split, the GMM and the ensemble.
        allow_partial: fit on the readable part of damaged bags.
        robot: registered robot: joint order and physics model.
        ensemble_epochs: epoch cap of the ensemble's training (it stops early on its own holdout).
        horizons: k of the k-step errors.
    """

    bags: tuple[str, ...]
    out_dir: str
    topics: BagTopics = field(default_factory=BagTopics)
    torque_source: str = "commands"
    dt_s: float = 0.05
    steps: int | None = None
    command_timeout_s: float = COMMAND_TIMEOUT_S
    holdout_fraction: float = 0.2
    seed: int = 0
    allow_partial: bool = False
    robot: str = "panda"
    ensemble_epochs: int = 200
    horizons: tuple[int, ...] = (1, 5, 20)

    def __post_init__(self) -> None:
        if not self.bags:
            raise ValueError("name at least one bag")
        if self.torque_source not in TORQUE_SOURCES:
            raise ValueError(f"torque_source must be one of {TORQUE_SOURCES}, got {self.torque_source!r}")
        if not (self.dt_s > 0 and (self.steps is None or self.steps >= 2) and self.command_timeout_s > 0):
            raise ValueError(f"need dt_s > 0, steps >= 2 and command_timeout_s > 0, got {self.dt_s}, {self.steps}, {self.command_timeout_s}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if self.ensemble_epochs < 1 or not self.horizons or min(self.horizons) < 1:
            raise ValueError("ensemble_epochs and every horizon must be >= 1")
        robot_spec(self.robot)


def _say(text: str) -> None:
    print(text, flush=True)


def segment(streams: BagStreams, settings: FitSettings) -> tuple[list[Episodes], dict]:
    """Episodes of the most common (T, dt) and a description of the segmentation (without trial
    markers: ``window``, how the window length came about)."""
    by_markers = any(m.event == "end" for m in streams.markers)
    window = None if by_markers else choose_window(streams.states.t_s, settings)
    steps = window["steps"] if window else settings.steps or WINDOW_STEPS
    episodes = episodes_from_streams(streams, settings.dt_s, steps, settings.command_timeout_s, settings.torque_source)
    if not episodes:
        how = "trial markers" if by_markers else f"windows of {steps} x {settings.dt_s} s between gaps"
        raise FitError(f"no complete episode in the bags ({how}; {streams.states.t_s.size} joint states "
                       f"over {np.ptp(streams.states.t_s):.2f} s)")
    shapes = Counter((e.horizon_steps, e.metadata["dt_s"]) for e in episodes)
    (steps, dt_s), _ = max(shapes.items(), key=lambda item: (item[1], item[0]))
    kept = [e for e in episodes if (e.horizon_steps, e.metadata["dt_s"]) == (steps, dt_s)]
    segmentation = {
        "method": "trial markers" if by_markers else "fixed windows between gaps in the joint states",
        "dt_s": dt_s,
        "steps": steps,
        "episodes": len(kept),
        "left_out_other_lengths": len(episodes) - len(kept),
    }
    if window:
        segmentation["window"] = window
    return kept, segmentation


def choose_window(t_s: np.ndarray, settings: FitSettings) -> dict:
    """The window length for joint states ``t_s`` without trial markers, and why.

    The runs between pauses (:func:`~mbrl_ros.data.bag_episodes.run_steps`) give ``sum(run // T)``
    windows of T steps; a fit needs :func:`min_episodes`. The given ``steps``, or else
    :data:`WINDOW_STEPS`, is used when it gives that many. Otherwise a given ``steps`` is refused,
    with the lengths that would do, and without one the length is chosen among those that give
    enough windows: the longest whose windows cover :data:`WINDOW_COVERAGE` of the recorded steps
    that the best length covers (for runs of one length: the longest that fits every run).
    """
    dt_s = settings.dt_s
    lengths = run_steps(t_s, dt_s)
    need = min_episodes(settings.holdout_fraction)
    target = settings.steps or WINDOW_STEPS

    def windows(steps: int) -> int:
        return sum(n // steps for n in lengths)

    enough = [T for T in range(2, max(lengths) + 1) if windows(T) >= need]
    shortest, longest = min(lengths), max(lengths)
    runs_text = (f"the joint states' {len(lengths)} run(s) between pauses hold " +
                 (f"{shortest} steps of {dt_s:g} s each ({shortest * dt_s:.2f} s)" if shortest == longest else
                  f"{shortest} to {longest} steps of {dt_s:g} s ({shortest * dt_s:.2f} to {longest * dt_s:.2f} s)"))
    allows = f"windows of 2 to {max(enough)} steps give enough" if enough else "no window length gives enough"
    info = {"requested_steps": settings.steps, "default_steps": WINDOW_STEPS, "runs": len(lengths),
            "run_steps_min": shortest, "run_steps_max": longest, "episodes_needed": need,
            "longest_steps_with_enough_episodes": max(enough) if enough else None}
    if windows(target) >= need:
        return {**info, "steps": target, "chosen": False, "reason": f"windows of {target} steps"}
    shortfall = (f"windows of {target} x {dt_s:g} s give {windows(target)} episode(s), a fit needs {need}: "
                 f"{runs_text}; {allows}")
    if settings.steps is not None or not enough:
        advice = f": try --steps {max(enough)}, or leave --steps out to have the length chosen" if enough else ""
        raise FitError(shortfall + advice)
    covered = {T: T * windows(T) for T in enough}
    best = max(T for T in enough if covered[T] >= WINDOW_COVERAGE * max(covered.values()))
    fitting = sum(n >= best for n in lengths)
    which = ("the longest that fits every run" if fitting == len(lengths) else
             f"from {fitting} of the {len(lengths)} runs, {covered[best]} of the {sum(lengths)} recorded steps (the "
             f"longest length whose windows cover {WINDOW_COVERAGE:.0%} of what the best length covers, "
             f"{max(covered.values())})")
    reason = (f"no trial markers, and the default {shortfall}. Using windows of {best} steps ({best * dt_s:.2f} s), "
              f"{which}: {windows(best)} episodes (--steps N sets the length)")
    return {**info, "steps": best, "chosen": True, "reason": reason}


def split_counts(n: int, holdout_fraction: float) -> tuple[int, int]:
    """(to fit on, held out) of ``n`` episodes of one controller iteration: ``holdout_fraction`` of
    them held out, keeping 2 to fit a local model on."""
    n_holdout = min(int(round(holdout_fraction * n)), max(0, n - 2))
    return n - n_holdout, n_holdout


def min_episodes(holdout_fraction: float) -> int:
    """The fewest episodes of one group that give 2 to fit on and 1 to hold out."""
    n = 3
    while split_counts(n, holdout_fraction)[1] < 1:
        n += 1
    return n


def split(episodes: list[Episodes], holdout_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices to fit on and to hold out, chosen by a seeded permutation within every controller
    iteration (a local model is fitted per iteration and needs 2 trials of it; episodes cut into
    windows are one group)."""
    rng = np.random.default_rng(seed)
    fit, holdout = [], []
    for iteration in sorted({e.metadata["iteration"] for e in episodes}):
        members = [i for i, e in enumerate(episodes) if e.metadata["iteration"] == iteration]
        _, n_holdout = split_counts(len(members), holdout_fraction)
        order = rng.permutation(members)
        holdout += order[:n_holdout].tolist()
        fit += order[n_holdout:].tolist()
    if not holdout or len(fit) < 2:
        raise FitError(f"{len(episodes)} episodes: need at least 2 of one controller iteration to fit a local model "
                       "and 1 more to hold out")
    return sorted(fit), sorted(holdout)


def _episode_ids(episodes: list[Episodes]) -> list[dict]:
    return [{"trial": e.metadata["trial"], "iteration": e.metadata["iteration"], "start_s": e.metadata["start_s"]} for e in episodes]


def _by_iteration(episodes: list[Episodes]) -> dict[int, Episodes]:
    groups: dict[int, list[Episodes]] = {}
    for e in episodes:
        groups.setdefault(e.metadata["iteration"], []).append(e)
    return {iteration: Episodes.concatenate(group) for iteration, group in sorted(groups.items())}


@dataclass
class FittedModels:
    """The local models by controller iteration, the ensemble and the physics reference."""

    tvlg_gmm_prior: dict[int, TVLGDynamics]
    tvlg_no_prior: dict[int, TVLGDynamics]
    ensemble: EnsembleDynamics
    physics: PhysicsModel


def fit_models(train: dict[int, Episodes], settings: FitSettings, joint_names: list[str]) -> tuple[FittedModels, dict]:
    """Fit as the learner node does: a local model per controller iteration, in order (the GMM
    prior accumulates the trials), and the ensemble on every trial; write the node's checkpoints
    (a ``tvlg`` version per iteration, the last one as ``tvlg_latest``, then ``ensemble``)."""
    first = next(iter(train.values()))
    dt_s = float(first.metadata["dt_s"])
    learner = ModelLearner(
        LearnerSettings(
            trials_per_iteration=max(2, max(e.n_trials for e in train.values())), local_prior="gmm",
            ensemble=EnsembleSettings(seed=settings.seed), ensemble_epochs_per_update=settings.ensemble_epochs,
            robot=settings.robot, dt_s=dt_s, seed=settings.seed,
        ),
        nx=first.nx, nu=first.nu,
    )
    models = FittedModels({}, {}, learner.ensemble, PhysicsModel.from_robot(
        settings.robot, dt_s=dt_s, gravity_compensated=None if settings.torque_source == "commands" else False))
    common = {"source": "mbrl-ros fit", "bags": list(settings.bags)}
    out = Path(settings.out_dir)
    info = {"tvlg_gmm_prior": {"fit_time_s": 0.0, "iterations": [], "checkpoints": []},
            "tvlg_no_prior": {"fit_time_s": 0.0, "not_fitted": []}}
    _say(f"fitting a TVLG model with its GMM prior for each of {len(train)} controller iteration(s) ...")
    for iteration, episodes in train.items():
        learner.add(episodes)
        if episodes.n_trials < 2:
            continue  # too few for a local model; the ensemble still learns from it
        local = learner.fit_local(iteration)
        models.tvlg_gmm_prior[iteration] = local.dynamics
        info["tvlg_gmm_prior"]["fit_time_s"] += local.fit_time_s
        info["tvlg_gmm_prior"]["iterations"].append(iteration)
        version = len(models.tvlg_gmm_prior)
        info["tvlg_gmm_prior"]["checkpoints"].append(serialization.write_checkpoint(out, "tvlg", version, serialization.tvlg_to_bytes(
            local.dynamics, joint_names, model_version=version, iteration=iteration, n_trials=episodes.n_trials,
            local_prior="gmm", fit_time_s=round(local.fit_time_s, 4), **common)))
        start = time.perf_counter()
        try:
            models.tvlg_no_prior[iteration] = fit_tvlg(episodes, NoPrior(), learner.settings.fit)
        except np.linalg.LinAlgError as err:
            info["tvlg_no_prior"]["not_fitted"].append({"iteration": iteration, "reason": str(err)})
        info["tvlg_no_prior"]["fit_time_s"] += time.perf_counter() - start

    bar = ProgressBar("training the ensemble", "epochs")
    stats = learner.train_global(progress=bar)
    bar.finish(f"holdout MSE (normalised) {min(stats.holdout_mse):.4g}")
    version = len(models.tvlg_gmm_prior) + 1
    info["ensemble"] = {"epochs": stats.epochs, "n_transitions": stats.n_train + stats.n_holdout, "train_time_s": stats.time_s,
                        "checkpoint": serialization.write_checkpoint(out, "ensemble", version, serialization.ensemble_to_bytes(
                            learner.ensemble, joint_names, model_version=version, epochs=stats.epochs,
                            train_time_s=round(stats.time_s, 3), **common))}
    info["physics"] = {"robot": settings.robot, "gravity_compensated": models.physics.gravity_compensated}
    return models, info


def predictors(models: FittedModels, iteration: int) -> dict[str, Predictor]:
    """The predictors for held-out episodes of a controller iteration: its local models (if it has
    them), the ensemble, the physics model and the hold baseline."""
    out = {name: time_varying(by_iteration[iteration]) for name, by_iteration in
           (("tvlg_gmm_prior", models.tvlg_gmm_prior), ("tvlg_no_prior", models.tvlg_no_prior)) if iteration in by_iteration}
    out.update(ensemble=time_invariant(models.ensemble), physics=time_invariant(models.physics), hold_baseline=hold())
    return out


def evaluate(models: FittedModels, holdout: dict[int, Episodes], horizons: tuple[int, ...]) -> dict:
    """``{model: {k: PredictionError}}`` over all held-out episodes (TVLG: each by its iteration's model)."""
    errors: dict[str, dict[int, list[np.ndarray]]] = {}
    for iteration, episodes in holdout.items():
        for name, predict in predictors(models, iteration).items():
            for k in horizons:
                if k <= episodes.horizon_steps:
                    errors.setdefault(name, {}).setdefault(k, []).append(k_step_errors(predict, episodes, k))
    return {name: {k: PredictionError.of(k, np.concatenate(e)) for k, e in by_k.items()} for name, by_k in errors.items()}


def run(settings: FitSettings) -> dict:
    """Read, split, fit, save, evaluate and report; returns the report (also in ``report.json``)."""
    started = time.perf_counter()
    joint_names = list(robot_spec(settings.robot).joint_names)
    bar = ProgressBar("reading bags", "messages")
    streams = read_streams(settings.bags, settings.topics, joint_names, settings.torque_source == "commands", bar,
                           settings.allow_partial)
    read_s = time.perf_counter() - started
    bar.finish()
    for damaged in streams.damaged:
        _say(f"warning: fitting on the readable part of a damaged bag: {damaged.describe()}")
    align_started = time.perf_counter()
    episodes, segmentation = segment(streams, settings)
    align_s = time.perf_counter() - align_started
    if segmentation.get("window", {}).get("chosen"):
        _say(segmentation["window"]["reason"])
    _say(f"read {streams.messages_read} messages in {read_s:.1f} s ({streams.messages_read / read_s:,.0f}/s); "
         f"aligned {segmentation['episodes']} episodes of T = {segmentation['steps']} steps of {segmentation['dt_s']} s "
         f"({segmentation['method']}) in {align_s:.2f} s")
    fit_idx, holdout_idx = split(episodes, settings.holdout_fraction, settings.seed)
    _say(f"split (seed {settings.seed}, within each controller iteration): {len(fit_idx)} episodes to fit on, "
         f"{len(holdout_idx)} held out")
    holdout = _by_iteration([episodes[i] for i in holdout_idx])

    fit_started = time.perf_counter()
    models, model_info = fit_models(_by_iteration([episodes[i] for i in fit_idx]), settings, joint_names)
    fit_s = time.perf_counter() - fit_started
    evaluation_started = time.perf_counter()
    errors = evaluate(models, holdout, settings.horizons)
    evaluation_s = time.perf_counter() - evaluation_started
    table = error_table(errors, joint_names, len(holdout_idx), segmentation)
    _say(table)

    out = Path(settings.out_dir)
    shown = episodes[holdout_idx[0]]
    plot_predictions(out / "prediction.png", shown, predictors(models, shown.metadata["iteration"]),
                     max(errors["hold_baseline"]), joint_names, _episode_ids([shown])[0])
    report = {
        "settings": {**asdict(settings), "bags": list(settings.bags)},
        "joint_names": joint_names,
        "reading": {
            "messages": streams.messages_read, "time_s": read_s, "messages_per_s": streams.messages_read / read_s,
            "align_time_s": align_s,
            "damaged_bags": [d.describe() for d in streams.damaged],
        },
        "segmentation": segmentation,
        "split": {"fit": _episode_ids([episodes[i] for i in fit_idx]), "holdout": _episode_ids([episodes[i] for i in holdout_idx])},
        "models": model_info,
        "fit_time_s": fit_s,
        "evaluation_time_s": evaluation_s,
        "evaluation": {
            "how": (
                "root-mean-square error per joint over every held-out episode and every start step t0 = 0..T-k: "
                "the model is applied k times open loop from the recorded state x_t0 with the recorded torques and "
                "compared with the recorded x_t0+k. TVLG models are local and time-varying, as the learner fits them: "
                "one per controller iteration, on that iteration's trials, and step t of the model is applied at step t "
                f"of the episode (T = {segmentation['steps']}); each held-out episode is predicted by the local model of "
                "its own iteration"
                + ("" if segmentation["method"] == "trial markers" else
                   " (here: one group of windows, whose start times are arbitrary, so the time variation means little)")
                + ". The ensemble and the physics model predict every held-out episode. hold_baseline predicts x_t0+k = x_t0."
            ),
            "units": {"position": "rad", "velocity": "rad/s"},
            "errors": errors_json(errors),
        },
        "table": table,
        "wall_time_s": time.perf_counter() - started,
    }
    (out / "report.json").write_text(json.dumps(report, indent=2, default=float))
    _say(f"wrote {len(models.tvlg_gmm_prior)} TVLG checkpoint(s) (tvlg_latest.safetensors: iteration "
         f"{max(models.tvlg_gmm_prior)}), {Path(model_info['ensemble']['checkpoint']).name} (and ensemble_latest), "
         f"report.json and prediction.png in {out} ({report['wall_time_s']:.0f} s)")
    return report


def main(settings: FitSettings) -> int:
    """Run; a bag or episode problem is one clear line on stderr and exit code 1."""
    try:
        run(settings)
    except (BagError, FitError) as err:
        print(f"mbrl-ros fit: {err}", file=sys.stderr)
        return 1
    return 0
