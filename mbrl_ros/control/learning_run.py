"""What the arm controller decides, without ROS: the learning run.

The controller node publishes a torque every tick; :class:`LearningRun` decides where each torque
comes from and when trials, updates and hand-overs happen. The node feeds it events (ticks with the
measured state, episodes, models, plans, finished resets, parameter changes) and carries out what it
asks through a small :class:`ArmIO` (publish a trial marker, call the reset service). Every method
takes ``now_s``, the node's clock, so the run is tested with a fake clock.

Phases (:class:`Phase`) and the torque in each:

* ``RETURNING`` — back to the start configuration: the reset service (zero torque until it has
  answered; a call unanswered for ``RESET_TIMEOUT_S`` is made again, counted in ``reset_retries``,
  as a DDS service response can be lost), or without one a PD drive until every joint is within ``start_tolerance_rad`` of the
  start and slower than that per second.
* ``SETTLING`` — ``settle_s`` at the start (a PD hold there, or zero torque after a reset service,
  which leaves the arm at rest).
* ``READY`` (``lqr_flm``) — a trial starts as soon as the recorder listens, while the iteration has
  trials left; otherwise ``UPDATING``.
* ``TRIAL`` — the linear-Gaussian controller runs one trial (start and end markers published).
* ``UPDATING`` — the start pose is held until the learner's local model and the iteration's
  episodes have arrived and the KL-constrained update (:meth:`take_update`, :meth:`run_update`)
  has made the next controller; then ``RETURNING`` for the next iteration. An episode still missing
  ``episode_timeout_s`` after the last trial ended is lost: another trial is run.
* ``HOLDING`` — a PD hold on one pose until the first plan: where the last trial of the last
  iteration ended (the hand-over: the final mode then plans only on an ensemble trained on trials at
  most ``handover_model_lag_iterations`` older than the last), or where the arm was when planning
  started, lost its state or its plan expired.
* ``PLANNING`` (``ilqr``/``mppi``) — the latest plan's feedback policy; a plan that starts in the
  future (planned from a predicted state) takes over at its start time.

Plans are requested with :meth:`plan_request` and handed back with :meth:`on_plan`; each request
carries an epoch, and a reset, a lost state or a mode change starts a new one, so a plan made
before such an event never drives the arm. Thread-safe: the torque, planner, payload and update
threads of the node all call in; every method holds the run's lock only briefly.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from mbrl_ros.control.controller_settings import ControllerSettings
from mbrl_ros.control.lg_policy import LinearGaussianPolicy, initial_pd_policy
from mbrl_ros.control.lqr_flm_trainer import IterationStats, LQRFLMTrainer
from mbrl_ros.control.policy import LinearFeedbackPolicy
from mbrl_ros.control.trials import TrialExecution
from mbrl_ros.data.alignment import TrialMarker
from mbrl_ros.data.episodes import Episodes

PLANNING_MODES = ("ilqr", "mppi")

#: A pending plan takes over only if the arm is within this much (rad, rad/s, any joint) of the
#: plan's nominal state then: it was planned from a predicted start, and a start the arm is far
#: from makes its feedback gains (hundreds of N·m/rad) saturate the torques.
TAKEOVER_TOLERANCE = 0.3

#: A reset service call unanswered this long (s) is made again: a service response can be lost in
#: DDS (a client whose response reader the server has not discovered yet), and the arm would wait
#: at zero torque for ever. The simulator's reset answers within milliseconds.
RESET_TIMEOUT_S = 5.0

#: A plan the arm has left by more than this (rad, rad/s, any joint) is abandoned for a PD hold
#: where the arm is, as a trajectory controller aborts past its path tolerance: its feedback,
#: saturated that far from the nominal, no longer brings the arm back.
PATH_TOLERANCE = 0.6


class Phase(enum.Enum):
    RETURNING = "returning"
    SETTLING = "settling"
    READY = "ready"
    TRIAL = "trial"
    UPDATING = "updating"
    HOLDING = "holding"
    PLANNING = "planning"


class ArmIO(Protocol):
    """What the run asks of the node that hosts it."""

    def publish_marker(self, marker: TrialMarker) -> None:
        """Publish a trial marker (``start``, ``end`` or ``abort``) for the recorder."""

    def request_reset(self) -> bool:
        """Ask the reset service to reset the arm; ``False`` when it cannot be asked yet."""

    def recorder_listening(self) -> bool:
        """Whether the recorder hears the markers and the commands (a trial it cannot hear would
        become an episode with the wrong torques)."""

    def report(self, message: str) -> None:
        """Log something that went wrong (an aborted or lost trial, a failed update)."""


@dataclass(frozen=True)
class UpdateJob:
    """An iteration ready for the KL-constrained update: its trials and the learner's local model."""

    iteration: int
    episodes: Episodes
    dynamics: object
    model_version: int


@dataclass(frozen=True)
class UpdateReport:
    """What an update did: ``progress`` (the ``/mbrl/progress`` record) or ``error``, and the mode
    to switch to when the last iteration is done."""

    iteration: int
    progress: dict | None = None
    error: str | None = None
    switch_to_mode: str | None = None


@dataclass(frozen=True)
class PlanRequest:
    """Plan from state ``x`` measured at time ``t0_s`` towards ``goal`` (end-effector target, m);
    ``policies``: the plan in force, then the pending ones, each taking over at its start (none
    under a PD hold), for predicting where the arm will be when the new plan takes effect
    (:mod:`mbrl_ros.control.latency`)."""

    x: np.ndarray
    t0_s: float
    goal: np.ndarray
    epoch: int
    policies: tuple[LinearFeedbackPolicy, ...] = ()


class LearningRun:
    """The controller's phase machine (see the module docstring).

    Args:
        settings: the controller's settings (the node replaces them with :meth:`apply_settings`).
        mass_matrix: joint inertia ``M(q0)`` ``(nq, nq)`` at the start configuration: the PD holds
            and the initial controller are scaled by it.
        cost: the trial cost (``ReachCost``-like: ``set_ee_target``, ``evaluate``, ``quadratize``).
        ee_position: ``q (N, nq) -> (N, 3)`` end-effector positions, for the reported distances.
        effort_limit_nm: ``(nq,)`` every torque is clipped to ``±`` this.
        joint_names: the controlled joints, in ``x``/``u`` order (for the trial markers).
        io: the node's side (:class:`ArmIO`).
        has_reset_service: whether ``io.request_reset`` can reset the arm (else PD drive back).
    """

    def __init__(self, settings: ControllerSettings, mass_matrix: np.ndarray, cost,
                 ee_position: Callable[[np.ndarray], np.ndarray], effort_limit_nm: np.ndarray, joint_names,
                 io: ArmIO, has_reset_service: bool) -> None:
        self._lock = threading.Lock()
        self.settings = settings
        self._M0 = np.asarray(mass_matrix, dtype=float)
        self._nq = self._M0.shape[0]
        self._q0 = np.asarray(settings.initial_positions_rad, dtype=float)
        self._ee_position = ee_position
        self._limit = np.asarray(effort_limit_nm, dtype=float)
        self._joint_names = tuple(joint_names)
        self._io = io
        self._has_reset_service = bool(has_reset_service)
        self._rng = np.random.default_rng(settings.seed)
        self.trainer = LQRFLMTrainer(
            initial_pd_policy(settings.trial_steps, self._q0, self._M0, settings.initial_controller()),
            cost, settings.lqr_flm(),
        )
        self._start_hold = self._pd_hold(self._q0)
        self._zero = np.zeros(self._nq)
        self._goal = np.asarray(settings.goal_xyz_m, dtype=float)

        self.phase = Phase.RETURNING
        self.iteration = 0
        self._trials_run = 0
        self._trial_number = 0
        self._trial: TrialExecution | None = None
        self._last_trial_end_s = 0.0
        self._settle_until_s = 0.0
        self._reset_pending = False
        self._reset_asked_s = 0.0
        self._recorder_heard = True
        self._episodes: dict[int, list[Episodes]] = {}
        self._local_models: dict[int, tuple[object, int]] = {}
        self._updating = False
        self._handover_iteration: int | None = None  # the last trial's iteration, until the first plan
        self._hold: LinearGaussianPolicy | None = None  # PD hold of HOLDING (None: hold where the arm is next)
        self._policy: LinearFeedbackPolicy | None = None
        # Accepted plans that start later, by start time: each was planned from the state
        # predicted under the plans before it, so each takes over at its own start.
        self._pending: list[LinearFeedbackPolicy] = []
        self._epoch = 0
        self._ensemble_version = 0
        self._ensemble_iteration = -1
        self._last_error_rad = float("inf")
        self.counts = {k: 0 for k in (
            "trials", "lost_trials", "aborted_trials", "updates", "failed_updates", "plans", "stale_plans",
            "obsolete_plans", "mismatched_plans", "abandoned_plans", "expired_plans", "stale_state_stops", "clipped_ticks", "reset_retries")}

    # ---- helpers (under the lock) ---------------------------------------------------------------------
    def _pd_hold(self, q: np.ndarray) -> LinearGaussianPolicy:
        """The initial controller's mass-matrix-scaled PD, as a one-step policy holding ``q``."""
        return initial_pd_policy(1, np.asarray(q, dtype=float), self._M0, self.settings.initial_controller())

    def _enter(self, phase: Phase, now_s: float) -> None:
        self._policy, self._pending = None, []
        if phase is Phase.RETURNING:
            self._new_epoch()
            self._reset_pending = False
            self._handover_iteration = None
        if phase is Phase.SETTLING:
            self._settle_until_s = now_s + self.settings.settle_s
        self.phase = phase

    def _new_epoch(self) -> None:
        """Plans in flight were made for what came before (a reset, a gap in the states, another
        mode): none of them may drive the arm."""
        self._epoch += 1

    def _hold_at(self, q: np.ndarray | None, now_s: float) -> None:
        self._enter(Phase.HOLDING, now_s)
        self._hold = None if q is None else self._pd_hold(q)

    def _after_start_reached(self, now_s: float) -> None:
        """Where the run goes once the arm has settled at the start configuration."""
        if self.settings.mode in PLANNING_MODES:
            self._hold_at(self._q0, now_s)
        else:
            self.phase = Phase.READY

    def _abort_trial(self, reason: str, now_s: float) -> None:
        if self._trial is None:
            return
        trial, self._trial = self._trial, None
        self.counts["aborted_trials"] += 1
        self._io.publish_marker(self._marker("abort", trial))
        self._io.report(f"trial {self._trial_number} aborted: {reason}")
        self._enter(Phase.RETURNING, now_s)

    def _marker(self, event: str, trial: TrialExecution) -> TrialMarker:
        return TrialMarker(event, self._trial_number, self.iteration, trial.start_s, trial.dt_s, trial.steps,
                           tuple(float(v) for v in self._goal), self._joint_names, "lqr_flm")

    def _episodes_lost(self, now_s: float) -> bool:
        """Whether an episode of the current iteration will never come (the recorder could not
        align its trial); then the trials still owed are run again."""
        received = len(self._episodes.get(self.iteration, []))
        if self._updating or received >= self.settings.trials_per_iteration \
                or now_s - self._last_trial_end_s <= self.settings.episode_timeout_s:
            return False
        self.counts["lost_trials"] += self._trials_run - received
        self._io.report(f"iteration {self.iteration}: {self._trials_run - received} episode(s) not delivered within "
                        f"{self.settings.episode_timeout_s:g} s of the last trial; running the trial(s) again")
        self._trials_run = received
        return True

    def _model_ready(self) -> bool:
        s = self.settings
        if s.model_source == "physics":
            return True
        if self._ensemble_version == 0:
            return False
        return self._handover_iteration is None or \
            self._ensemble_iteration >= self._handover_iteration - s.handover_model_lag_iterations

    # ---- the torque tick ------------------------------------------------------------------------------
    def tick(self, now_s: float, x: np.ndarray | None, x_time_s: float) -> tuple[np.ndarray, bool]:
        """The torque at ``now_s`` for the latest measured state ``x`` ``(nx,)`` (received at
        ``x_time_s``; ``None``: none yet), clipped to the effort limits and always finite, and
        whether it comes from a plan (the node then counts the step towards the model's disturbance
        estimate). A state older than ``state_timeout_s`` means zero torque (:meth:`_state_lost`)."""
        with self._lock:
            if x is None or now_s - x_time_s > self.settings.state_timeout_s:
                if x is not None:
                    self.counts["stale_state_stops"] += 1
                self._state_lost(now_s)
                return self._zero, False
            u, from_plan = self._tick(now_s, np.asarray(x, dtype=float))
            clipped = np.clip(u, -self._limit, self._limit)
            if not np.all(np.isfinite(clipped)):
                return self._zero, False
            if np.any(clipped != u):
                self.counts["clipped_ticks"] += 1
            return clipped, from_plan

    def _tick(self, now_s: float, x: np.ndarray) -> tuple[np.ndarray, bool]:
        s = self.settings
        q, qd = x[: self._nq], x[self._nq:]
        phase = self.phase
        if phase is Phase.RETURNING:
            if self._has_reset_service:
                if self._reset_pending and now_s - self._reset_asked_s > RESET_TIMEOUT_S:
                    self._reset_pending = False
                    self.counts["reset_retries"] += 1
                if not self._reset_pending:
                    self._reset_pending, self._reset_asked_s = self._io.request_reset(), now_s
                return self._zero, False
            self._last_error_rad = float(max(np.max(np.abs(q - self._q0)), np.max(np.abs(qd))))
            if self._last_error_rad < s.start_tolerance_rad:
                self._enter(Phase.SETTLING, now_s)
            return self._start_hold.mean_action(x, 0), False
        if phase is Phase.SETTLING:
            if now_s >= self._settle_until_s:
                self._after_start_reached(now_s)
                return self._tick(now_s, x)
            return self._hold_start(x), False
        if phase is Phase.READY:
            if self._trials_run >= s.trials_per_iteration:
                self.phase = Phase.UPDATING
                return self._hold_start(x), False
            self._recorder_heard = self._io.recorder_listening()
            if not self._recorder_heard:
                return self._hold_start(x), False
            self._trial_number += 1
            self.counts["trials"] += 1
            self._trial = TrialExecution(self.trainer.policy, now_s, s.dt_s, self._rng)
            self._io.publish_marker(self._marker("start", self._trial))
            self.phase = Phase.TRIAL
            return self._tick(now_s, x)
        if phase is Phase.TRIAL:
            trial = self._trial
            u = trial.action(x, now_s)
            if trial.finished(now_s):
                self._io.publish_marker(self._marker("end", trial))
                self._trial = None
                self._trials_run += 1
                self._last_trial_end_s = now_s
                last_iteration = s.iterations and self.iteration == s.iterations - 1
                if last_iteration and s.final_mode != "lqr_flm" and self._trials_run >= s.trials_per_iteration:
                    # The final mode takes over here, at the goal: a trial's own last step is no hold
                    # (optimised for one step, it drifts away), so a PD holds the pose until a plan.
                    self._hold_at(q, now_s)
                    self._handover_iteration = self.iteration
                else:
                    self._enter(Phase.RETURNING, now_s)
            return u, False
        if phase is Phase.UPDATING:
            if self._episodes_lost(now_s):
                self.phase = Phase.READY  # at the start already: run the missing trials
            return self._hold_start(x), False
        if phase is Phase.HOLDING:
            if self._handover_iteration is not None and self.iteration == self._handover_iteration \
                    and self._episodes_lost(now_s):
                self._enter(Phase.RETURNING, now_s)  # the last iteration lost a trial: run it again
                return self._zero, False
            if self._hold is None:
                self._hold = self._pd_hold(q)
            return self._hold.mean_action(x, 0), False
        # PLANNING
        while self._pending and now_s >= self._pending[0].t0_s:
            policy = self._pending.pop(0)
            if np.max(np.abs(x - policy.nominal_state(now_s))) <= TAKEOVER_TOLERANCE:
                self._policy = policy
            else:
                self.counts["mismatched_plans"] += 1
        policy = self._policy
        if now_s > policy.t0_s + policy.horizon_s:
            # No newer plan (a failing or dead planner): past its horizon a policy would hold its last
            # knot's torque forever.
            self.counts["expired_plans"] += 1
            self._hold_at(q, now_s)
            return self._hold.mean_action(x, 0), False
        if np.max(np.abs(x - policy.nominal_state(now_s))) > PATH_TOLERANCE:
            self.counts["abandoned_plans"] += 1
            self._hold_at(q, now_s)
            return self._hold.mean_action(x, 0), False
        return policy.action(x, now_s), True

    def _hold_start(self, x: np.ndarray) -> np.ndarray:
        # After a reset service the arm rests exactly at the start; without one, the PD holds it there.
        return self._zero if self._has_reset_service else self._start_hold.mean_action(x, 0)

    def _state_lost(self, now_s: float) -> None:
        """No fresh joint state: a trial is aborted, a plan dropped, and the arm is held wherever it
        is once states come back (never on a plan made before the gap)."""
        self._abort_trial("no fresh joint state", now_s)
        if self.phase is Phase.PLANNING or (self.phase is Phase.HOLDING and self._hold is not None
                                            and self._handover_iteration is None):
            self._new_epoch()
            self._hold_at(None, now_s)

    # ---- events ---------------------------------------------------------------------------------------
    def on_reset_done(self, success: bool, now_s: float) -> None:
        with self._lock:
            if self.phase is not Phase.RETURNING:
                return
            self._reset_pending = False
            if success:
                self._enter(Phase.SETTLING, now_s)

    def request_return(self, now_s: float) -> None:
        """Back to the start configuration (a user's reset): aborts a trial, drops a plan."""
        with self._lock:
            self._abort_trial("reset requested", now_s)
            if self.phase is not Phase.RETURNING:
                self._enter(Phase.RETURNING, now_s)

    def apply_settings(self, settings: ControllerSettings, now_s: float, cost=None) -> None:
        """New settings (already validated); ``cost`` replaces the trial cost when its weights
        changed. A mode change moves the phase (see the module docstring)."""
        with self._lock:
            previous, self.settings = self.settings, settings
            self.trainer.settings = settings.lqr_flm()
            if cost is not None:
                cost.set_ee_target(self.trainer.cost.ee_target)
                self.trainer.cost = cost
            self._goal = np.asarray(settings.goal_xyz_m, dtype=float)
            if settings.mode == previous.mode:
                return
            self._new_epoch()
            if settings.mode == "lqr_flm":
                if self.phase in (Phase.PLANNING, Phase.HOLDING):
                    self._enter(Phase.RETURNING, now_s)  # trials start at the start configuration
            elif previous.mode == "lqr_flm":
                self._abort_trial(f"mode changed to {settings.mode}", now_s)
                if self.phase in (Phase.READY, Phase.UPDATING):
                    self._hold_at(None, now_s)

    def on_episodes(self, episodes: Episodes) -> None:
        """A trial's episode from the recorder (only ``lqr_flm`` trials are kept)."""
        if episodes.metadata.get("mode") != "lqr_flm":
            return
        with self._lock:
            iteration = int(episodes.metadata.get("iteration", -1))
            if iteration >= self.iteration:
                self._episodes.setdefault(iteration, []).append(episodes)

    def on_local_model(self, iteration: int, dynamics, model_version: int) -> None:
        """The learner's time-varying linear-Gaussian model of an iteration's trials."""
        with self._lock:
            if iteration >= self.iteration:
                self._local_models[iteration] = (dynamics, int(model_version))

    def on_ensemble(self, model_version: int, iteration: int) -> None:
        """A new global model: ``iteration`` is the latest controller iteration it has trained on."""
        with self._lock:
            self._ensemble_version = int(model_version)
            self._ensemble_iteration = int(iteration)

    # ---- the LQR-FLM update ---------------------------------------------------------------------------
    def take_update(self) -> UpdateJob | None:
        """The current iteration's update, when its local model and episodes are all there (then
        no second job is handed out until :meth:`run_update` has finished it)."""
        s = self.settings
        with self._lock:
            episodes = self._episodes.get(self.iteration, [])
            if self._updating or s.mode != "lqr_flm" or self.iteration not in self._local_models \
                    or len(episodes) < s.trials_per_iteration:
                return None
            self._updating = True
            dynamics, version = self._local_models[self.iteration]
            return UpdateJob(self.iteration, Episodes.concatenate(episodes[: s.trials_per_iteration]), dynamics, version)

    def run_update(self, job: UpdateJob) -> UpdateReport:
        """The KL-constrained update of ``job`` (seconds of numpy, without the lock), then the next
        iteration; a failed update is reported and repeats the iteration."""
        try:
            self.trainer.cost.set_ee_target(job.episodes.goal)
            stats = self.trainer.update(job.episodes, job.dynamics)
        except (ValueError, ArithmeticError) as err:
            with self._lock:
                self._episodes.pop(job.iteration, None)
                self._local_models.pop(job.iteration, None)
                self._trials_run = 0
                self._updating = False
                self.counts["failed_updates"] += 1
                if self.phase in (Phase.UPDATING, Phase.HOLDING):
                    self._enter(Phase.RETURNING, 0.0)  # RETURNING does not use the time
            error = f"LQR-FLM update of iteration {job.iteration} failed: {err}; repeating the iteration"
            self._io.report(error)
            return UpdateReport(job.iteration, error=error)
        progress = self._progress(job, stats)
        with self._lock:
            self._episodes = {i: e for i, e in self._episodes.items() if i > job.iteration}
            self._local_models = {i: m for i, m in self._local_models.items() if i > job.iteration}
            self.iteration = job.iteration + 1
            self._trials_run = 0
            self._updating = False
            self.counts["updates"] += 1
            if self.phase is Phase.UPDATING:
                self._enter(Phase.RETURNING, 0.0)  # the arm has idled during the update: start from rest
            s = self.settings
            done = s.iterations and self.iteration >= s.iterations and s.final_mode != "lqr_flm"
        return UpdateReport(job.iteration, progress=progress, switch_to_mode=s.final_mode if done else None)

    def _progress(self, job: UpdateJob, stats: IterationStats) -> dict:
        final_q = job.episodes.x[:, -1, : self._nq]
        distances = np.linalg.norm(self._ee_position(final_q) - job.episodes.goal, axis=1)
        return {
            "iteration": job.iteration,
            "trials": job.episodes.n_trials,
            "mean_final_distance_m": float(distances.mean()),
            "final_distances_m": distances.tolist(),
            "mean_cost": stats.mean_cost,
            "kl_nats": stats.kl_nats,
            "epsilon_nats": stats.epsilon_nats,
            "step_mult": stats.step_mult,
            "model_version": job.model_version,
        }

    # ---- receding-horizon planning --------------------------------------------------------------------
    def plan_request(self, now_s: float, x: np.ndarray | None) -> PlanRequest | None:
        """What to plan now (``x``: the latest fresh state, or ``None``), or ``None`` when no plan
        is wanted (not a planning mode or phase, no model yet, no state)."""
        with self._lock:
            if x is None or self.settings.mode not in PLANNING_MODES \
                    or self.phase not in (Phase.HOLDING, Phase.PLANNING) or not self._model_ready():
                return None
            if self.phase is Phase.HOLDING and np.max(np.abs(x[self._nq:])) > self.settings.start_tolerance_rad:
                return None  # a plan from a hold starts when it arrives, where the hold keeps the arm at rest
            in_force = (self._policy, *self._pending) if self.phase is Phase.PLANNING else ()
            return PlanRequest(np.array(x, dtype=float), now_s, self._goal.copy(), self._epoch, in_force)

    def on_plan(self, policy: LinearFeedbackPolicy, request: PlanRequest, now_s: float) -> str:
        """Hand back the plan made for ``request``: ``accepted``, ``stale`` (its first knot already
        past: it arrived later than predicted) or ``obsolete`` (made before a reset, a lost state or
        a mode change). A plan that takes over from a PD hold starts when it arrives."""
        with self._lock:
            # A plan predicted under plans in force does not start where a hold keeps the arm.
            if request.epoch != self._epoch or self.settings.mode not in PLANNING_MODES \
                    or self.phase not in (Phase.HOLDING, Phase.PLANNING) \
                    or (self.phase is Phase.HOLDING and request.policies):
                self.counts["obsolete_plans"] += 1
                return "obsolete"
            if self.phase is Phase.HOLDING:
                # The hold kept the arm at rest where the plan starts: the plan starts when it
                # arrives, however long it took (its first knots, run late, would pull the arm
                # through its feedback towards where the plan expected it by now).
                self.counts["plans"] += 1
                self.phase = Phase.PLANNING
                self._handover_iteration = None
                self._policy = policy.retimed(max(policy.t0_s, now_s))
                return "accepted"
            # Planned from where the arm was predicted to be at its start: one that arrives after
            # its first knot has passed finds the arm elsewhere on another path (plans differ most
            # in the null space of a redundant arm), and its feedback would yank the arm onto it.
            if now_s - policy.t0_s > policy.dt_s:
                self.counts["stale_plans"] += 1
                return "stale"
            self.counts["plans"] += 1
            # A plan supersedes the pending ones that start with it or after it (planned without them).
            self._pending = [p for p in self._pending if p.t0_s < policy.t0_s]
            if policy.t0_s > now_s:
                self._pending.append(policy)
            else:
                self._policy, self._pending = policy, []
            return "accepted"

    # ---- reporting ------------------------------------------------------------------------------------
    def waiting_for(self, now_s: float) -> str | None:
        """What the run is waiting for, in words, when it is waiting for something outside it."""
        with self._lock:
            s, phase = self.settings, self.phase
            if phase is Phase.RETURNING:
                if self._has_reset_service:
                    return "the reset service to reset the arm"
                return f"the arm to return to the start configuration ({self._last_error_rad:.3f} rad or rad/s away)"
            if phase is Phase.READY and not self._recorder_heard:
                return "the trajectory recorder to hear the trial markers and the torque commands"
            if phase is Phase.UPDATING and not self._updating:
                missing = s.trials_per_iteration - len(self._episodes.get(self.iteration, []))
                parts = [] if self.iteration in self._local_models else [f"the learner's local model of iteration {self.iteration}"]
                if missing > 0:
                    parts.append(f"{missing} episode(s) of iteration {self.iteration} from the recorder")
                return " and ".join(parts) or None
            if phase in (Phase.HOLDING, Phase.PLANNING) and s.mode in PLANNING_MODES:
                if s.model_source == "learned" and self._ensemble_version == 0:
                    return "a learned model on /mbrl/model (or set model_source to physics)"
                if not self._model_ready():
                    return (f"an ensemble trained on iteration {self._handover_iteration - s.handover_model_lag_iterations} "
                            f"or later (the newest has seen iteration {self._ensemble_iteration})")
                if phase is Phase.HOLDING:
                    return "the first plan"
            return None

    def diagnostics(self) -> dict:
        with self._lock:
            return {"phase": self.phase.value, "iteration": self.iteration, "epoch": self._epoch,
                    "ensemble_iteration": self._ensemble_iteration, **self.counts}

    def trial_plan(self) -> np.ndarray:
        """The LQR-FLM controller's nominal states ``(T, nx)`` (its planned path)."""
        return self.trainer.policy.x_hat
