"""The one place that builds a receding-horizon planner from the controller's settings (no ROS).

The planner process of the controller node and the benchmark (``bench/mpc.py``) both call
:func:`build_planner`, so what the benchmark measures is what the node runs.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from .controller_settings import PlannerSettings
from .costs import ReachCost
from .disturbance import DisturbanceModel
from .ilqr import ILQR
from .lg_policy import pd_gain
from .linearized import LinearizedRolloutModel
from .mppi import MPPI

#: Damping ratio of MPPI's feedback (the initial controller's: stable at a 20 Hz zero-order hold).
FEEDBACK_ZETA = 0.9


def build_planner(settings: PlannerSettings, model, physics, q_ref) -> ILQR | MPPI:
    """The planner ``settings`` describe, planning on ``model``.

    Args:
        settings: :meth:`ControllerSettings.planner() <mbrl_ros.control.controller_settings.ControllerSettings.planner>`.
        model: the planning model (learned ensemble or physics); moved to ``settings.device`` when
            it has a ``to`` method, and wrapped in a :class:`DisturbanceModel` when
            ``disturbance_gain > 0`` (then ``planner.model.observe(steps)`` before each plan), and
            for MPPI with ``mppi_rollout: linearized`` in a :class:`LinearizedRolloutModel` around that.
        physics: the robot's :class:`~mbrl_ros.dynamics.physics.PhysicsModel` (torque limits,
            kinematics and joint inertia of the cost, the noise and the feedback).
        q_ref: configuration where the joint inertia ``M(q_ref)`` is taken.
    """
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch sees no CUDA device")
    if hasattr(model, "to"):
        model.to(settings.device)
    if settings.disturbance_gain > 0.0:
        model = DisturbanceModel(model, settings.disturbance_gain)
    cost = ReachCost.for_model(physics, settings.cost, q_ref)
    limit = physics.effort_limit_nm
    if settings.mode == "ilqr":
        return ILQR(model, cost, settings.ilqr, -limit, limit)
    if settings.mode != "mppi":
        raise ValueError(f"no receding-horizon planner for mode {settings.mode!r}")
    M = physics.mass_matrix(np.asarray(q_ref, dtype=float))
    # Per-joint noise ∝ sqrt(M_ii): the shoulder is ~3-5x heavier than the wrist, and equal torque
    # noise would shake the wrist and barely move the shoulder.
    sigma = tuple(float(v) for v in np.asarray(settings.mppi.noise_sigma_nm, dtype=float) * np.sqrt(np.diag(M)))
    omega = settings.mppi_feedback_omega_rad_s
    gain = pd_gain(M, omega, FEEDBACK_ZETA) if omega > 0.0 else None
    if settings.mppi_rollout == "linearized":
        model = LinearizedRolloutModel(model, settings.mppi.horizon_steps)
    return MPPI(model, cost, replace(settings.mppi, noise_sigma_nm=sigma), -limit, limit, device=settings.device,
                feedback_gain=gain)
