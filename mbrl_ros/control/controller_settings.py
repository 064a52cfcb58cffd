"""Every setting of the arm controller in one frozen dataclass (no ROS).

Field names are the ``mpc_controller`` node's parameter names; :data:`PARAMETERS` describes each
(meaning, range or choices, whether it can change while running). The node declares its
parameters from here and validates a proposed change by building a new
:class:`ControllerSettings`, so an invalid value is refused with this module's ``ValueError``
message as the reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from mbrl_ros.control.costs import CostSettings
from mbrl_ros.control.ilqr import ILQRSettings
from mbrl_ros.control.lg_policy import InitialControllerSettings
from mbrl_ros.control.lqr_flm import LQRFLMSettings
from mbrl_ros.control.modes import MODEL_SOURCES, MODES
from mbrl_ros.control.mppi import MPPISettings
from mbrl_ros.settings import ParameterInfo, check_parameters
from mbrl_ros.sim.robots import ROBOTS, robot_spec

DEVICES = ("cpu", "cuda")
MPPI_ROLLOUTS = ("model", "linearized")
#: The fields :meth:`ControllerSettings.cost` reads: a change to one of them rebuilds the cost.
COST_FIELDS = frozenset({"goal_xyz_m", "ee_weight", "ee_weight_terminal", "effort_weight", "velocity_weight",
                         "velocity_weight_terminal"})


@dataclass(frozen=True)
class PlannerSettings:
    """Everything that shapes a receding-horizon planner (hashable: the planner process keeps a
    planner for as long as these stay equal). Built by :meth:`ControllerSettings.planner`; see
    :func:`mbrl_ros.control.planners.build_planner`.

    Attributes:
        mode: ``ilqr`` or ``mppi``; model_source: ``learned`` or ``physics``; device: ``cpu``/``cuda``.
        cost, ilqr, mppi: the sub-settings. ``mppi.noise_sigma_nm`` is per sqrt(kg·m²) of joint
            inertia: the planner's per-joint noise is it times ``sqrt(M_ii(q_ref))``.
        mppi_feedback_omega_rad_s: natural frequency of MPPI's mass-matrix PD feedback (0: none).
        mppi_rollout: what MPPI's samples are rolled out on: ``model`` (the planning model itself)
            or ``linearized`` (its time-varying linearisation along the plan's nominal).
        disturbance_gain: offset-free planning with the model's recent error (0: off).
    """

    mode: str
    model_source: str
    device: str
    cost: CostSettings
    ilqr: ILQRSettings
    mppi: MPPISettings
    mppi_feedback_omega_rad_s: float
    mppi_rollout: str
    disturbance_gain: float


@dataclass(frozen=True)
class ControllerSettings:
    """Controller settings; see :data:`PARAMETERS` for each field's meaning and unit."""

    robot: str = "panda"
    mode: str = "lqr_flm"
    final_mode: str = "ilqr"
    model_source: str = "learned"
    control_rate_hz: float = 250.0
    plan_rate_hz: float = 20.0
    dt_s: float = 0.05
    horizon_steps: int = 30
    ilqr_max_iterations: int = 2
    ilqr_reuse_jacobians: bool = True
    mppi_samples: int = 512
    mppi_iterations: int = 3
    mppi_temperature: float = 0.1
    mppi_noise_scale: float = 0.3
    mppi_noise_smoothing: float = 0.5
    mppi_feedback_omega_rad_s: float = 3.0
    mppi_rollout: str = "linearized"
    device: str = "cpu"
    goal_xyz_m: tuple[float, ...] = (0.376, 0.257, 0.542)
    ee_weight: float = CostSettings.ee_weight
    ee_weight_terminal: float = CostSettings.ee_weight_terminal
    effort_weight: float = CostSettings.effort_weight
    velocity_weight: float = CostSettings.velocity_weight
    velocity_weight_terminal: float = CostSettings.velocity_weight_terminal
    mpc_velocity_weight: float = 0.2
    disturbance_gain: float = 0.3
    kl_step: float = 0.2
    trial_steps: int = 100
    trials_per_iteration: int = 5
    iterations: int = 10
    init_pd_omega_rad_s: float = 6.0
    init_noise_scale: float = 2.0
    initial_positions_rad: tuple[float, ...] = ()
    reset_service: str = "/sim_node/reset"
    settle_s: float = 0.3
    start_tolerance_rad: float = 0.02
    episode_timeout_s: float = 10.0
    handover_model_lag_iterations: int = 1
    state_timeout_s: float = 0.1
    rt_priority: int = 50
    seed: int = 0
    publish_robot_description: bool = False

    def __post_init__(self) -> None:
        check_parameters(self, PARAMETERS)
        if not self.initial_positions_rad:  # the robot's home pose, from the robot registry
            object.__setattr__(self, "initial_positions_rad", tuple(robot_spec(self.robot).home_positions_rad))
        q0 = np.asarray(self.initial_positions_rad, dtype=float)
        if q0.shape != (robot_spec(self.robot).nq,) or not np.all(np.isfinite(q0)):
            raise ValueError(f"initial_positions_rad must be {robot_spec(self.robot).nq} finite values for {self.robot}, "
                             f"got {list(self.initial_positions_rad)}")
        if self.plan_rate_hz > self.control_rate_hz:
            raise ValueError(f"plan_rate_hz {self.plan_rate_hz} must not exceed control_rate_hz {self.control_rate_hz}")
        goal = np.asarray(self.goal_xyz_m, dtype=float)
        if goal.shape != (3,) or not np.all(np.isfinite(goal)):
            raise ValueError(f"goal_xyz_m must be 3 finite values, got {list(self.goal_xyz_m)}")
        if np.linalg.norm(goal[:2]) > 1.2 or not -0.5 <= goal[2] <= 1.5:
            raise ValueError(f"goal_xyz_m {list(self.goal_xyz_m)} is out of any arm's reach")
        # The sub-settings validate their own fields (their errors name the field).
        self.planner(), self.lqr_flm(), self.initial_controller()

    def replace(self, **changes) -> "ControllerSettings":
        return ControllerSettings(**{**asdict(self), **changes})

    def cost(self) -> CostSettings:
        return CostSettings(ee_target_m=tuple(float(v) for v in self.goal_xyz_m), ee_weight=self.ee_weight,
                            ee_weight_terminal=self.ee_weight_terminal, effort_weight=self.effort_weight,
                            velocity_weight=self.velocity_weight, velocity_weight_terminal=self.velocity_weight_terminal)

    def ilqr(self) -> ILQRSettings:
        return ILQRSettings(horizon_steps=self.horizon_steps, max_iterations=self.ilqr_max_iterations,
                            reuse_model_jacobians=self.ilqr_reuse_jacobians)

    def mppi(self) -> MPPISettings:
        """MPPI's settings; ``noise_sigma_nm`` per sqrt(kg·m²) of joint inertia (see :class:`PlannerSettings`)."""
        return MPPISettings(num_samples=self.mppi_samples, horizon_steps=self.horizon_steps,
                            temperature=self.mppi_temperature, temperature_relative=True,
                            noise_sigma_nm=self.mppi_noise_scale, noise_smoothing=self.mppi_noise_smoothing,
                            iterations=self.mppi_iterations, seed=self.seed)

    def planner(self) -> PlannerSettings:
        """The receding-horizon planner these settings describe (ilqr/mppi modes and final modes)."""
        return PlannerSettings(mode=self.final_mode if self.mode == "lqr_flm" else self.mode,
                               model_source=self.model_source, device=self.device,
                               cost=replace(self.cost(), velocity_weight=self.mpc_velocity_weight),
                               ilqr=self.ilqr(), mppi=self.mppi(), mppi_feedback_omega_rad_s=self.mppi_feedback_omega_rad_s,
                               mppi_rollout=self.mppi_rollout, disturbance_gain=self.disturbance_gain)

    def lqr_flm(self) -> LQRFLMSettings:
        return LQRFLMSettings(kl_step_nats_per_step=self.kl_step)

    def initial_controller(self) -> InitialControllerSettings:
        return InitialControllerSettings(omega_rad_s=self.init_pd_omega_rad_s, noise_scale_rad_s2=self.init_noise_scale)


PARAMETERS: dict[str, ParameterInfo] = {
    "robot": ParameterInfo("Robot the controller drives (URDF for limits, kinematics, inertia).", read_only=True,
                           choices=tuple(ROBOTS)),
    "mode": ParameterInfo("lqr_flm (learn by trials), ilqr or mppi (receding horizon on the global model).",
                          choices=MODES),
    "final_mode": ParameterInfo("Mode after `iterations` LQR-FLM iterations: hold the goal with ilqr or mppi.",
                                choices=MODES),
    "model_source": ParameterInfo("ilqr/mppi model: learned (the ensemble from /mbrl/model) or physics (URDF).",
                                  choices=MODEL_SOURCES),
    "control_rate_hz": ParameterInfo("Torque publishing rate (Hz).", 10.0, 2000.0, read_only=True),
    "plan_rate_hz": ParameterInfo("Replanning rate of ilqr/mppi (Hz).", 0.5, 500.0),
    "dt_s": ParameterInfo("Model and policy step (s).", 0.005, 0.5, read_only=True),
    "horizon_steps": ParameterInfo("ilqr/mppi horizon (steps of dt_s).", 2, 500),
    "ilqr_max_iterations": ParameterInfo("iLQR iterations per plan (warm-started from the previous plan).", 1, 100),
    "ilqr_reuse_jacobians": ParameterInfo(
        "iLQR linearises the model once per plan: the later iterations re-expand the cost but keep the first "
        "iteration's model Jacobians (on a network, the linearisation is most of a plan's time)."),
    "mppi_samples": ParameterInfo("MPPI samples K per iteration.", 8, 16384),
    "mppi_iterations": ParameterInfo("MPPI sampling iterations per plan.", 1, 100),
    "mppi_temperature": ParameterInfo(
        "MPPI temperature lambda as a fraction of each iteration's cost spread (median - min sampled cost).", 1e-4, 1e4),
    "mppi_noise_scale": ParameterInfo(
        "MPPI torque noise std per sqrt(kg·m²) of joint inertia: joint i gets this times sqrt(M_ii) N·m.", 1e-6, 100.0),
    "mppi_noise_smoothing": ParameterInfo("MPPI noise AR(1) coefficient over time steps (0: white).", 0.0, 0.99),
    "mppi_feedback_omega_rad_s": ParameterInfo(
        "MPPI samples and the returned policy apply a mass-matrix PD around the plan with this natural frequency "
        "(rad/s, damping ratio 0.9; 0: open loop).", 0.0, 50.0),
    "mppi_rollout": ParameterInfo(
        "What MPPI's samples are rolled out on: model (the planning model, every sample through the network) or "
        "linearized (the model's time-varying linearisation along the plan's nominal, which is rolled out on the "
        "model itself).", choices=MPPI_ROLLOUTS),
    "device": ParameterInfo("Torch device of the ilqr/mppi planner and the learned model.", choices=DEVICES),
    "goal_xyz_m": ParameterInfo("End-effector target in the base frame (m); /mbrl/goal overrides it."),
    "ee_weight": ParameterInfo("Running end-effector distance weight (1/m²).", 0.0, 1e9),
    "ee_weight_terminal": ParameterInfo("Terminal end-effector distance weight (1/m²).", 0.0, 1e9),
    "effort_weight": ParameterInfo("Torque weight per kg·m² of joint inertia.", 0.0, 1e6),
    "velocity_weight": ParameterInfo("Running joint velocity weight of the LQR-FLM trials (s²/rad²).", 0.0, 1e6),
    "mpc_velocity_weight": ParameterInfo(
        "ilqr/mppi: running joint velocity weight (s²/rad²). Once the end effector is at the goal, motion in the "
        "redundant arm's null space costs only this; at 0.01 plans swung the arm off the goal after fast reaches.",
        0.0, 1e6),
    "velocity_weight_terminal": ParameterInfo("Terminal joint velocity weight (s²/rad²).", 0.0, 1e6),
    "disturbance_gain": ParameterInfo(
        "ilqr/mppi: weight of each executed step's model error in the disturbance the plans include "
        "(offset-free MPC; 0: plan with the model as it is).", 0.0, 1.0),
    "kl_step": ParameterInfo("LQR-FLM KL step per time step (nats).", 1e-4, 100.0),
    "trial_steps": ParameterInfo("LQR-FLM trial length T (steps of dt_s).", 2, 10000, read_only=True),
    "trials_per_iteration": ParameterInfo("Trials per LQR-FLM iteration.", 2, 100, read_only=True),
    "iterations": ParameterInfo("LQR-FLM iterations before final_mode (0: never switch).", 0, 100000),
    "init_pd_omega_rad_s": ParameterInfo("Initial controller PD natural frequency (rad/s).", 0.1, 100.0, read_only=True),
    "init_noise_scale": ParameterInfo("Initial exploration noise per sqrt(joint inertia).", 1e-6, 100.0, read_only=True),
    "initial_positions_rad": ParameterInfo(
        "Start configuration of trials and resets (rad, one per joint); empty: the robot's home pose.", read_only=True),
    "reset_service": ParameterInfo("std_srvs/Trigger resetting the arm between trials; empty: drive back with a PD.", read_only=True),
    "settle_s": ParameterInfo("Wait at the start configuration before a trial or a plan starts (s).", 0.0, 10.0),
    "start_tolerance_rad": ParameterInfo(
        "Without a reset service, the PD drive back counts as arrived when every joint is this close to the start "
        "(rad) and slower than this (rad/s).", 1e-4, 1.0),
    "episode_timeout_s": ParameterInfo(
        "An episode the recorder has not delivered this long after its trial ended is lost: the trial is run again (s).",
        0.5, 600.0),
    "handover_model_lag_iterations": ParameterInfo(
        "After the last LQR-FLM iteration the final mode plans only on an ensemble trained on trials at most this many "
        "iterations older than the last; until then a PD hold keeps the arm where the last trial ended.", 0, 1000),
    "state_timeout_s": ParameterInfo("Older joint states stop torque output (s).", 0.001, 10.0),
    "rt_priority": ParameterInfo(
        "SCHED_FIFO priority of the torque thread where permitted; the node's other threads run one below "
        "(0: normal scheduling).", 0, 99, read_only=True),
    "seed": ParameterInfo("Seed of exploration noise and sampling planners.", 0, 2**31 - 1, read_only=True),
    "publish_robot_description": ParameterInfo(
        "Publish the robot's URDF on robot_description (transient local), for a real arm whose driver does not; "
        "sim_node publishes it for the simulated one.", read_only=True),
}
