"""sim_node: the PyBullet arm behind the ros2_control topics a real torque-controlled arm speaks.

Publishes ``joint_states`` (sensor_msgs/JointState) at ``publish_rate_hz``; applies torques from
``effort_controller/commands`` (std_msgs/Float64MultiArray, one value per arm joint in the published
joint order) for at most ``command_timeout_s`` of simulated time, then zero torque; rejects and
counts wrong-length or non-finite commands; serves ``~/reset`` (std_srvs/Trigger); publishes
``/diagnostics`` and, with ``publish_clock``, ``/clock`` so ``use_sim_time`` nodes follow it.
For viewers it publishes the URDF it loaded as ``robot_description`` (std_msgs/String, transient
local) and, at ``link_markers_rate_hz``, ``robot_markers`` (visualization_msgs/MarkerArray): each
link's mesh at its pose in the base link's frame, so RViz draws the arm without TF.
With ``mismatch`` (a profile) and the options it sets the defaults of (:mod:`mbrl_ros.sim.mismatch`),
the arm differs from its URDF: a payload, joint friction, command latency, torque gain errors,
noise on the published joint states; ``/diagnostics`` reports every option.

Physics runs in its own thread paced against the wall clock (``real_time_factor``; 0 = as fast
as possible); the executor thread only receives commands, serves resets and reports diagnostics.
Like the hardware it stands in for, it must not be slowed by the computer's other work: paced, it
runs SCHED_FIFO where permitted (``rt_priority``), or a busy learner delays the commands it applies.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from mbrl_ros.ros import qos
from mbrl_ros.ros.conversions import InvalidMessage, decode_command, joint_state_msg, time_msg
from mbrl_ros.ros.diagnostics import diagnostic_array, status
from mbrl_ros.ros.params import LiveSettings, declare_field
from mbrl_ros.realtime import PeriodStats, use_fifo, use_realtime_process
from mbrl_ros.ros.spin import run_node
from mbrl_ros.ros.visualization import link_markers_msg, robot_description_msg
from mbrl_ros.sim import SIM_PARAMETERS, SimNodeSettings, SimulatedArm, robot_spec
from mbrl_ros.sim.mismatch import MISMATCH_PARAMETERS, MismatchSettings, mismatch_profile
from mbrl_ros.sim.description import robot_description

#: A pacing loop that falls further behind than this re-synchronises instead of bursting.
_MAX_LAG_S = 0.1


class SimNode(Node):
    def __init__(self) -> None:
        super().__init__("sim_node")
        # The robot first: the gravity compensation and start pose default to its own.
        robot = declare_field(self, SimNodeSettings(), SIM_PARAMETERS, "robot")
        self._settings = LiveSettings(self, SimNodeSettings(robot=robot), SIM_PARAMETERS, self._on_settings_changed)
        settings = self._settings.value
        # The profile first: it gives the other mismatch options their defaults.
        profile = declare_field(self, MismatchSettings(), MISMATCH_PARAMETERS, "mismatch")
        self._mismatch = LiveSettings(self, mismatch_profile(profile, robot_spec(robot).nq), MISMATCH_PARAMETERS,
                                      self._on_mismatch_changed)
        self._command_timeout_s = settings.command_timeout_s
        self._publish_rate_hz = settings.publish_rate_hz
        self._steps_per_tick = settings.steps_per_tick
        self._real_time_factor = settings.real_time_factor
        self._publish_clock = settings.publish_clock

        self._arm = SimulatedArm(settings, self._mismatch.value)
        self._lock = threading.Lock()
        self._command = np.zeros(self._arm.nq)
        self._command_time_s = -np.inf
        self._command_fresh = False
        self._sim_clock_s = 0.0  # never reset, so /clock and stamps stay monotonic across resets
        self._counts = {"commands_received": 0, "commands_rejected": 0, "command_timeouts": 0, "resets": 0, "overruns": 0}
        self._period_stats = PeriodStats(window=int(max(2 * self._publish_rate_hz, 10)))
        self._wall_start = time.monotonic()

        self._joint_pub = self.create_publisher(JointState, "joint_states", qos.JOINT_STATES_PUB)
        self._clock_pub = self.create_publisher(Clock, "/clock", qos.CLOCK) if self._publish_clock else None
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", qos.DIAGNOSTICS)
        self.create_subscription(Float64MultiArray, "effort_controller/commands", self._on_command, qos.COMMANDS)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_timer(settings.diagnostics_period_s, self._publish_diagnostics)
        self._description = robot_description(settings.robot)
        self._description_pub = self.create_publisher(String, "robot_description", qos.LATCHED)
        self._description_pub.publish(robot_description_msg(self._description))
        if settings.link_markers_rate_hz > 0:
            self._markers_pub = self.create_publisher(MarkerArray, "robot_markers", qos.LINK_MARKERS)
            self.create_timer(1.0 / settings.link_markers_rate_hz, self._publish_link_markers)

        self._running = True
        # SCHED_FIFO when paced: at normal priority, on 2 cores with the learner training, a step's new
        # torque reaches the physics 2-44 ms (median 4, p90 10-16) of simulated time after the
        # controller sends it, and the recorded (state, torque) pairs do not describe the arm's motion.
        self._rt_priority = settings.rt_priority if self._real_time_factor > 0 else 0  # unpaced, FIFO would starve the rest
        self._realtime = use_realtime_process(self._rt_priority, self.get_logger().warning)
        self._thread = threading.Thread(target=self._physics_loop, name="physics", daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"{settings.robot}: {self._arm.nq} joints, physics {settings.physics_rate_hz:g} Hz, joint_states "
            f"{self._publish_rate_hz:g} Hz, real-time factor {self._real_time_factor:g}, gravity compensation "
            f"{'emulated (commands are added to g(q))' if self._arm.gravity_compensated else 'off'}, model mismatch "
            f"{self._mismatch.value.mismatch if self._mismatch.value.active else 'none'}"
        )

    def _on_settings_changed(self, settings: SimNodeSettings, changed: set[str]) -> None:
        # command_timeout_s is the only one that may change while running.
        self._command_timeout_s = settings.command_timeout_s

    def _on_mismatch_changed(self, mismatch: MismatchSettings, changed: set[str]) -> None:
        with self._lock:  # the live ones: friction, torque gains, noise
            self._arm.set_mismatch(mismatch)

    def _on_command(self, msg: Float64MultiArray) -> None:
        try:
            tau = decode_command(msg, self._arm.nq)
        except InvalidMessage as err:
            with self._lock:
                self._counts["commands_rejected"] += 1
            self.get_logger().warning(f"rejected command: {err}", throttle_duration_sec=1.0)
            return
        with self._lock:
            self._command = tau
            self._command_time_s = self._sim_clock_s
            self._command_fresh = True
            self._counts["commands_received"] += 1

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._lock:
            state = self._arm.reset()
            self._command[:] = 0.0
            self._command_fresh = False
            self._counts["resets"] += 1
        response.success = True
        response.message = f"reset to {np.round(state.position, 4).tolist()}"
        return response

    def _stamp(self):
        return time_msg(self._sim_clock_s) if self._publish_clock else self.get_clock().now().to_msg()

    def _physics_loop(self) -> None:
        if self._realtime:
            use_fifo(self._rt_priority)
        tick_s = 1.0 / self._publish_rate_hz
        wall_tick_s = tick_s / self._real_time_factor if self._real_time_factor > 0 else 0.0
        deadline = time.monotonic()
        while self._running:
            with self._lock:
                if self._command_fresh and self._sim_clock_s - self._command_time_s > self._command_timeout_s:
                    self._command_fresh = False
                    self._counts["command_timeouts"] += 1
                tau = self._command if self._command_fresh else np.zeros(self._arm.nq)
                state = self._arm.step(tau, self._steps_per_tick)
                self._sim_clock_s += tick_s
                stamp = self._stamp()
            if self._clock_pub is not None:
                self._clock_pub.publish(Clock(clock=stamp))
            self._joint_pub.publish(
                joint_state_msg(self._arm.joint_names, state.position, state.velocity, state.effort, stamp)
            )
            now = time.monotonic()
            self._period_stats.tick(now)
            if wall_tick_s > 0.0:
                deadline += wall_tick_s
                if now - deadline > _MAX_LAG_S:
                    self._counts["overruns"] += 1
                    deadline = now
                elif deadline > now:
                    time.sleep(deadline - now)

    def _publish_link_markers(self) -> None:
        if self._markers_pub.get_subscription_count() == 0:
            return  # nobody is looking: no PyBullet calls taken from the physics thread
        with self._lock:
            poses, stamp = self._arm.link_poses(), self._stamp()
        self._markers_pub.publish(link_markers_msg(self._description, poses, stamp))

    def _publish_diagnostics(self) -> None:
        summary = self._period_stats.summary()
        wall = time.monotonic() - self._wall_start
        with self._lock:
            counts = dict(self._counts)
            sim_s = self._sim_clock_s
        values = {
            "robot": self._arm.spec.name,
            "gravity_compensation_emulated": self._arm.gravity_compensated,
            "publish_rate_target_hz": self._publish_rate_hz,
            **summary.as_dict(),
            "real_time_factor_target": self._real_time_factor,
            "real_time_factor_achieved": sim_s / wall if wall > 0 else 0.0,
            "sim_time_s": sim_s,
            **counts,
            "mismatch_active": self._arm.mismatch.active,
            **self._arm.mismatch.as_dict(),
        }
        level = DiagnosticStatus.OK
        message = "running"
        if counts["commands_rejected"]:
            level, message = DiagnosticStatus.WARN, "commands rejected"
        self._diag_pub.publish(
            diagnostic_array(self.get_clock().now().to_msg(), status("sim_node: arm", self._arm.spec.name, level, message, values))
        )

    def shutdown(self) -> None:
        self._running = False
        self._thread.join(timeout=2.0)
        self._arm.close()


def main(args=None, stop=None) -> None:
    run_node(SimNode, args, stop=stop)


if __name__ == "__main__":
    main()
