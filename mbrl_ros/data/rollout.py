"""Run a controller in the simulated arm and record the trials as :class:`Episodes` (no ROS).

A controller is any callable ``controller(x, t) -> u`` with ``x`` the state ``(nx,)`` and ``t`` the
control-step index; ``u`` is held for ``n_steps = round(dt_s * physics_rate_hz)`` physics steps
(a zero-order hold at the control period ``dt_s``).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from mbrl_ros.data.episodes import Episodes
from mbrl_ros.sim.arm import SimulatedArm

Controller = Callable[[np.ndarray, int], np.ndarray]


def physics_steps_per_control_step(arm: SimulatedArm, dt_s: float) -> int:
    """``round(dt_s * physics_rate_hz)``; raises ``ValueError`` if ``dt_s`` is not a positive multiple."""
    if not np.isfinite(dt_s) or dt_s <= 0.0:
        raise ValueError(f"dt_s must be positive, got {dt_s}")
    n = int(round(dt_s * arm.settings.physics_rate_hz))
    if n < 1 or abs(n / arm.settings.physics_rate_hz - dt_s) > 1e-9:
        raise ValueError(f"dt_s={dt_s} is not a multiple of the physics step {1.0 / arm.settings.physics_rate_hz}")
    return n


def rollout(
    arm: SimulatedArm,
    controller: Controller,
    horizon_steps: int,
    dt_s: float,
    goal: Sequence[float] | np.ndarray = (),
    reset_positions_rad: np.ndarray | None = None,
    reset_noise_rad: float | None = None,
    metadata: dict | None = None,
) -> Episodes:
    """Reset the arm, run ``controller`` for ``horizon_steps`` control steps, return one trial.

    Torques are clipped to the arm's effort limits before they are recorded, so ``u`` is what the
    arm applied (on top of gravity compensation when the arm compensates gravity). Metadata records
    the robot, joint names, ``dt_s``, gravity compensation and the final end-effector position.
    """
    if horizon_steps < 1:
        raise ValueError(f"horizon_steps must be >= 1, got {horizon_steps}")
    n_sub = physics_steps_per_control_step(arm, dt_s)
    state = arm.reset(reset_positions_rad, reset_noise_rad)
    nx = 2 * arm.nq
    x = np.zeros((horizon_steps + 1, nx))
    u = np.zeros((horizon_steps, arm.nq))
    stamps = np.zeros(horizon_steps + 1)
    x[0] = state.x
    stamps[0] = state.time_s
    for t in range(horizon_steps):
        command = np.asarray(controller(x[t].copy(), t), dtype=float)
        if command.shape != (arm.nq,) or not np.all(np.isfinite(command)):
            raise ValueError(f"controller returned an invalid torque at step {t}: {command.tolist()}")
        u[t] = arm.clip_torque(command)
        state = arm.step(u[t], n_sub)
        x[t + 1] = state.x
        stamps[t + 1] = state.time_s
    meta = {
        "robot": arm.spec.name,
        "joint_names": list(arm.joint_names),
        "dt_s": float(dt_s),
        "gravity_compensated": bool(arm.gravity_compensated),
        "final_ee_positions_m": [arm.ee_position().tolist()],
    }
    meta.update(metadata or {})
    return Episodes(x[None], u[None], stamps[None], np.asarray(goal, dtype=float), meta)


def rollouts(
    arm: SimulatedArm,
    controller_factory: Callable[[int], Controller],
    n_trials: int,
    horizon_steps: int,
    dt_s: float,
    goal: Sequence[float] | np.ndarray = (),
    reset_positions_rad: np.ndarray | None = None,
    reset_noise_rad: float | None = None,
    metadata: dict | None = None,
) -> Episodes:
    """``n_trials`` trials, trial ``i`` run with ``controller_factory(i)``; final EE positions are listed."""
    trials = [
        rollout(arm, controller_factory(i), horizon_steps, dt_s, goal, reset_positions_rad, reset_noise_rad, metadata)
        for i in range(n_trials)
    ]
    out = Episodes.concatenate(trials)
    out.metadata["final_ee_positions_m"] = [tr.metadata["final_ee_positions_m"][0] for tr in trials]
    return out
