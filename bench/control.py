"""Benchmark of the optimal-control core on the Panda reach problem (not a test).

Run: ``python bench/control.py [--quick]`` from the repository root (peers from
``requirements-bench.txt``). Writes ``bench/results/control.json`` and prints a table.

Problem: Panda (Pinocchio model of the simulator's URDF, gravity compensated, one semi-implicit
Euler step per dt = 0.02 s), horizon T = 30, start at home, EE target 0.1/0.15/-0.1 m away, this
benchmark's own weights (:data:`COST_WEIGHTS`: EE running 100 / terminal 1000, velocity 0.1 / 1;
inertia-scaled effort 1e-3 and the joint-limit barrier 100 as in ``CostSettings``). Every "cost" below is that cost
evaluated by our numpy code, whatever solver produced the trajectory.

Measured:
* iLQR (ours, box-constrained torques): cold solve from zero torques, and warm solves along a
  receding-horizon run in the model (shift by one step per plan).
* crocoddyl FDDP on the same dynamics (``DifferentialActionModelFreeFwdDynamics`` + ``IntegratedActionModelEuler``
  on our reduced Pinocchio model) and the same cost terms (running weights divided by dt because
  crocoddyl integrates running costs over dt), cold and warm-shifted.
* MPPI (ours) and pytorch-mppi with K = 256/512/1024, T = 30, the same dynamics
  (``PhysicsModel.step_torch``, or ``LinearizedRolloutModel``) and the same cost function, float32:
  median plan time over a 1 s receding-horizon run in the model and that run's executed cost. Both
  score their K sampled trajectories with one batched ``ReachCost.evaluate_torch`` call per plan
  (pytorch-mppi through its ``terminal_state_cost``, which receives the whole trajectories; its
  ``running_cost`` is zero), checked against our numpy cost on its samples (``check_cost_rel_err``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# Thread settings (1 BLAS/OpenMP thread, OMP_WAIT_POLICY=PASSIVE) before numpy, torch or Pinocchio
# load: torch's and Pinocchio's OpenMP runtimes busy-wait and starve each other on 2 cores.
import mbrl_ros  # noqa: E402,F401
import numpy as np  # noqa: E402
import torch  # noqa: E402

from mbrl_ros.control.costs import CostSettings, ReachCost  # noqa: E402
from mbrl_ros.control.ilqr import ILQR, ILQRSettings  # noqa: E402
from mbrl_ros.control.linearized import LinearizedRolloutModel  # noqa: E402
from mbrl_ros.control.mppi import MPPI, MPPISettings  # noqa: E402
from mbrl_ros.dynamics.physics import PhysicsModel  # noqa: E402

DT_S = 0.02
T = 30
OFFSET_M = np.array([0.1, 0.15, -0.1])
#: Weights for this short (0.6 s) horizon at dt = 0.02 s; every number below was measured with them.
COST_WEIGHTS = dict(ee_weight=100.0, ee_weight_terminal=1000.0, velocity_weight=0.1, velocity_weight_terminal=1.0)


def build_problem(num_threads: int = 1):
    model = PhysicsModel.from_robot("panda", dt_s=DT_S, substeps=1, num_threads=num_threads)
    q0 = np.array(model.spec.home_positions_rad)
    x0 = np.concatenate([q0, np.zeros(7)])
    target = model.kinematics.ee_position(q0) + OFFSET_M
    settings = CostSettings(ee_target_m=tuple(target), **COST_WEIGHTS)
    cost = ReachCost.for_model(model, settings)
    return model, cost, x0, target


def total_cost(cost, X, U) -> float:
    return float(cost.evaluate(np.asarray(X), np.asarray(U)).sum())


# ---- iLQR ----------------------------------------------------------------------------------------
def bench_ilqr(model, cost, x0, repeats: int, steps: int) -> dict:
    lim = model.effort_limit_nm
    settings = ILQRSettings(horizon_steps=T, max_iterations=50)
    cold_times, cold_iters = [], []
    for _ in range(repeats):
        planner = ILQR(model, cost, settings, -lim, lim)
        planner.optimize(x0, 0.0)
        r = planner.last_result
        cold_times.append(r.solve_time_s)
        cold_iters.append(r.iterations)
    cold_cost = r.cost
    planner = ILQR(model, cost, settings, -lim, lim)
    x = x0.copy()
    warm_times, warm_iters, warm_costs = [], [], []
    Xs, Us = [x.copy()], []
    for k in range(steps):
        policy = planner.optimize(x, k * DT_S)
        if k > 0:
            warm_times.append(planner.last_result.solve_time_s)
            warm_iters.append(planner.last_result.iterations)
            warm_costs.append(planner.last_result.cost)
        u = policy.action(x, k * DT_S)
        x = model.step(x, u)
        Xs.append(x.copy())
        Us.append(u)
    return solver_summary(model, cost, cold_times, cold_iters, cold_cost, warm_times, warm_iters, Xs, Us)


def solver_summary(model, cost, cold_times, cold_iters, cold_cost, warm_times, warm_iters, Xs, Us) -> dict:
    """The same medians and closed-loop numbers for every receding-horizon solver compared."""
    return {
        "cold_ms": 1e3 * float(np.median(cold_times)),
        "cold_iterations": int(np.median(cold_iters)),
        "cold_cost": cold_cost,
        "warm_ms": 1e3 * float(np.median(warm_times)),
        "warm_iterations": float(np.median(warm_iters)),
        "closed_loop_cost": total_cost(cost, Xs, Us),
        "final_ee_error_m": float(np.linalg.norm(model.kinematics.ee_position(Xs[-1][:7]) - cost.ee_target)),
    }


# ---- crocoddyl -------------------------------------------------------------------------------------
def build_crocoddyl(model, cost, x0):
    import crocoddyl

    s = cost.settings
    state = crocoddyl.StateMultibody(model.model)
    actuation = crocoddyl.ActuationModelFull(state)
    nu = model.nu
    fid = model.arm.ee_frame_id
    nq = model.nq

    def costs(terminal: bool):
        scale = 1.0 if terminal else 1.0 / DT_S  # crocoddyl multiplies running costs by dt
        total = crocoddyl.CostModelSum(state, nu)
        ee = crocoddyl.ResidualModelFrameTranslation(state, fid, cost.ee_target, nu)
        w_ee = s.ee_weight_terminal if terminal else s.ee_weight
        total.addCost("ee", crocoddyl.CostModelResidual(state, ee), w_ee * scale)
        w_v = s.velocity_weight_terminal if terminal else s.velocity_weight
        vel_w = np.concatenate([np.zeros(nq), np.full(nq, w_v)])
        xres = crocoddyl.ResidualModelState(state, np.zeros(2 * nq), nu)
        total.addCost("vel", crocoddyl.CostModelResidual(state, crocoddyl.ActivationModelWeightedQuad(vel_w), xres), scale)
        lb = np.concatenate([cost.lower, np.full(nq, -1e10)])
        ub = np.concatenate([cost.upper, np.full(nq, 1e10)])
        bounds = crocoddyl.ActivationBounds(lb, ub)
        total.addCost("limits", crocoddyl.CostModelResidual(
            state, crocoddyl.ActivationModelQuadraticBarrier(bounds), crocoddyl.ResidualModelState(state, np.zeros(2 * nq), nu)),
            s.limit_weight * scale)
        if not terminal:
            ures = crocoddyl.ResidualModelControl(state, nu)
            total.addCost("effort", crocoddyl.CostModelResidual(state, crocoddyl.ActivationModelWeightedQuad(cost.r.copy()), ures), scale)
        return total

    running = crocoddyl.IntegratedActionModelEuler(
        crocoddyl.DifferentialActionModelFreeFwdDynamics(state, actuation, costs(False)), DT_S)
    terminal = crocoddyl.IntegratedActionModelEuler(
        crocoddyl.DifferentialActionModelFreeFwdDynamics(state, actuation, costs(True)), 0.0)
    problem = crocoddyl.ShootingProblem(x0, [running] * T, terminal)
    return crocoddyl, problem


def bench_crocoddyl(model, cost, x0, repeats: int, steps: int) -> dict:
    try:
        crocoddyl, problem = build_crocoddyl(model, cost, x0)
    except ImportError as exc:
        return {"error": f"crocoddyl not installed: {exc}"}
    # Same model and cost: check once on a random rollout.
    rng = np.random.default_rng(0)
    us = [rng.normal(size=model.nu) for _ in range(T)]
    xs = problem.rollout(us)
    X_ours = [x0]
    for u in us:
        X_ours.append(model.step(X_ours[-1], u))
    dyn_err = float(np.abs(np.array(xs) - np.array(X_ours)).max())
    croc_cost = problem.calc(xs, us)
    cost_err = abs(croc_cost - total_cost(cost, xs, us)) / total_cost(cost, xs, us)

    cold_times, cold_iters = [], []
    for _ in range(repeats):
        problem.x0 = x0
        solver = crocoddyl.SolverFDDP(problem)
        t = time.perf_counter()
        solver.solve([x0] * (T + 1), [np.zeros(model.nu)] * T, 100, False, 1e-9)
        cold_times.append(time.perf_counter() - t)
        cold_iters.append(solver.iter)
    cold_cost = total_cost(cost, solver.xs, solver.us)
    # Warm: receding horizon in our model, shifting the previous solution by one step.
    solver = crocoddyl.SolverFDDP(problem)
    x = x0.copy()
    problem.x0 = x
    solver.solve([x] * (T + 1), [np.zeros(model.nu)] * T, 100, False, 1e-9)
    warm_times, warm_iters = [], []
    Xs, Us = [x.copy()], []
    for k in range(steps):
        if k > 0:
            xs_prev, us_prev = list(solver.xs), list(solver.us)
            xs_init = [x] + xs_prev[2:] + [xs_prev[-1]]
            us_init = us_prev[1:] + [us_prev[-1]]
            problem.x0 = x
            t = time.perf_counter()
            solver.solve(xs_init, us_init, 100, False, 1e-9)
            warm_times.append(time.perf_counter() - t)
            warm_iters.append(solver.iter)
        # Same execution as ours: nominal + feedback (first step, so x = x̂_0: u = û_0).
        u = np.array(solver.us[0])
        x = model.step(x, u)
        Xs.append(x.copy())
        Us.append(u)
    return {
        "check_dynamics_max_abs_err": dyn_err,
        "check_cost_rel_err": float(cost_err),
        **solver_summary(model, cost, cold_times, cold_iters, cold_cost, warm_times, warm_iters, Xs, Us),
        "note": "FDDP has no torque box here (our iLQR is box-constrained); the limits are not active on this problem",
    }


# ---- MPPI ----------------------------------------------------------------------------------------
def _sigma(model, x0):
    return np.sqrt(np.diag(model.mass_matrix(x0[:7])))


def run_ours(model, cost, x0, K: int, steps: int, rollout_model=None, seed: int = 0) -> dict:
    """Our MPPI planning with ``rollout_model`` (default: the exact model); executed in the exact model."""
    lim = model.effort_limit_nm
    settings = MPPISettings(num_samples=K, horizon_steps=T, temperature=1.0,
                            noise_sigma_nm=tuple(_sigma(model, x0)), noise_smoothing=0.5, seed=seed)
    planner = MPPI(rollout_model or model, cost, settings, -lim, lim)
    x = x0.copy()
    times, Xs, Us = [], [x.copy()], []
    for k in range(steps):
        policy = planner.optimize(x, k * DT_S)
        times.append(planner.last_result.solve_time_s)
        u = policy.action(x, k * DT_S)
        x = model.step(x, u)
        Xs.append(x.copy())
        Us.append(u)
    return {"plan_ms": 1e3 * float(np.median(times[1:])), "closed_loop_cost": total_cost(cost, Xs, Us),
            "final_ee_error_m": float(np.linalg.norm(model.kinematics.ee_position(x[:7]) - cost.ee_target))}


def run_pytorch_mppi(model, cost, x0, K: int, steps: int, rollout_model=None, seed: int = 0) -> dict:
    """pytorch-mppi with the same rollout model and cost; executed in the exact model."""
    try:
        from pytorch_mppi import MPPI as PMPPI
    except ImportError as exc:
        return {"error": f"pytorch-mppi not installed: {exc}"}
    torch.manual_seed(seed)
    dtype = torch.float32
    sigma = torch.tensor(_sigma(model, x0), dtype=dtype)
    lim = torch.tensor(model.effort_limit_nm, dtype=dtype)

    linearized = rollout_model is not None

    def dynamics(s, a, t=None):
        return rollout_model.step_torch_at(s, a, t) if linearized else model.step_torch(s, a)

    # The same batched cost as ours: pytorch-mppi hands terminal_state_cost the whole sampled
    # trajectories, states (M, K, T, nx) = x_1..x_T and actions (M, K, T, nu), so the running cost
    # is zero and the total (running + terminal + effort, once each) is one evaluate_torch call on
    # [x_0, x_1..x_T], exactly as our MPPI scores its samples.
    zeros = torch.zeros(K, dtype=dtype)

    def running_cost(s, a, t=None):
        return zeros

    def terminal_cost(states, actions):
        M, K_, T_, nx = states.shape
        x_0 = planner.state.reshape(1, 1, 1, nx).expand(M, K_, 1, nx)
        X = torch.cat([x_0, states], dim=2).reshape(M * K_, T_ + 1, nx)
        return cost.evaluate_torch(X, actions.reshape(M * K_, T_, -1)).reshape(M, K_)

    planner = PMPPI(dynamics, running_cost, model.nx, torch.diag(sigma**2), num_samples=K, horizon=T,
                    device="cpu", terminal_state_cost=terminal_cost, lambda_=1.0, u_min=-lim, u_max=lim,
                    step_dependent_dynamics=linearized)
    x = x0.copy()
    times, Xs, Us = [], [x.copy()], []
    cost_err = float("nan")
    for k in range(steps):
        t = time.perf_counter()
        if linearized:  # same preparation as ours: linearise along the shifted nominal
            planner.shift_nominal_trajectory()
            rollout_model.prepare_plan(x, planner.U.double().numpy())
            u = planner.command(torch.tensor(x, dtype=dtype), shift_nominal_trajectory=False).double().numpy()
        else:
            u = planner.command(torch.tensor(x, dtype=dtype)).double().numpy()
        times.append(time.perf_counter() - t)
        if k == 0:  # untimed: its cost of 16 of the samples just scored vs our float64 numpy cost
            S, A = planner.states[0, :16].double().numpy(), planner.actions[0, :16].double().numpy()
            mine = terminal_cost(planner.states[:, :16], planner.actions[:, :16]).double().numpy()[0]
            ref = np.array([total_cost(cost, np.vstack([x, S[i]]), A[i]) for i in range(len(S))])
            cost_err = float(np.max(np.abs(mine - ref) / ref))
        x = model.step(x, u)
        Xs.append(x.copy())
        Us.append(u)
    return {"plan_ms": 1e3 * float(np.median(times[1:])), "closed_loop_cost": total_cost(cost, Xs, Us),
            "final_ee_error_m": float(np.linalg.norm(model.kinematics.ee_position(x[:7]) - cost.ee_target)),
            "check_cost_rel_err": cost_err}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and shorter runs")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch intra-op threads (1 measured fastest on the shared 2-core machine)")
    parser.add_argument("--pinocchio-threads", type=int, default=1,
                        help="OpenMP threads of the batched ABA (PhysicsModel num_threads)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "control.json"))
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else 7
    steps = 20 if args.quick else 50
    torch.set_num_threads(args.torch_threads)
    model, cost, x0, target = build_problem(args.pinocchio_threads)

    results = {
        "problem": {"robot": "panda", "dt_s": DT_S, "horizon_steps": T, "substeps": model.substeps,
                    "ee_offset_m": OFFSET_M.tolist(), "closed_loop_steps": steps, "repeats": repeats},
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "pinocchio_threads": model.num_threads, "python": platform.python_version(),
                    "torch": torch.__version__},
    }
    results["ilqr"] = bench_ilqr(model, cost, x0, repeats, steps)
    results["crocoddyl_fddp"] = bench_crocoddyl(model, cost, x0, repeats, steps)
    mppi, mppi_lin = {}, {}
    for K in (256, 512, 1024):
        mppi[str(K)] = {"ours": run_ours(model, cost, x0, K, steps), "pytorch_mppi": run_pytorch_mppi(model, cost, x0, K, steps)}
        lin = LinearizedRolloutModel(model, T)
        mppi_lin[str(K)] = {"ours": run_ours(model, cost, x0, K, steps, lin),
                            "pytorch_mppi": run_pytorch_mppi(model, cost, x0, K, steps, LinearizedRolloutModel(model, T))}
    results["mppi"] = mppi
    results["mppi_linearized_physics"] = mppi_lin

    # Targets, reported as plain pass/fail (a miss stays a miss), for both rollout models: MPPI K = 512
    # within 20 ms and >= 1.5x pytorch-mppi at equal cost, warm iLQR within 20 ms.
    croc = results["crocoddyl_fddp"]
    targets = {}
    for label, table in (("exact_physics", mppi), ("linearized_physics", mppi_lin)):
        ours512, peer512 = table["512"]["ours"], table["512"]["pytorch_mppi"]
        ref_cost = peer512.get("closed_loop_cost", float("nan"))
        # Equal cost: the fastest of our K whose closed-loop cost is at most pytorch-mppi K=512's.
        ok_k = [K for K in (256, 512, 1024) if table[str(K)]["ours"]["closed_loop_cost"] <= ref_cost]
        best_k = min(ok_k, key=lambda K: table[str(K)]["ours"]["plan_ms"]) if ok_k else None
        equal = peer512["plan_ms"] / table[str(best_k)]["ours"]["plan_ms"] if best_k else float("nan")
        targets[f"mppi_{label}"] = {
            "plan_ms_K512": ours512["plan_ms"],
            "plan_le_20ms_K512": ours512["plan_ms"] <= 20.0,
            "speedup_vs_pytorch_mppi_same_K512": peer512.get("plan_ms", float("nan")) / ours512["plan_ms"],
            "closed_loop_cost_ours_K512": ours512["closed_loop_cost"],
            "closed_loop_cost_pytorch_mppi_K512": ref_cost,
            "equal_cost_K_ours": best_k,
            "speedup_vs_pytorch_mppi_K512_at_equal_or_lower_cost": equal,
            "ge_1p5x_at_equal_cost": bool(equal >= 1.5),
        }
    targets["ilqr"] = {
        "warm_ms": results["ilqr"]["warm_ms"],
        "warm_le_20ms": results["ilqr"]["warm_ms"] <= 20.0,
        "cold_over_crocoddyl_cold": results["ilqr"]["cold_ms"] / croc["cold_ms"] if "cold_ms" in croc else None,
        "warm_over_crocoddyl_warm": results["ilqr"]["warm_ms"] / croc["warm_ms"] if "warm_ms" in croc else None,
    }
    results["targets"] = targets
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(results, fh, indent=2)
    print_table(results)
    print(f"\nwrote {args.out}")
    return 0


def print_table(r: dict) -> None:
    il, cr = r["ilqr"], r["crocoddyl_fddp"]
    print(f"Panda reach, dt = {r['problem']['dt_s']} s, T = {r['problem']['horizon_steps']}, "
          f"{r['machine']['cpus']} CPUs (medians; 'cost' = our cost function)")
    print(f"{'solver':<28}{'cold ms':>9}{'iters':>7}{'warm ms':>9}{'iters':>7}{'plan cost':>11}{'loop cost':>11}{'EE err mm':>10}")
    print(f"{'iLQR (ours, box)':<28}{il['cold_ms']:>9.2f}{il['cold_iterations']:>7}{il['warm_ms']:>9.2f}"
          f"{il['warm_iterations']:>7.1f}{il['cold_cost']:>11.3f}{il['closed_loop_cost']:>11.3f}{1e3 * il['final_ee_error_m']:>10.2f}")
    if "cold_ms" in cr:
        print(f"{'crocoddyl FDDP':<28}{cr['cold_ms']:>9.2f}{cr['cold_iterations']:>7}{cr['warm_ms']:>9.2f}"
              f"{cr['warm_iterations']:>7.1f}{cr['cold_cost']:>11.3f}{cr['closed_loop_cost']:>11.3f}{1e3 * cr['final_ee_error_m']:>10.2f}")
    else:
        print(f"{'crocoddyl FDDP':<28}{cr['error']}")
    for title, table in (("MPPI, T = 30, exact physics rollouts", r["mppi"]),
                         ("MPPI, T = 30, linearised-physics rollouts", r["mppi_linearized_physics"])):
        print(f"\n{title:<44}{'K':>6}{'plan ms':>9}{'loop cost':>11}{'EE err mm':>10}")
        for K, row in table.items():
            for name, key in (("  ours", "ours"), ("  pytorch-mppi", "pytorch_mppi")):
                m = row[key]
                if "error" in m:
                    print(f"{name:<44}{K:>6}  {m['error']}")
                else:
                    print(f"{name:<44}{K:>6}{m['plan_ms']:>9.2f}{m['closed_loop_cost']:>11.3f}{1e3 * m['final_ee_error_m']:>10.2f}")
    print("\ntargets:")
    for group, values in r["targets"].items():
        print(f"  {group}:")
        for key, value in values.items():
            print(f"    {key}: {value:.3f}" if isinstance(value, float) else f"    {key}: {value}")


if __name__ == "__main__":
    raise SystemExit(main())
