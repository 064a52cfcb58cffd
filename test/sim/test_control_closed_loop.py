"""Receding-horizon control of the PyBullet Panda with the Pinocchio model: iLQR, MPPI, CEM.

The planners only see the physics model (MPPI also its linearisation along the plan); the arm is the 1 kHz PyBullet sim (gravity compensated),
stepped ``round(dt_s * physics_rate_hz)`` physics steps per control step.
"""

import numpy as np
import pytest
import torch

from mbrl_ros.control.costs import CostSettings, ReachCost
from mbrl_ros.control.ilqr import ILQR, ILQRSettings
from mbrl_ros.control.linearized import LinearizedRolloutModel
from mbrl_ros.control.mppi import MPPI, MPPISettings
from mbrl_ros.control.sampling import CEM, CEMSettings
from mbrl_ros.dynamics.physics import PhysicsModel
from mbrl_ros.sim.arm import SimSettings, SimulatedArm

DT_S = 0.02
OFFSET_M = np.array([0.1, 0.15, -0.1])  # target relative to the home EE position (reachable)
# Weights for this 0.6 s horizon at dt = 0.02 s (bench/control.py's).
COST_WEIGHTS = dict(ee_weight=100.0, ee_weight_terminal=1000.0, velocity_weight=0.1, velocity_weight_terminal=1.0)


def _run(make_planner, duration_s=2.0, feedback_every_physics_step=False):
    torch.manual_seed(0)
    model = PhysicsModel.from_robot("panda", dt_s=DT_S, substeps=1)
    with SimulatedArm(SimSettings(robot="panda")) as sim:
        x = sim.state().x
        target = sim.ee_position() + OFFSET_M
        cost = ReachCost.for_model(model, CostSettings(ee_target_m=tuple(target), **COST_WEIGHTS))
        planner = make_planner(model, cost, sim)
        n = round(DT_S * sim.settings.physics_rate_hz)
        distances = []
        for k in range(round(duration_s / DT_S)):
            t = k * DT_S
            x = sim.state().x
            policy = planner.optimize(x, t)
            if feedback_every_physics_step:  # the policy runs at 1 kHz between plans
                for i in range(n):
                    sim.step(policy.action(sim.state().x, t + i * sim.dt_s), 1)
            else:
                sim.step(policy.action(x, t), n)
            distances.append(np.linalg.norm(sim.ee_position() - target))
            assert np.abs(sim.state().velocity).max() < 5.0
        return np.array(distances)


def _sigma(model):
    home = np.array(model.spec.home_positions_rad)
    return tuple(float(s) for s in np.sqrt(np.diag(model.mass_matrix(home))))


@pytest.mark.parametrize("high_rate", [False, True])
def test_ilqr_receding_horizon_reaches_target_in_sim(high_rate):
    def make(model, cost, sim):
        lim = sim.effort_limit_nm
        return ILQR(model, cost, ILQRSettings(horizon_steps=30, max_iterations=10), -lim, lim)

    d = _run(make, feedback_every_physics_step=high_rate)
    assert d[0] > 0.02
    assert d[-1] < 0.01  # < 1 cm within 2 s of simulated time
    assert np.all(d[-25:] < 0.01)  # and it stays there for the last 0.5 s


@pytest.mark.parametrize("linearized", [False, True])
def test_mppi_receding_horizon_reaches_target_in_sim(linearized):
    def make(model, cost, sim):
        lim = sim.effort_limit_nm
        settings = MPPISettings(num_samples=256, horizon_steps=30, temperature=1.0, noise_sigma_nm=_sigma(model),
                                noise_smoothing=0.5, seed=0)
        rollout_model = LinearizedRolloutModel(model, settings.horizon_steps) if linearized else model
        return MPPI(rollout_model, cost, settings, -lim, lim)

    d = _run(make)
    assert d[-1] < 0.03
    assert np.mean(d[-20:]) < 0.03


def test_cem_receding_horizon_reaches_target_in_sim():
    def make(model, cost, sim):
        lim = sim.effort_limit_nm
        settings = CEMSettings(num_samples=128, horizon_steps=30, iterations=3, noise_sigma_nm=_sigma(model),
                               noise_smoothing=0.5, seed=0)
        return CEM(model, cost, settings, -lim, lim)

    d = _run(make)
    assert d[-1] < 0.03
    assert np.mean(d[-20:]) < 0.03
