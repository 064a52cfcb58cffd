"""mpc_controller: torques on ``effort_controller/commands`` every tick, whatever planning is doing.

A timer at ``control_rate_hz`` (node clock: simulated time under ``use_sim_time``) turns the latest
joint state into a clipped torque from the current action source; it never waits for a plan.

* ``lqr_flm``: runs trials of the time-varying linear-Gaussian controller (markers on
  ``/mbrl/trial`` let the recorder cut episodes), then, once the learner's local model of the
  iteration and the iteration's episodes have arrived, makes the KL-constrained update in a worker
  thread and starts the next iteration. After ``iterations`` it hands over to ``final_mode`` where
  the last trial ended, at the goal: a PD hold keeps the arm there until the first plan on a model
  that has seen trials ending near the goal (at most one iteration behind the last).
* ``ilqr`` / ``mppi``: a planner thread replans at ``plan_rate_hz`` from the latest state on the
  learned ensemble (or the URDF physics model) and hands the torque loop a feedback policy.

Safety: joints mapped by name; a joint state older than ``state_timeout_s`` (or never received)
means zero torque and a report; torques are clipped to the URDF effort limits; zero torque on
shutdown. Parameters are validated as a whole; a refused change says why.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import deque
from dataclasses import fields

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PointStamped
from nav_msgs.msg import Path
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.time import Time
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String, UInt8MultiArray
from std_srvs.srv import Trigger

from mbrl_ros.control.controller_settings import PARAMETERS, ControllerSettings
from mbrl_ros.control.costs import ReachCost
from mbrl_ros.control.disturbance import StepWindows
from mbrl_ros.control.lg_policy import initial_pd_policy
from mbrl_ros.control.lqr_flm_trainer import LQRFLMTrainer
from mbrl_ros.control.planner_process import PlannerProcess, PlanningError
from mbrl_ros.control.trials import TrialExecution
from mbrl_ros.data.alignment import TrialMarker
from mbrl_ros.data.episodes import Episodes
from mbrl_ros.dynamics import serialization
from mbrl_ros.dynamics.physics import PhysicsModel
from mbrl_ros.realtime import use_fifo, use_normal_scheduling, use_realtime_process
from mbrl_ros.ros import payloads, qos
from mbrl_ros.ros.conversions import InvalidMessage, JointStateDecoder, command_msg, decode_point, path_msg
from mbrl_ros.ros.diagnostics import PeriodStats, diagnostic_array, status
from mbrl_ros.ros.params import declare
from mbrl_ros.ros.spin import run_node

#: An episode of the current iteration that has not arrived this long after the last trial ended
#: is taken as lost (the recorder could not align it): another trial is run.
_EPISODE_WAIT_S = 10.0


def _parameter_value(value):
    return tuple(value) if isinstance(value, (list, tuple)) or type(value).__name__ == "array" else value


class MPCController(Node):
    def __init__(self) -> None:
        super().__init__("mpc_controller")
        defaults = ControllerSettings()
        for f in fields(ControllerSettings):
            info = PARAMETERS[f.name]
            default = getattr(defaults, f.name)
            declare(self, f.name, list(default) if isinstance(default, tuple) else default, info.description,
                    low=info.low, high=info.high, read_only=info.read_only)
        self.settings = self._settings_from(self.get_parameters([f.name for f in fields(ControllerSettings)]))
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        s = self.settings

        self._physics = PhysicsModel.from_robot(s.robot, dt_s=s.dt_s)
        self._joint_names = list(self._physics.spec.joint_names)
        self._decoder = JointStateDecoder(self._joint_names)
        self._limit = self._physics.effort_limit_nm
        self._q0 = np.asarray(s.initial_positions_rad, dtype=float)
        self._M0 = self._physics.mass_matrix(self._q0)  # once: the return-to-start PD runs every tick
        self._frame = self._physics.arm.model.frames[1].name  # the URDF's base link: /mbrl/plan's frame
        self._rng = np.random.default_rng(s.seed)

        self._lock = threading.Lock()
        self._x: np.ndarray | None = None
        self._x_time_s = -np.inf
        self._goal = np.asarray(s.goal_xyz_m, dtype=float)
        self._counts = {k: 0 for k in (
            "rejected_joint_states", "rejected_goals", "rejected_models", "rejected_episodes", "stale_state_stops",
            "deadline_misses", "clipped_ticks", "trials", "plans", "plan_failures", "stale_plans", "expired_plans")}
        self._tick_stats = PeriodStats(window=int(5 * s.control_rate_hz))
        # Drained by the 1 Hz diagnostics; bounded in case its timer stalls.
        self._tick_compute_s: deque[float] = self._timings()
        self._plan_times_s: deque[float] = self._timings()

        # LQR-FLM state.
        self._cost = ReachCost.for_model(self._physics, s.cost(), self._q0)
        self._trainer = LQRFLMTrainer(
            initial_pd_policy(s.trial_steps, self._q0, self._M0, s.initial_controller()),
            self._cost, s.lqr_flm(),
        )
        self._iteration = 0
        self._trial_number = 0
        self._trials_run = 0
        self._trial: TrialExecution | None = None
        self._phase = "reset"
        self._phase_until_s = 0.0
        self._reset_pending = False
        self._last_trial_end_s = 0.0
        self._tvlg: dict[int, tuple[object, dict]] = {}
        self._episodes: dict[int, list[Episodes]] = {}
        self._updating = False
        self._start_wall = time.monotonic()

        # Receding-horizon state: plans come from a child process (see planner_process).
        self._planner = PlannerProcess(s.robot, s.dt_s, self._q0)
        self._executed = StepWindows(s.dt_s)  # what the arm did under ilqr/mppi, for the model's error
        self._ensemble_bytes: bytes | None = None
        self._ensemble_sent = False
        self._model_version = 0
        self._ensemble_iteration = -1  # the latest controller iteration the ensemble has trained on
        self._policy = None
        self._expired_policy = None
        self._handover_q: np.ndarray | None = None  # where the last trial ended, held until the first plan
        self._plan_wakeup = threading.Event()

        # The executor only receives and ticks; decoding payloads (models of several MB, episodes),
        # updating and planning happen in worker threads, so none of it delays a state or a tick.
        self._payloads: queue.Queue = queue.Queue()
        self._command_pub = self.create_publisher(Float64MultiArray, "effort_controller/commands", qos.COMMANDS)
        self._marker_pub = self.create_publisher(String, "/mbrl/trial", qos.TRIAL_MARKERS)
        self._plan_pub = self.create_publisher(Path, "/mbrl/plan", 1)
        self._progress_pub = self.create_publisher(String, "/mbrl/progress", qos.PROGRESS)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", qos.DIAGNOSTICS)
        self.create_subscription(JointState, "joint_states", self._on_joint_state, qos.JOINT_STATES_SUB)
        self.create_subscription(PointStamped, "/mbrl/goal", self._on_goal, 10)
        self.create_subscription(UInt8MultiArray, "/mbrl/model", lambda m: self._payloads.put((self._on_model, m)), qos.MODEL)
        self.create_subscription(
            UInt8MultiArray, "/mbrl/episodes", lambda m: self._payloads.put((self._on_episodes, m)), qos.EPISODES
        )
        self._reset_client = self.create_client(Trigger, s.reset_service) if s.reset_service else None
        self.create_timer(1.0, self._publish_diagnostics)

        self._running = True
        # SCHED_FIFO, as ros2_control's own loop uses, for every thread (executor, DDS, workers) so
        # that none holding the GIL is preempted by an ordinary process (see mbrl_ros.realtime). After
        # spawning the planner: it must not inherit it.
        self._realtime = use_realtime_process(s.rt_priority, self.get_logger().warn)
        self._threads = [
            threading.Thread(target=self._torque_loop, name="torque", daemon=True),
            threading.Thread(target=self._plan_loop, name="planner", daemon=True),
            threading.Thread(target=self._payload_loop, name="payloads", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self._publish_trial_plan()
        self.get_logger().info(
            f"{s.robot}: mode {s.mode}, torques at {s.control_rate_hz:g} Hz, goal {np.round(self._goal, 3).tolist()} m"
        )

    # ---- parameters ---------------------------------------------------------------------------------
    def _settings_from(self, params) -> ControllerSettings:
        return ControllerSettings(**{p.name: _parameter_value(p.value) for p in params})

    @staticmethod
    def _settings_changes(params) -> dict:
        # Node-level parameters (use_sim_time, ...) are rclpy's, not settings.
        return {p.name: _parameter_value(p.value) for p in params if p.name in PARAMETERS}

    def _validate_parameters(self, params) -> SetParametersResult:
        try:
            self.settings.replace(**self._settings_changes(params))
        except (ValueError, TypeError) as err:
            return SetParametersResult(successful=False, reason=str(err))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params) -> None:
        changed = self._settings_changes(params)
        previous_mode = self.settings.mode
        self.settings = self.settings.replace(**changed)
        if self.settings.mode != previous_mode:
            # Only lqr_flm runs trials: one left open would span the whole time in the new mode.
            self._abort_trial(f"mode changed to {self.settings.mode}")
            with self._lock:
                if self._phase == "handover":
                    self._phase = "run"
                    self._plan_wakeup.set()
        if "goal_xyz_m" in changed:
            self._set_goal(np.asarray(self.settings.goal_xyz_m, dtype=float))
        if changed.keys() & {"ee_weight", "ee_weight_terminal", "effort_weight", "velocity_weight", "velocity_weight_terminal"}:
            self._cost = ReachCost.for_model(self._physics, self.settings.cost(), self._q0)
            self._cost.set_ee_target(self._goal)
            self._trainer.cost = self._cost
        self._plan_wakeup.set()

    def _set_goal(self, goal: np.ndarray) -> None:
        with self._lock:
            self._goal = goal
        self._plan_wakeup.set()

    # ---- inputs -------------------------------------------------------------------------------------
    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_joint_state(self, msg: JointState) -> None:
        try:
            x = self._decoder.decode(msg)
        except InvalidMessage as err:
            self._counts["rejected_joint_states"] += 1
            self.get_logger().warn(f"rejected joint state: {err}", throttle_duration_sec=1.0)
            return
        with self._lock:
            self._x = x
            self._x_time_s = self._now_s()

    def _on_goal(self, msg: PointStamped) -> None:
        try:
            goal = decode_point(msg)
        except InvalidMessage as err:
            self._reject_goal(str(err))
            return
        # Through the parameter, so goal_xyz_m always reports the goal being pursued.
        result = self.set_parameters([Parameter("goal_xyz_m", value=[float(v) for v in goal])])[0]
        if not result.successful:
            self._reject_goal(result.reason)

    def _reject_goal(self, reason: str) -> None:
        self._counts["rejected_goals"] += 1
        self.get_logger().warn(f"rejected goal: {reason}", throttle_duration_sec=1.0)

    def _payload_loop(self) -> None:
        while self._running:
            item = self._payloads.get()
            if item is None:
                return
            handler, msg = item
            handler(msg)

    def _on_model(self, msg: UInt8MultiArray) -> None:
        try:
            data, meta = payloads.decode_model(msg)
            if meta["kind"] == "tvlg":
                dynamics, meta = serialization.tvlg_from_bytes(data)
                with self._lock:
                    self._tvlg[int(meta.get("iteration", -1))] = (dynamics, meta)
            elif meta["kind"] == "ensemble":
                _, meta = serialization.ensemble_from_bytes(data, base_model=self._physics)  # validates it
                with self._lock:
                    self._ensemble_bytes = data
                    self._ensemble_sent = False
                    self._model_version = int(meta.get("model_version", 0))
                    self._ensemble_iteration = int(meta.get("iteration", -1))
                self._plan_wakeup.set()
            else:
                raise InvalidMessage(f"model kind {meta['kind']!r} is not one the controller uses")
        except (InvalidMessage, ValueError) as err:
            self._counts["rejected_models"] += 1
            self.get_logger().warn(f"rejected model: {err}", throttle_duration_sec=1.0)
            return
        self._maybe_update()

    def _on_episodes(self, msg: UInt8MultiArray) -> None:
        try:
            episodes = payloads.decode_episodes(msg)
        except InvalidMessage as err:
            self._counts["rejected_episodes"] += 1
            self.get_logger().warn(f"rejected episodes: {err}", throttle_duration_sec=1.0)
            return
        if episodes.metadata.get("mode") != "lqr_flm":
            return
        with self._lock:
            self._episodes.setdefault(int(episodes.metadata.get("iteration", -1)), []).append(episodes)
        self._maybe_update()

    # ---- the torque loop ----------------------------------------------------------------------------
    def _torque_loop(self) -> None:
        """Ticks at ``control_rate_hz`` against absolute deadlines (steady clock, or the ROS clock
        under ``use_sim_time``), in a thread of its own: no executor queue in front of it."""
        if self._realtime:
            use_fifo(self.settings.rt_priority)
        period_s = 1.0 / self.settings.control_rate_hz
        clock = self.get_clock()
        sim_time = self.get_parameter("use_sim_time").value
        while sim_time and self._running and clock.now().nanoseconds == 0:
            time.sleep(0.01)  # no /clock yet
        next_s = self._now_s() if sim_time else time.monotonic()
        while self._running:
            next_s += period_s
            now = self._now_s() if sim_time else time.monotonic()
            if now - next_s > period_s:  # a whole slot was lost: count it and re-align
                self._counts["deadline_misses"] += int((now - next_s) // period_s)
                next_s = now
            elif sim_time:
                if not clock.sleep_until(Time(nanoseconds=int(next_s * 1e9), clock_type=clock.clock_type)):
                    continue
            elif next_s > now:
                time.sleep(next_s - now)
            try:
                self._tick()
            except Exception as err:  # a bug must not leave the last torque applied
                self.get_logger().error(f"torque tick failed: {err!r}; zero torque", throttle_duration_sec=1.0)
                self._command_pub.publish(command_msg(np.zeros(len(self._joint_names))))

    def _tick(self) -> None:
        started = time.perf_counter()
        now = self._now_s()
        self._tick_stats.tick(time.monotonic())
        with self._lock:
            x, age = self._x, now - self._x_time_s
        if x is None or age > self.settings.state_timeout_s:
            if x is not None:
                self._counts["stale_state_stops"] += 1
                self.get_logger().warn(f"joint state is {age:.3f} s old: zero torque", throttle_duration_sec=1.0)
            self._abort_trial("no fresh joint state")
            self._executed.clear()
            self._command_pub.publish(command_msg(np.zeros(len(self._joint_names))))
            return
        u = self._action(x, now)
        clipped = np.clip(u, -self._limit, self._limit)
        if not np.all(np.isfinite(clipped)):
            clipped = np.zeros_like(clipped)
        if np.any(clipped != u):
            self._counts["clipped_ticks"] += 1
        self._command_pub.publish(command_msg(clipped))
        if self.settings.mode != "lqr_flm" and self._phase == "run":
            self._executed.add(now, x, clipped)
        else:
            self._executed.clear()
        self._tick_compute_s.append(time.perf_counter() - started)

    def _action(self, x: np.ndarray, now: float) -> np.ndarray:
        if self._phase in ("reset", "settle"):
            return self._reset_step(x, now)
        if self._phase == "handover":
            return self._handover_step(x, now)
        if self.settings.mode == "lqr_flm":
            return self._lqr_flm_step(x, now)
        policy = self._policy
        if policy is None:
            return np.zeros(len(self._joint_names)) if self._handover_q is None else self._pd_hold(x, self._handover_q)
        if now > policy.t0_s + policy.horizon_s:
            # No newer plan (a dead or failing planner): past its horizon a policy would hold its
            # last knot's torque forever.
            if policy is not self._expired_policy:
                self._expired_policy = policy
                self._counts["expired_plans"] += 1
            return np.zeros(len(self._joint_names))
        return policy.action(x, now)

    def _reset_step(self, x: np.ndarray, now: float) -> np.ndarray:
        """Back to the start configuration: the reset service, or a PD hold for ``settle_s``."""
        zero = np.zeros(len(self._joint_names))
        self._handover_q = None
        if self._phase == "reset":
            if self._reset_client is not None:
                if not self._reset_pending:
                    if not self._reset_client.service_is_ready():
                        return zero
                    self._reset_pending = True
                    self._reset_client.call_async(Trigger.Request()).add_done_callback(self._on_reset_done)
                return zero
            self._phase, self._phase_until_s = "settle", now + max(self.settings.settle_s, 2.0)
        if self._phase == "settle" and now >= self._phase_until_s:
            self._phase = "run"
            self._policy = None
            self._plan_wakeup.set()
        if self._reset_client is not None:
            return zero
        return self._pd_hold(x, self._q0)

    def _pd_hold(self, x: np.ndarray, q_target: np.ndarray) -> np.ndarray:
        """Mass-matrix-scaled PD to ``q_target`` (on top of the arm's gravity compensation)."""
        n = len(self._joint_names)
        omega, zeta = self.settings.init_pd_omega_rad_s, 0.9
        return self._M0 @ (omega**2 * (q_target - x[:n]) - 2.0 * zeta * omega * x[n:])

    def _on_reset_done(self, future) -> None:
        self._reset_pending = False
        if future.result() is not None and future.result().success:
            self._phase, self._phase_until_s = "settle", self._now_s() + self.settings.settle_s

    def _lqr_flm_step(self, x: np.ndarray, now: float) -> np.ndarray:
        s = self.settings
        zero = np.zeros(len(self._joint_names))
        trial = self._trial  # a mode change may abort it from another thread
        if trial is None:
            with self._lock:
                # _update moves to the next iteration (phase and trial count) under this lock: decide
                # on a consistent view, or a trial could start just before the phase goes to reset.
                if self._phase != "run":
                    return zero
                if self._trials_run >= s.trials_per_iteration:
                    received = self._episodes_if_lost(now)
                    if received is not None:
                        self._trials_run = received  # a trial was lost on the way: run another
                    return zero
            if not self._recorder_listening():
                return zero
            trial = self._start_trial(now)
        u = trial.action(x, now)
        if trial.finished(now):
            self._publish_marker("end", trial)
            self._trial = None
            self._trials_run += 1
            self._last_trial_end_s = now
            if s.iterations and s.final_mode != "lqr_flm" and self._iteration == s.iterations - 1 \
                    and self._trials_run >= s.trials_per_iteration:
                # The last trial: the final mode takes over here, at the goal, not back at the start.
                # (The trial's own last step is no hold: optimised for one step, it drifts away.)
                self._handover_q = x[: len(self._joint_names)].copy()
                self._phase = "handover"
            else:
                self._phase = "reset"
        return u

    def _handover_step(self, x: np.ndarray, now: float) -> np.ndarray:
        """Hold the goal while the last iteration's update runs; if one of its trials was lost on
        the way, go back to the start and run another."""
        with self._lock:
            # Once the update has closed the last iteration (it then switches the mode) nothing is lost.
            received = self._episodes_if_lost(now) if self._iteration < self.settings.iterations else None
            if received is not None:
                self._trials_run = received
                self._phase = "reset"
                return np.zeros(len(self._joint_names))
        return self._pd_hold(x, self._handover_q)

    def _episodes_if_lost(self, now: float) -> int | None:
        """Under the lock: how many of the iteration's episodes arrived, when the rest never will (the
        recorder discarded a trial); ``None`` while they may still come."""
        received = len(self._episodes.get(self._iteration, []))
        if not self._updating and received < self.settings.trials_per_iteration \
                and now - self._last_trial_end_s > _EPISODE_WAIT_S:
            return received
        return None

    def _recorder_listening(self) -> bool:
        """A trial whose commands the recorder does not hear yet would become an episode with the
        wrong torques: wait until it subscribes to the markers and, with the arm, to the commands."""
        ready = self._marker_pub.get_subscription_count() >= 1 and self._command_pub.get_subscription_count() >= 2
        if not ready:
            self.get_logger().info("waiting for the trajectory recorder before the next trial", throttle_duration_sec=5.0)
        return ready

    def _start_trial(self, now: float) -> TrialExecution:
        self._trial_number += 1
        self._counts["trials"] += 1
        trial = self._trial = TrialExecution(self._trainer.policy, now, self.settings.dt_s, self._rng)
        self._publish_marker("start", trial)
        return trial

    def _publish_trial_plan(self) -> None:
        """The LQR-FLM policy's nominal end-effector path on /mbrl/plan; called where the policy
        changes, so the torque loop does no kinematics."""
        ee = self._physics.kinematics.ee_position(self._trainer.policy.x_hat[:, : len(self._joint_names)])
        self._plan_pub.publish(path_msg(ee, self._frame, self.get_clock().now().to_msg()))

    def _abort_trial(self, reason: str) -> None:
        if self._trial is not None:
            self.get_logger().error(f"trial {self._trial_number} aborted: {reason}")
            self._trial = None
            self._phase = "reset"

    def _publish_marker(self, event: str, trial: TrialExecution) -> None:
        marker = TrialMarker(event, self._trial_number, self._iteration, trial.start_s, trial.dt_s, trial.steps,
                             tuple(float(v) for v in self._goal), tuple(self._joint_names), "lqr_flm")
        self._marker_pub.publish(payloads.trial_marker_msg(marker))

    # ---- LQR-FLM update -----------------------------------------------------------------------------
    def _maybe_update(self) -> None:
        s = self.settings
        with self._lock:
            episodes = self._episodes.get(self._iteration, [])
            ready = (not self._updating and s.mode == "lqr_flm" and self._iteration in self._tvlg
                     and len(episodes) >= s.trials_per_iteration)
            if not ready:
                return
            self._updating = True
            batch = Episodes.concatenate(episodes[: s.trials_per_iteration])
            dynamics, meta = self._tvlg[self._iteration]
        threading.Thread(target=self._update, args=(batch, dynamics, meta), name="lqr_flm_update", daemon=True).start()

    def _update(self, episodes: Episodes, dynamics, meta: dict) -> None:
        # Seconds of numpy: ordinary scheduling, so it cannot crowd the sim or learner off a core.
        # It runs while the arm rests between iterations, when a late tick costs nothing.
        if self._realtime:
            use_normal_scheduling()
        s = self.settings
        try:
            self._cost.set_ee_target(episodes.goal)
            stats = self._trainer.update(episodes, dynamics)
        except (ValueError, ArithmeticError) as err:
            self.get_logger().error(f"LQR-FLM update of iteration {self._iteration} failed: {err}; repeating the iteration")
            with self._lock:
                self._episodes.pop(self._iteration, None)
                self._tvlg.pop(self._iteration, None)
                self._trials_run = 0
                self._updating = False
            return
        self._publish_trial_plan()
        final_q = episodes.x[:, -1, : len(self._joint_names)]
        distances = np.linalg.norm(self._physics.kinematics.ee_position(final_q) - episodes.goal, axis=1)
        progress = {
            "iteration": self._iteration,
            "trials": episodes.n_trials,
            "mean_final_distance_m": float(distances.mean()),
            "final_distances_m": distances.tolist(),
            "mean_cost": stats.mean_cost,
            "kl_nats": stats.kl_nats,
            "epsilon_nats": stats.epsilon_nats,
            "step_mult": stats.step_mult,
            "model_version": int(meta.get("model_version", 0)),
            "wall_time_s": time.monotonic() - self._start_wall,
        }
        self._progress_pub.publish(String(data=json.dumps(progress)))
        self.get_logger().info(
            f"iteration {self._iteration}: final distance {distances.mean() * 100:.2f} cm, cost {stats.mean_cost:.1f}, "
            f"KL {stats.kl_nats:.2f}/{stats.epsilon_nats:.2f}"
        )
        with self._lock:
            self._episodes.pop(self._iteration, None)
            self._tvlg.pop(self._iteration, None)
            self._iteration += 1
            if self._phase != "handover":  # which the switch to the final mode below ends
                self._phase = "reset"  # the arm has idled during the update: start the next trial from rest
            self._trials_run = 0
            self._updating = False
        if s.iterations and self._iteration >= s.iterations and s.final_mode != "lqr_flm":
            self.get_logger().info(f"{s.iterations} iterations done: switching to {s.final_mode}")
            self.set_parameters([Parameter("mode", value=s.final_mode)])

    # ---- receding-horizon planning ------------------------------------------------------------------
    def _plan_loop(self) -> None:
        while self._running:
            s = self.settings
            with self._lock:
                x, age, goal = self._x, self._now_s() - self._x_time_s, self._goal
                ensemble, sent = self._ensemble_bytes, self._ensemble_sent
                # Handed over after learning, it plans on a model that has seen trials ending near the
                # goal: one at most an iteration behind the last (the learner trains in the background,
                # up to three behind on 2 cores; measured on the demo, with the disturbance estimate a
                # model three behind still held, four behind did not). Until then a PD hold keeps the
                # arm where the last trial ended.
                final_model = self._handover_q is None or self._ensemble_iteration >= self._iteration - 2
            have_model = s.model_source == "physics" or (ensemble is not None and final_model)
            if s.mode == "lqr_flm" or self._phase != "run" or not have_model or x is None or age > s.state_timeout_s:
                self._plan_wakeup.wait(timeout=0.1)
                self._plan_wakeup.clear()
                continue
            started = time.perf_counter()
            try:
                if s.model_source == "learned" and not sent:
                    self._planner.set_learned_model(ensemble)
                    with self._lock:
                        self._ensemble_sent = self._ensemble_bytes is ensemble
                policy = self._planner.plan(s, x, self._now_s(), goal, self._executed.take())
            except PlanningError as err:
                self._counts["plan_failures"] += 1
                self.get_logger().error(f"planning failed: {err}", throttle_duration_sec=1.0)
                self._plan_wakeup.wait(timeout=1.0 / s.plan_rate_hz)
                continue
            if self._now_s() - policy.t0_s > 0.5 * policy.horizon_s:
                # Planned from a state so old that most of the plan is already in the past.
                self._counts["stale_plans"] += 1
                continue
            self._policy = policy
            elapsed = time.perf_counter() - started
            self._plan_times_s.append(elapsed)
            self._counts["plans"] += 1
            ee = self._physics.kinematics.ee_position(policy.X[:, : len(self._joint_names)])
            self._plan_pub.publish(path_msg(ee, self._frame, self.get_clock().now().to_msg()))
            self._plan_wakeup.wait(timeout=max(0.0, 1.0 / s.plan_rate_hz - elapsed))
            self._plan_wakeup.clear()

    # ---- reporting ----------------------------------------------------------------------------------
    def _publish_diagnostics(self) -> None:
        summary = self._tick_stats.summary()
        # Swap first, then read: the other threads append to whichever deque they see.
        compute, self._tick_compute_s = self._tick_compute_s, self._timings()
        plans, self._plan_times_s = self._plan_times_s, self._timings()
        compute, plans = np.asarray(compute), np.asarray(plans)
        values = {
            "mode": self.settings.mode,
            "phase": self._phase,
            "iteration": self._iteration,
            **summary.as_dict(),
            "tick_compute_p99_ms": float(np.percentile(compute, 99) * 1e3) if compute.size else 0.0,
            "plan_time_mean_ms": float(plans.mean() * 1e3) if plans.size else 0.0,
            "plan_time_max_ms": float(plans.max() * 1e3) if plans.size else 0.0,
            "model_version": self._model_version,
            **self._counts,
        }
        rejected = sum(v for k, v in self._counts.items() if k.startswith("rejected"))
        level = DiagnosticStatus.WARN if rejected or self._counts["stale_state_stops"] else DiagnosticStatus.OK
        self._diag_pub.publish(
            diagnostic_array(self.get_clock().now().to_msg(), status("mpc_controller", self.settings.robot, level, self._phase, values))
        )

    @staticmethod
    def _timings() -> deque:
        return deque(maxlen=10000)

    def shutdown(self) -> None:
        self._running = False
        self._plan_wakeup.set()
        self._payloads.put(None)
        torque_thread, *workers = self._threads
        torque_thread.join(timeout=1.0)
        # ros2_control's effort controller holds the last command forever: leave zeros behind.
        for _ in range(3):
            self._command_pub.publish(command_msg(np.zeros(len(self._joint_names))))
        for thread in workers:
            thread.join(timeout=2.0)
        self._planner.close()


def main(args=None) -> None:
    run_node(MPCController, args)


if __name__ == "__main__":
    main()
