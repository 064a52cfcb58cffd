"""mpc_controller: torques on ``effort_controller/commands`` every tick, whatever planning is doing.

A thread at ``control_rate_hz`` turns the latest joint state into a torque. Which torque, and when
trials, updates, hand-overs and plans happen, :class:`~mbrl_ros.control.learning_run.LearningRun`
decides (ROS-free; ``lqr_flm`` trials and their KL-constrained updates, the hand-over to
``final_mode``, ``ilqr``/``mppi`` receding-horizon plans made in a child process by
:class:`~mbrl_ros.control.planning_loop.PlanningLoop`). This node adapts them to ROS: parameters,
subscriptions, publishers, the reset service, threads and the clock. A stale or missing joint
state means zero torque; torques are clipped and finite; zeros are sent on shutdown; ``~/reset``
(std_srvs/Trigger) sends the arm back to the start configuration. Viewers get ``/mbrl/goal_marker``
and ``/mbrl/plan`` in the URDF's base link, and with ``publish_robot_description`` the URDF.
"""

from __future__ import annotations

import json
import queue
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PointStamped
from nav_msgs.msg import Path
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String, UInt8MultiArray
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker

from mbrl_ros.control.controller_settings import COST_FIELDS, PARAMETERS, ControllerSettings
from mbrl_ros.control.costs import ReachCost
from mbrl_ros.control.disturbance import StepWindows
from mbrl_ros.control.learning_run import LearningRun
from mbrl_ros.control.planner_process import PlannerProcess
from mbrl_ros.control.planning_loop import PlanningLoop
from mbrl_ros.control.torque_loop import TorqueLoop
from mbrl_ros.data.alignment import TrialMarker
from mbrl_ros.dynamics import serialization
from mbrl_ros.dynamics.physics import PhysicsModel
from mbrl_ros.realtime import use_fifo, use_normal_scheduling, use_realtime_process
from mbrl_ros.ros import payloads, qos
from mbrl_ros.ros.conversions import InvalidMessage, JointStateDecoder, command_msg, decode_point, path_msg
from mbrl_ros.ros.diagnostics import diagnostic_array, status
from mbrl_ros.ros.params import LiveSettings, declare_field
from mbrl_ros.ros.spin import ClockAdvanced, run_node
from mbrl_ros.ros.visualization import goal_marker_msg, robot_description_msg
from mbrl_ros.sim.description import robot_description

#: How often the node says, in its log, what the run is waiting for (s).
_WAITING_LOG_PERIOD_S = 5.0


class MPCController(Node):
    def __init__(self) -> None:
        super().__init__("mpc_controller")
        robot = declare_field(self, ControllerSettings(), PARAMETERS, "robot")  # the other defaults follow it
        self._settings = LiveSettings(self, ControllerSettings(robot=robot), PARAMETERS, self._on_settings_changed)
        s = self.settings

        self._physics = PhysicsModel.from_robot(s.robot, dt_s=s.dt_s)
        self._joint_names = list(self._physics.spec.joint_names)
        self._decoder = JointStateDecoder(self._joint_names)
        self._zero = np.zeros(len(self._joint_names))
        self._frame = robot_description(s.robot).base_link  # of everything the node publishes in space
        self._q0 = np.asarray(s.initial_positions_rad, dtype=float)
        self._lock = threading.Lock()  # the latest joint state
        self._x: np.ndarray | None = None
        self._x_time_s = -np.inf
        self._counts = dict.fromkeys(("rejected_joint_states", "rejected_goals", "rejected_models", "rejected_episodes"), 0)
        self._start_wall = time.monotonic()
        self._waiting_logged = ("", -np.inf)  # what the log said the node waits for, and when

        self._command_pub = self.create_publisher(Float64MultiArray, "effort_controller/commands", qos.COMMANDS_PUB)
        self._marker_pub = self.create_publisher(String, "/mbrl/trial", qos.TRIAL_MARKERS)
        self._plan_pub = self.create_publisher(Path, "/mbrl/plan", qos.LATCHED)  # a viewer started later gets it
        self._progress_pub = self.create_publisher(String, "/mbrl/progress", qos.PROGRESS)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", qos.DIAGNOSTICS)
        self._goal_pub = self.create_publisher(Marker, "/mbrl/goal_marker", qos.LATCHED)
        self._on_settings_changed(s, {"goal_xyz_m"}, apply=False)
        if s.publish_robot_description:  # the URDF for viewers of a real arm (the sim publishes its own)
            self.create_publisher(String, "robot_description", qos.LATCHED).publish(robot_description_msg(robot_description(s.robot)))
        self._reset_client = self.create_client(Trigger, s.reset_service) if s.reset_service else None
        self.run = LearningRun(s, self._physics.mass_matrix(self._q0), self._cost(s), self._physics.kinematics.ee_position,
                               self._physics.effort_limit_nm, self._joint_names, self, self._reset_client is not None)

        self._executed = StepWindows(s.dt_s)  # what the arm did under plans: the model's disturbance estimate
        self._torque = TorqueLoop(self.run, self._executed, self._latest_state, lambda u: self._command_pub.publish(
            command_msg(u)), self._now_s, s.control_rate_hz, len(self._joint_names), self.get_logger().error)
        self._planner = PlannerProcess(s.robot, s.dt_s, self._q0)
        self._planning = PlanningLoop(self.run, self._planner, self._executed, lambda: self.settings, self._fresh_state,
                                      lambda policy: self._publish_path(policy.X), self.get_logger().error)
        self._model_version = 0
        # The executor only receives and ticks; decoding payloads (models of several MB, episodes),
        # updating and planning happen in worker threads, so none of it delays a state or a tick.
        self._payloads: queue.Queue = queue.Queue()
        self.create_subscription(JointState, "joint_states", self._on_joint_state, qos.JOINT_STATES_SUB, raw=True)
        self.create_subscription(PointStamped, "/mbrl/goal", self._on_goal, 10)
        self.create_subscription(UInt8MultiArray, "/mbrl/model", lambda m: self._payloads.put((self._on_model, m)), qos.MODEL)
        self.create_subscription(UInt8MultiArray, "/mbrl/episodes", lambda m: self._payloads.put((self._on_episodes, m)),
                                 qos.EPISODES)
        self.create_service(Trigger, "~/reset", self._on_reset_request)
        self.create_timer(1.0, self._publish_diagnostics)

        self._running = True
        # SCHED_FIFO, as ros2_control's own loop uses, for every thread (executor, DDS, workers) so
        # that none holding the GIL is preempted by an ordinary process (see mbrl_ros.realtime). After
        # spawning the planner: it must not inherit it.
        self._realtime = use_realtime_process(s.rt_priority, self.get_logger().warning)
        self._threads = [threading.Thread(target=target, name=name, daemon=True) for target, name in (
            (self._torque_thread, "torque"), (self._planning.run, "planner"), (self._payload_loop, "payloads"))]
        for thread in self._threads:
            thread.start()
        self._publish_path(self.run.trial_plan())
        self.get_logger().info(f"{s.robot}: mode {s.mode}, torques at {s.control_rate_hz:g} Hz, goal {list(s.goal_xyz_m)} m")

    # ---- the run's side (mbrl_ros.control.learning_run.ArmIO) ----------------------------------------
    def publish_marker(self, marker: TrialMarker) -> None:
        self._marker_pub.publish(payloads.trial_marker_msg(marker))

    def request_reset(self) -> bool:
        if not self._reset_client.service_is_ready():
            return False
        future = self._reset_client.call_async(Trigger.Request())
        future.add_done_callback(lambda f: self.run.on_reset_done(f.result() is not None and f.result().success, self._now_s()))
        return True

    def recorder_listening(self) -> bool:
        return self._marker_pub.get_subscription_count() >= 1 and self._command_pub.get_subscription_count() >= 2

    def report(self, message: str) -> None:
        self.get_logger().error(message)

    # ---- parameters ---------------------------------------------------------------------------------
    def _cost(self, settings: ControllerSettings) -> ReachCost:
        return ReachCost.for_model(self._physics, settings.cost(), self._q0)

    @property
    def settings(self) -> ControllerSettings:
        return self._settings.value

    def _on_settings_changed(self, settings: ControllerSettings, changed: set[str], apply: bool = True) -> None:
        if apply:
            self.run.apply_settings(settings, self._now_s(), self._cost(settings) if changed & COST_FIELDS else None)
            self._planning.wake()
        if "goal_xyz_m" in changed:
            self._goal_pub.publish(goal_marker_msg(settings.goal_xyz_m, self._frame, self.get_clock().now().to_msg()))

    # ---- inputs -------------------------------------------------------------------------------------
    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_joint_state(self, raw: bytes) -> None:
        try:
            x = self._decoder.decode_raw(raw)  # a huge one is refused unread: reading it would stall the torque loop
        except InvalidMessage as err:
            self._counts["rejected_joint_states"] += 1
            self.get_logger().warning(f"rejected joint state: {err}", throttle_duration_sec=1.0)
            return
        with self._lock:
            self._x, self._x_time_s = x, self._now_s()

    def _on_goal(self, msg: PointStamped) -> None:
        try:
            goal = decode_point(msg, self._frame)
        except InvalidMessage as err:
            return self._reject_goal(str(err))
        # Through the parameter, so goal_xyz_m always reports the goal being pursued.
        result = self.set_parameters([Parameter("goal_xyz_m", value=[float(v) for v in goal])])[0]
        if not result.successful:
            self._reject_goal(result.reason)

    def _reject_goal(self, reason: str) -> None:
        self._counts["rejected_goals"] += 1
        self.get_logger().warning(f"rejected goal: {reason}", throttle_duration_sec=1.0)

    def _on_reset_request(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.run.request_return(self._now_s())
        return Trigger.Response(success=True, message="returning to the start configuration")

    def _payload_loop(self) -> None:
        while (item := self._payloads.get()) is not None:
            handler, msg = item
            handler(msg)
            job = self.run.take_update()
            if job is not None:
                threading.Thread(target=self._update, args=(job,), name="lqr_flm_update", daemon=True).start()

    def _on_model(self, msg: UInt8MultiArray) -> None:
        try:
            data, meta = payloads.decode_model(msg, self._joint_names)
            if meta["kind"] == "tvlg":
                dynamics, meta = serialization.tvlg_from_bytes(data)
                self.run.on_local_model(int(meta.get("iteration", -1)), dynamics, int(meta.get("model_version", 0)))
            elif meta["kind"] == "ensemble":
                _, meta = serialization.ensemble_from_bytes(data, base_model=self._physics)  # validates it
                self._model_version = int(meta.get("model_version", 0))
                self._planning.set_learned_model(data)  # before the run hears of it: it may plan at once
                self.run.on_ensemble(self._model_version, int(meta.get("iteration", -1)))
            else:
                raise InvalidMessage(f"model kind {meta['kind']!r} is not one the controller uses")
        except Exception as err:  # whatever a payload does to a loader, the worker thread lives on
            self._counts["rejected_models"] += 1
            self.get_logger().warning(f"rejected model: {err}", throttle_duration_sec=1.0)

    def _on_episodes(self, msg: UInt8MultiArray) -> None:
        try:
            self.run.on_episodes(payloads.decode_episodes(msg, self._joint_names))
        except Exception as err:  # as for models
            self._counts["rejected_episodes"] += 1
            self.get_logger().warning(f"rejected episodes: {err}", throttle_duration_sec=1.0)

    def _update(self, job) -> None:
        # Seconds of numpy: ordinary scheduling, so it cannot crowd the sim or learner off a core.
        # It runs while the arm rests between iterations, when a late tick costs nothing.
        if self._realtime:
            use_normal_scheduling()
        report = self.run.run_update(job)
        if report.error:
            return
        self._publish_path(self.run.trial_plan())
        p = report.progress
        self._progress_pub.publish(String(data=json.dumps({**p, "wall_time_s": time.monotonic() - self._start_wall})))
        self.get_logger().info(f"iteration {p['iteration']}: final distance {p['mean_final_distance_m'] * 100:.2f} cm, "
                               f"cost {p['mean_cost']:.1f}, KL {p['kl_nats']:.2f}/{p['epsilon_nats']:.2f}")
        if report.switch_to_mode:
            self.get_logger().info(f"{self.settings.iterations} iterations done: switching to {report.switch_to_mode}")
            self.set_parameters([Parameter("mode", value=report.switch_to_mode)])

    # ---- the torque loop ----------------------------------------------------------------------------
    def _torque_thread(self) -> None:
        if self._realtime:
            use_fifo(self.settings.rt_priority)
        if not self.get_parameter("use_sim_time").value:
            return self._torque.run()
        advanced = ClockAdvanced(self)
        while self._running and self._now_s() == 0.0:
            advanced.event.wait(0.1)  # no /clock yet
        self._torque.run(advanced.event)

    def _latest_state(self) -> tuple[np.ndarray | None, float]:
        with self._lock:
            return self._x, self._x_time_s

    # ---- receding-horizon planning ------------------------------------------------------------------
    def _fresh_state(self) -> tuple[float, np.ndarray | None]:
        now = self._now_s()
        x, x_time_s = self._latest_state()
        return now, (x if now - x_time_s <= self.settings.state_timeout_s else None)

    def _publish_path(self, X: np.ndarray) -> None:
        ee = self._physics.kinematics.ee_position(X[:, : len(self._joint_names)])
        self._plan_pub.publish(path_msg(ee, self._frame, self.get_clock().now().to_msg()))

    # ---- reporting ----------------------------------------------------------------------------------
    def _waiting_for(self) -> str:
        now, x = self._fresh_state()
        return "a joint state on joint_states" if x is None else (self.run.waiting_for(now) or "")

    def _publish_diagnostics(self) -> None:
        run, waiting, wall = self.run.diagnostics(), self._waiting_for(), time.monotonic()
        if waiting and (waiting != self._waiting_logged[0] or wall - self._waiting_logged[1] >= _WAITING_LOG_PERIOD_S):
            self.get_logger().info(f"waiting for {waiting}")  # when it starts, changes, and every few seconds
            self._waiting_logged = (waiting, wall)
        values = {
            "mode": self.settings.mode,
            **run,
            "waiting_for": waiting,
            **self._torque.statistics(),
            **self._planning.take_statistics(),
            "model_version": self._model_version,
            **self._counts,
        }
        rejected = sum(v for k, v in self._counts.items() if k.startswith("rejected"))
        level = DiagnosticStatus.WARN if rejected or run["stale_state_stops"] else DiagnosticStatus.OK
        self._diag_pub.publish(diagnostic_array(self.get_clock().now().to_msg(),
                                                status("mpc_controller", self.settings.robot, level, run["phase"], values)))

    def shutdown(self) -> None:
        self._running = self._torque.running = False
        self._planning.stop()
        self._payloads.put(None)
        torque_thread, *workers = self._threads
        torque_thread.join(timeout=1.0)
        # ros2_control's effort controller holds the last command forever: leave zeros behind.
        for _ in range(3):
            self._command_pub.publish(command_msg(self._zero))
        for thread in workers:
            thread.join(timeout=2.0)
        self._planner.close()


def main(args=None, stop=None) -> None:
    run_node(MPCController, args, stop=stop)


if __name__ == "__main__":
    main()
