"""iLQR / box-DDP: linear-quadratic exactness, pendulum swing-up, torque limits, warm start."""

import numpy as np
import pytest

from _control_toys import LinearModel, Pendulum
from mbrl_ros.control.costs import QuadraticCost
from mbrl_ros.control.ilqr import ILQR, ILQRSettings, box_qp
from mbrl_ros.control.lqr import lqr_backward, lqr_forward
from mbrl_ros.control.policy import LinearFeedbackPolicy


def _pendulum_problem(T=80):
    model = Pendulum(dt_s=0.05)
    cost = QuadraticCost(Q=np.diag([0.1, 0.01]), R=np.diag([0.01]), QT=np.diag([1000.0, 100.0]), x_goal=[np.pi, 0.0])
    return model, cost, ILQRSettings(horizon_steps=T, max_iterations=200, tolerance_rel_cost=1e-7)


def test_ilqr_linear_quadratic_one_iteration_equals_lqr():
    rng = np.random.default_rng(0)
    nx, nu, T = 4, 2, 25
    A = np.eye(nx) + 0.1 * rng.normal(size=(nx, nx))
    B = rng.normal(size=(nx, nu))
    Q, R, QT = np.diag(rng.uniform(0.5, 2, nx)), np.diag(rng.uniform(0.1, 1, nu)), 10 * np.eye(nx)
    model, cost = LinearModel(A, B), QuadraticCost(Q, R, QT)
    x0 = rng.normal(size=nx)
    res = ILQR(model, cost, ILQRSettings(horizon_steps=T)).solve(x0, np.zeros((T, nu)))
    F = np.broadcast_to(np.hstack([A, B]), (T, nx, nx + nu))
    C = np.zeros((T, nx + nu, nx + nu))
    C[:, :nx, :nx], C[:, nx:, nx:] = Q, R
    sol = lqr_backward(F, np.zeros((T, nx)), C, np.zeros((T, nx + nu)), QT, np.zeros(nx))
    X, U = lqr_forward(F, np.zeros((T, nx)), sol, x0)
    assert len(res.cost_history) == 2  # exactly one accepted iteration
    assert res.converged
    assert np.abs(res.U - U).max() < 1e-8
    assert np.abs(res.X - X).max() < 1e-8
    assert np.abs(res.K - sol.K).max() < 1e-8
    assert abs(res.cost - cost.evaluate(X, U).sum()) < 1e-9


def test_ilqr_pendulum_swing_up_reaches_upright():
    model, cost, settings = _pendulum_problem()
    res = ILQR(model, cost, settings).solve(np.zeros(2), np.zeros((settings.horizon_steps, 1)))
    theta, omega = res.X[-1]
    assert abs(theta - np.pi) < 0.05 and abs(omega) < 0.1
    assert all(a >= b for a, b in zip(res.cost_history, res.cost_history[1:]))
    assert res.cost < 0.05 * res.cost_history[0]
    assert res.K.shape == (80, 1, 2) and res.Quu.shape == (80, 1, 1)
    assert res.solve_time_s > 0 and res.iterations >= 2


def test_ilqr_torque_limits_respected_and_beat_clamping():
    model, cost, settings = _pendulum_problem()
    limit = 4.0  # < m g l = 9.81: the pendulum must swing
    free = ILQR(model, cost, settings).solve(np.zeros(2), np.zeros((80, 1)))
    boxed_planner = ILQR(model, cost, settings, u_lower=[-limit], u_upper=[limit])
    boxed = boxed_planner.solve(np.zeros(2), np.zeros((80, 1)))
    assert np.all(np.abs(boxed.U) <= limit + 1e-12)
    assert np.abs(free.U).max() > limit  # the limit is active for the unconstrained solution
    clamped_U = np.clip(free.U, -limit, limit)
    clamped_X = boxed_planner.rollout(np.zeros(2), clamped_U)
    clamped_cost = cost.evaluate(clamped_X, clamped_U).sum()
    assert boxed.cost < 0.5 * clamped_cost
    theta, omega = boxed.X[-1]
    assert abs(theta - np.pi) < 0.1 and abs(omega) < 0.2
    # Gains of saturated steps are zero in the clamped directions.
    saturated = np.abs(np.abs(boxed.U[:, 0]) - limit) < 1e-9
    assert saturated.any()


def test_box_qp_matches_bruteforce():
    rng = np.random.default_rng(1)
    for _ in range(20):
        L = rng.normal(size=(3, 3))
        H = L @ L.T + 0.1 * np.eye(3)
        g = rng.normal(size=3) * 3
        lo, hi = -np.ones(3), np.ones(3)
        x, free, _ = box_qp(H, g, lo, hi)
        grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 41)] * 3), -1).reshape(-1, 3)
        vals = grid @ g + 0.5 * np.einsum("ni,ij,nj->n", grid, H, grid)
        assert x @ g + 0.5 * x @ H @ x <= vals.min() + 1e-9
        assert np.all(x >= lo) and np.all(x <= hi)


def test_ilqr_warm_start_shifts_and_policy():
    model, cost, settings = _pendulum_problem(T=60)
    planner = ILQR(model, cost, settings, u_lower=[-6.0], u_upper=[6.0])
    x0 = np.zeros(2)
    policy = planner.optimize(x0, t0_s=0.0)
    assert isinstance(policy, LinearFeedbackPolicy)
    cold = planner.last_result
    x1 = model.step(x0, policy.action(x0, 0.0))
    planner.optimize(x1, t0_s=0.05)
    warm = planner.last_result
    assert warm.iterations < cold.iterations
    # The warm start equals the previous plan shifted by one step: its first cost is already low.
    assert warm.cost_history[0] < 0.1 * cold.cost_history[0]


@pytest.mark.parametrize("push", [[0.2, 0.0], [0.0, 1.0], [-0.3, 0.5]])
def test_a_replan_off_the_plan_starts_from_the_plan_kept_with_its_feedback(push):
    """A replan comes from a state the previous plan did not foresee (the arm was pushed, or the plan
    ran late): its first guess is the previous plan continued with its feedback gains, far better
    than the same actions replayed open loop."""
    model, cost, settings = _pendulum_problem(T=60)
    planner = ILQR(model, cost, settings, u_lower=[-6.0], u_upper=[6.0])
    planner.optimize(np.zeros(2), t0_s=0.0)
    previous = planner.last_result
    x1 = previous.X[10] + np.array(push)
    open_loop = np.r_[previous.U[10:], np.repeat(previous.U[-1:], 10, axis=0)]
    open_loop_cost = cost.evaluate(planner.rollout(x1, open_loop), open_loop).sum()
    planner.optimize(x1, t0_s=10 * model.dt_s)
    assert planner.last_result.cost_history[0] < 0.5 * open_loop_cost


def test_ilqr_settings_validation():
    with pytest.raises(ValueError):
        ILQRSettings(horizon_steps=0)
    with pytest.raises(ValueError):
        ILQRSettings(reg_factor=1.0)
    with pytest.raises(ValueError):
        ILQRSettings(line_search_decay=1.5)
    with pytest.raises(ValueError):
        ILQR(Pendulum(), QuadraticCost(np.eye(2), np.eye(1), np.eye(2)), u_lower=[1.0], u_upper=[-1.0])


class _WrongSignModel(LinearModel):
    """Double integrator whose ``linearize`` reports ``-B``: every step the model proposes raises the true cost."""

    def linearize(self, x, u):
        A, B = super().linearize(x, u)
        return A, -B


def test_ilqr_stall_is_not_converged_but_solved_problem_is():
    dt = 0.1
    A, B = np.array([[1.0, dt], [0.0, 1.0]]), np.array([[0.5 * dt**2], [dt]])
    cost = QuadraticCost(np.eye(2), 0.1 * np.eye(1), 10 * np.eye(2))
    settings = ILQRSettings(horizon_steps=20, max_iterations=500)
    x0 = np.array([1.0, 0.0])
    stalled = ILQR(_WrongSignModel(A, B, dt), cost, settings).solve(x0, np.zeros((20, 1)))
    # The line search never improves; the regularisation must run out rather than the shrinking
    # predicted reduction passing for convergence.
    assert len(stalled.cost_history) == 1
    assert not stalled.converged
    assert stalled.status == "no improvement (reg_max)"
    solved = ILQR(LinearModel(A, B, dt), cost, settings).solve(x0, np.zeros((20, 1)))
    assert solved.converged and solved.cost < 0.5 * stalled.cost


def test_ilqr_warm_start_older_than_horizon_cold_starts():
    model, cost, settings = _pendulum_problem(T=20)
    planner = ILQR(model, cost, settings, u_lower=[-6.0], u_upper=[6.0])
    planner.optimize(np.zeros(2), t0_s=0.0)
    assert np.abs(planner.last_result.U).max() > 0
    x1 = np.array([0.3, 0.0])
    planner.optimize(x1, t0_s=20 * model.dt_s)  # the whole previous plan has elapsed
    zeros = np.zeros((20, 1))
    cold_cost = cost.evaluate(planner.rollout(x1, zeros), zeros).sum()
    assert planner.last_result.cost_history[0] == pytest.approx(cold_cost, rel=1e-12)


class _BatchFriendlyPendulum(Pendulum):
    batched_step_is_cheap = True


def test_batched_line_search_finds_the_same_solution():
    """A network model rolls every step length out at once; the accepted step must not change."""
    model, cost, settings = _pendulum_problem()
    sequential = ILQR(model, cost, settings, u_lower=[-3.0], u_upper=[3.0]).solve(np.zeros(2), np.zeros((80, 1)))
    batched = ILQR(_BatchFriendlyPendulum(dt_s=0.05), cost, settings, u_lower=[-3.0], u_upper=[3.0]).solve(
        np.zeros(2), np.zeros((80, 1)))
    assert batched.iterations == sequential.iterations and batched.status == sequential.status
    np.testing.assert_allclose(batched.U, sequential.U, atol=1e-12)
    assert batched.cost == pytest.approx(sequential.cost, rel=1e-12)
