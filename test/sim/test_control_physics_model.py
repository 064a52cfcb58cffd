"""Pinocchio physics model and reach cost of the Panda: derivatives, torch twins, agreement with PyBullet."""

import numpy as np
import pytest
import torch

from mbrl_ros.control.costs import CostSettings, ReachCost
from mbrl_ros.dynamics.physics import PhysicsModel
from mbrl_ros.sim.arm import SimSettings, SimulatedArm

HOME = np.array([0.0, -0.5, 0.0, -2.0, 0.0, 1.6, 0.8])


def _rel_err(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)


def _fd_jacobian(f, x, eps=1e-6):
    cols = []
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = eps
        cols.append((f(x + e) - f(x - e)) / (2 * eps))
    return np.stack(cols, axis=-1)


@pytest.fixture(scope="module")
def sim():
    arm = SimulatedArm(SimSettings(robot="panda"))
    yield arm
    arm.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(dt_s=0.05),
        dict(dt_s=0.02, substeps=1, joint_damping_nms_per_rad=0.5),
        dict(dt_s=0.05, gravity_compensated=False, substeps=3),
    ],
)
def test_physics_linearize_matches_finite_differences(kwargs):
    model = PhysicsModel.from_robot("panda", **kwargs)
    assert (model.nx, model.nu, model.dt_s) == (14, 7, kwargs["dt_s"])
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = np.concatenate([HOME + 0.3 * rng.normal(size=7), rng.normal(size=7)])
        u = rng.normal(size=7) * 3
        A, B = model.linearize(x, u)
        assert _rel_err(A, _fd_jacobian(lambda z: model.step(z, u), x)) < 1e-4
        assert _rel_err(B, _fd_jacobian(lambda v: model.step(x, v), u)) < 1e-4
        x_next, A2, B2 = model.step_and_linearize(x, u)
        assert np.abs(x_next - model.step(x, u)).max() < 1e-12 and np.allclose(A2, A) and np.allclose(B2, B)
    # Batched over leading dims.
    X = np.stack([np.concatenate([HOME, rng.normal(size=7)]) for _ in range(6)]).reshape(2, 3, 14)
    U = rng.normal(size=(2, 3, 7))
    A, B = model.linearize(X, U)
    assert A.shape == (2, 3, 14, 14) and B.shape == (2, 3, 14, 7)
    A1, B1 = model.linearize(X[1, 2], U[1, 2])
    assert np.allclose(A[1, 2], A1) and np.allclose(B[1, 2], B1)


def test_physics_step_batched_numpy_and_torch_agree():
    model = PhysicsModel.from_robot("panda", dt_s=0.05)
    rng = np.random.default_rng(1)
    X = np.concatenate([HOME + 0.2 * rng.normal(size=(64, 7)), rng.normal(size=(64, 7))], axis=1)
    U = rng.normal(size=(64, 7)) * 2
    batched = model.step(X, U)
    single = np.stack([model.step(x, u) for x, u in zip(X[:5], U[:5])])
    assert np.abs(batched[:5] - single).max() < 1e-12
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-4)):
        out = model.step_torch(torch.tensor(X, dtype=dtype), torch.tensor(U, dtype=dtype))
        assert out.dtype == dtype and out.shape == (64, 14)
        assert np.abs(out.double().numpy() - batched).max() < tol * max(1.0, np.abs(batched).max())
    with pytest.raises(ValueError):
        model.step(X[:, :7], U)
    with pytest.raises(ValueError):
        PhysicsModel.from_robot("panda", substeps=0)


def test_physics_model_matches_pybullet(sim):
    model = PhysicsModel.from_robot("panda", dt_s=0.05)  # default: 10 ms Euler substeps
    assert model.substeps == 5 and model.gravity_compensated
    q = HOME + 0.1
    assert np.abs(model.mass_matrix(q) - sim.mass_matrix(q)).max() < 1e-6
    assert np.abs(model.gravity_torque(q) - sim.gravity_torque(q)).max() < 1e-6
    assert np.allclose(model.effort_limit_nm, sim.effort_limit_nm)
    assert np.allclose(model.position_lower_rad, sim.position_lower_rad)
    rng = np.random.default_rng(2)
    sqrt_m = np.sqrt(np.diag(model.mass_matrix(HOME)))
    errors = []
    sim.reset()
    x = sim.state().x
    for _ in range(10):
        u = rng.normal(size=7) * sqrt_m
        pred = model.step(x, u)
        x = sim.step(u, 50).x
        errors.append(np.abs(pred - x).max())
    assert np.max(errors) < 0.03, errors  # rad and rad/s after 0.05 s
    assert np.abs(model.kinematics.ee_position(x[:7]) - sim.ee_position()).max() < 1e-6


def test_kinematics_torch_and_jacobian():
    model = PhysicsModel.from_robot("panda")
    kin = model.kinematics
    rng = np.random.default_rng(3)
    Q = HOME + 0.5 * rng.normal(size=(4, 5, 7))
    p = kin.ee_position(Q)
    assert p.shape == (4, 5, 3)
    assert np.abs(kin.ee_position_torch(torch.tensor(Q)).numpy() - p).max() < 1e-12
    assert np.abs(kin.ee_position_torch(torch.tensor(Q, dtype=torch.float32)).double().numpy() - p).max() < 1e-5
    J = kin.ee_jacobian(Q[0, 0])
    assert _rel_err(J, _fd_jacobian(kin.ee_position, Q[0, 0])) < 1e-6


def _cost_and_traj(ee=True):
    model = PhysicsModel.from_robot("panda", dt_s=0.05)
    settings = CostSettings(
        ee_target_m=(0.5, 0.1, 0.4) if ee else None, joint_target_rad=tuple(HOME), joint_weight=1.0,
        joint_weight_terminal=3.0, velocity_weight=0.2, limit_weight=50.0, limit_margin_rad=0.1,
    )
    cost = ReachCost.for_model(model, settings)
    rng = np.random.default_rng(4)
    T = 4
    X = np.concatenate([HOME + 0.4 * rng.normal(size=(T + 1, 7)), rng.normal(size=(T + 1, 7))], axis=1)
    X[1, 0] = model.position_upper_rad[0] - 0.05  # inside the barrier band (0.05 past its start)
    X[2, 3] = model.position_lower_rad[3] + 0.02
    U = rng.normal(size=(T, 7)) * 3
    return model, cost, X, U


@pytest.mark.parametrize("ee", [True, False])
def test_reach_cost_derivatives_match_finite_differences(ee):
    _, cost, X, U = _cost_and_traj(ee)
    e = cost.quadratize(X, U)
    T = U.shape[0]
    assert np.allclose(e.l, cost.evaluate(X, U))
    for t in range(T + 1):
        ut = U[min(t, T - 1)]

        def l_x(x, t=t, ut=ut):
            Xp = X.copy()
            Xp[t] = x
            return cost.evaluate(Xp, U)[t]

        assert _rel_err(e.lx[t], _fd_jacobian(l_x, X[t])) < 1e-4
        if t < T:
            def l_u(u, t=t):
                Up = U.copy()
                Up[t] = u
                return cost.evaluate(X, Up)[t]

            def lu_of_u(u, t=t):
                Up = U.copy()
                Up[t] = u
                return cost.quadratize(X, Up).lu[t]

            def lu_of_x(x, t=t):
                Xp = X.copy()
                Xp[t] = x
                return cost.quadratize(Xp, U).lu[t]

            assert _rel_err(e.lu[t], _fd_jacobian(l_u, U[t])) < 1e-4
            assert _rel_err(e.luu[t], _fd_jacobian(lu_of_u, U[t])) < 1e-4
            assert np.abs(e.lux[t] - _fd_jacobian(lu_of_x, X[t])).max() < 1e-8

        def lx_of_x(x, t=t):
            Xp = X.copy()
            Xp[t] = x
            return cost.quadratize(Xp, U).lx[t]

        H_fd = _fd_jacobian(lx_of_x, X[t])
        if not ee:
            assert _rel_err(e.lxx[t], H_fd) < 1e-4
        else:
            # Gauss-Newton: lxx = (exact Hessian of the other terms) + w_ee J^T J.
            w = cost.settings.ee_weight_terminal if t == T else cost.settings.ee_weight
            J = _fd_jacobian(cost.kin.ee_position, X[t, :7])
            gn = np.zeros((14, 14))
            gn[:7, :7] = w * J.T @ J
            _, other, _, _ = _cost_and_traj(ee=False)
            H_other = other.quadratize(X, U).lxx[t]
            assert _rel_err(e.lxx[t], H_other + gn) < 1e-4


def test_reach_cost_torch_agrees_and_targets_change():
    _, cost, X, U = _cost_and_traj(True)
    rng = np.random.default_rng(5)
    Xb = np.stack([X + 0.05 * rng.normal(size=X.shape) for _ in range(3)])
    Ub = np.stack([U + rng.normal(size=U.shape) for _ in range(3)])
    ref = np.array([cost.evaluate(x, u).sum() for x, u in zip(Xb, Ub)])
    out = cost.evaluate_torch(torch.tensor(Xb), torch.tensor(Ub)).numpy()
    assert np.abs(out - ref).max() < 1e-10 * np.abs(ref).max()
    out32 = cost.evaluate_torch(torch.tensor(Xb, dtype=torch.float32), torch.tensor(Ub, dtype=torch.float32))
    assert np.abs(out32.double().numpy() - ref).max() < 1e-4 * np.abs(ref).max()
    before = cost.evaluate(X, U).sum()
    cost.set_ee_target((0.3, -0.2, 0.6))
    after = cost.evaluate(X, U).sum()
    assert after != before
    assert np.abs(cost.evaluate_torch(torch.tensor(X)[None], torch.tensor(U)[None]).item() - after) < 1e-9 * after
    with pytest.raises(ValueError):
        cost.set_ee_target((0.1, 0.2))
    with pytest.raises(ValueError):
        CostSettings(ee_weight=-1.0)


def test_effort_weights_scale_with_inertia():
    model = PhysicsModel.from_robot("panda")
    cost = ReachCost.for_model(model, CostSettings(effort_weight=1.0))
    diag_m = np.diag(model.mass_matrix(HOME))
    assert np.allclose(cost.r, 1.0 / diag_m)
    flat = ReachCost.for_model(model, CostSettings(effort_weight=1.0, effort_inertia_scaled=False))
    assert np.allclose(flat.r, 1.0)
