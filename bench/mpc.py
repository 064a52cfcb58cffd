"""Receding-horizon reaching on the simulated Panda with the controller's own planners (no ROS).

Run: ``python bench/mpc.py [--quick]`` from the repository root. Writes ``bench/results/mpc.json``
and ``bench/results/mpc.md`` and prints the tables.

Every planner is built by :func:`mbrl_ros.control.planners.build_planner` from
``ControllerSettings()`` (the node's defaults, ``disturbance_gain`` included), as the controller's
planner process builds it. The arm is the in-process PyBullet sim at 1 kHz; the policy is applied
every 4 ms of simulated time (the node's 250 Hz torque loop) and replanned every 50 ms from the
state at that instant (no latency), for 100 steps of 50 ms from ``q0`` to 4 goals: the demo goal
and 3 seeded random reachable ones. Models: the URDF physics model, ensembles of several shapes
and the semi-parametric model (physics + learned residual), all trained on the same data
(``bench/mpc_models.py``). Plan times are on one torch thread. pytorch-mppi runs on the same
learned model and cost in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from dataclasses import asdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mpc_models  # noqa: E402  (imports mbrl_ros first: thread settings)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from mbrl_ros.control.controller_settings import ControllerSettings  # noqa: E402
from mbrl_ros.control.planners import build_planner  # noqa: E402
from mbrl_ros.dynamics.physics import PhysicsModel  # noqa: E402
from mbrl_ros.sim.arm import SimSettings, SimulatedArm  # noqa: E402
from mbrl_ros.dynamics.kinematics import reachable_goals  # noqa: E402
from mbrl_ros.sim.reach import ReachRun, planner_callback, receding_horizon_reach  # noqa: E402

Q0 = mpc_models.Q0
DT_S = mpc_models.DT_S
DEMO_GOAL = np.array([0.376, 0.257, 0.542])
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
#: Each planner's alternatives, run beside the node's default in the same run (plan-time ratios
#: against it in the table): what the default replaced.
ALTERNATIVES = {
    "ilqr": {"Jacobians every iteration": {"ilqr_reuse_jacobians": False}},
    "mppi": {"samples on the model, noise 1.0": {"mppi_rollout": "model", "mppi_noise_scale": 1.0}},
}


def load() -> float:
    return os.getloadavg()[0]


def summary(run: ReachRun, cost=None) -> dict:
    out = {"final_cm": 100 * float(run.distances_m[-1]), "time_to_2cm_s": run.time_to_s(),
           "max_last_second_cm": 100 * float(run.distances_m[-20:].max()), "plan_failures": run.plan_failures,
           "nonfinite_torques": run.nonfinite_torques}
    if cost is not None:
        out["executed_cost"] = float(cost.evaluate(run.X, run.U).sum())
    return out


def closed_loop(sim: SimulatedArm, goal, steps: int, plan, latency_s: float = 0.0) -> ReachRun:
    return receding_horizon_reach(sim, plan, goal, steps, DT_S, q0=Q0, latency_s=latency_s)


def run_ours(sim, settings: ControllerSettings, model, physics, goals, steps, latency_s: float = 0.0) -> tuple[list, list]:
    """Per-goal summaries and plan times of the planner ``settings`` describe, built as the node
    builds it; with ``latency_s``, each plan takes over that long after it was asked for, planned
    from the state predicted for then (as in the node)."""
    runs, times = [], []
    for goal in goals:
        planner = build_planner(settings.planner(), model, physics, Q0)
        run = closed_loop(sim, goal, steps, planner_callback(planner, goal), latency_s)
        runs.append(summary(run, planner.cost))
        times.append(run.plan_s)
    return runs, times


class _Hold:
    """pytorch-mppi's command as a policy: its first action, held for the step."""

    def __init__(self, u):
        self.u = u

    def action(self, x, t):
        return self.u


def pytorch_mppi_plan(model, cost, physics, settings: ControllerSettings, K: int, goal, seed=0):
    """pytorch-mppi with the same model (its TS∞ trajectory sampling), the same batched cost (one
    ``evaluate_torch`` call on the whole sampled trajectories through its ``terminal_state_cost``),
    the same per-joint noise and torque box; temperature ``lambda_`` in cost units."""
    from pytorch_mppi import MPPI as PMPPI

    torch.manual_seed(seed)
    dtype = torch.float32
    sigma = settings.mppi_noise_scale * np.sqrt(np.diag(physics.mass_matrix(Q0)))
    lim = torch.tensor(physics.effort_limit_nm, dtype=dtype)
    cost.set_ee_target(goal)
    zeros = torch.zeros(K, dtype=dtype)
    holder = {}

    def dynamics(s, a):
        return model.step_torch(s, a)

    def terminal_cost(states, actions):
        M, K_, T_, nx = states.shape
        x_0 = holder["planner"].state.reshape(1, 1, 1, nx).expand(M, K_, 1, nx)
        X = torch.cat([x_0, states], dim=2).reshape(M * K_, T_ + 1, nx)
        c = cost.evaluate_torch(X, actions.reshape(M * K_, T_, -1)).reshape(M, K_)
        return torch.nan_to_num(c, nan=1e12, posinf=1e12)

    planner = PMPPI(dynamics, lambda s, a: zeros, physics.nx, torch.diag(torch.tensor(sigma, dtype=dtype) ** 2),
                    num_samples=K, horizon=settings.horizon_steps, device="cpu", terminal_state_cost=terminal_cost,
                    lambda_=1.0, u_min=-lim, u_max=lim)
    holder["planner"] = planner

    def plan(x, t, executed):
        if hasattr(model, "begin_rollout"):
            model.begin_rollout(K, None)
        return _Hold(planner.command(torch.tensor(x, dtype=dtype)).double().numpy())

    return plan


def stats_ms(times) -> dict:
    t = 1e3 * np.concatenate([np.asarray(v) for v in times]) if times else np.zeros(1)
    return {"median_ms": float(np.median(t)), "p95_ms": float(np.percentile(t, 95))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="less data, fewer epochs, 2 goals, 40 steps")
    parser.add_argument("--models", default=None, help="comma-separated subset of physics," + ",".join(mpc_models.VARIANTS))
    parser.add_argument("--latency", default="0",
                        help="comma-separated plan latencies (s) to run every planner with (0: none, the best case)")
    parser.add_argument("--no-peer", action="store_true", help="skip pytorch-mppi")
    parser.add_argument("--peer-only", action="store_true", help="only the pytorch-mppi comparison")
    parser.add_argument("--checkpoint", help="benchmark this learned model (e.g. a demo's models/ensemble_latest.safetensors) "
                        "and the URDF model, instead of training the variants")
    parser.add_argument("--no-alternatives", action="store_true", help="only the node's default settings per planner")
    parser.add_argument("--out", default=os.path.join(RESULTS, "mpc.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    quick = args.quick
    data = mpc_models.DataSettings(lqr_flm_iterations=2, exploration_trials=10) if quick else mpc_models.DataSettings()
    steps = 40 if quick else 100
    physics = PhysicsModel.from_robot("panda", dt_s=DT_S)
    goals = np.vstack([DEMO_GOAL, reachable_goals(physics.kinematics, Q0, 1 if quick else 3, 7, min_separation_m=0.0,
                                                   from_center_m=(0.10, 0.35), limit_margin_rad=0.1)])
    settings = ControllerSettings()
    results = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
                           "python": platform.python_version(), "torch": torch.__version__},
               "settings": {k: v for k, v in asdict(settings).items() if k.startswith(("mppi", "ilqr", "horizon", "ee_", "effort",
                                                                                          "velocity", "disturbance", "device"))},
               "goals_m": goals.tolist(), "steps": steps, "load_start": load()}
    if args.checkpoint:
        from mbrl_ros.dynamics import serialization

        name = f"learned ({os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(args.checkpoint))))})"
        models = {name: serialization.load_ensemble(args.checkpoint, base_model=physics)[0]}
        results["checkpoint"] = os.path.abspath(args.checkpoint)
        results["k_step"] = {}
    else:
        train, held = mpc_models.collect_data(data)
        names = list(mpc_models.VARIANTS) if args.models is None else [m for m in args.models.split(",") if m != "physics"]
        models, training = {}, {}
        for name in names:
            models[name], training[name] = mpc_models.train_model(name, train, data, 20 if quick else 200, physics)
        results["training"] = {"n_train_transitions": int(train.n_trials * train.horizon_steps),
                               "n_held_out_episodes": int(held.n_trials), **training}
        results["k_step"] = mpc_models.k_step_table({**models, "physics (URDF)": physics, "hold x": None}, held)
    plan_models = ({} if args.models and "physics" not in args.models.split(",") else {"physics": physics}) | models
    order = ["4x200", "physics", "3x128", "semi 4x200"]  # the default and its closest alternatives first
    plan_models = {k: plan_models[k] for k in sorted(plan_models, key=lambda k: order.index(k) if k in order else 9)}
    rows = {}
    with SimulatedArm(SimSettings(robot="panda")) as sim:
        latencies = [float(v) for v in args.latency.split(",")]
        for mname, model in ({} if args.peer_only else plan_models).items():
            for mode in ("ilqr", "mppi"):
                variants = {"": {}} | ({} if args.no_alternatives else {f", {k}": v for k, v in ALTERNATIVES[mode].items()})
                for latency, (label, changes) in [(lat, v) for lat in latencies for v in variants.items()]:
                    s = settings.replace(mode=mode, model_source="physics" if mname == "physics" else "learned", **changes)
                    runs, times = run_ours(sim, s, model, physics, goals, steps, latency)
                    name = f"{mode} / {mname}{label}" + (f", plans {latency:g} s late" if latency > 0 else "")
                    rows[name] = {"plan": stats_ms(times), "goals": runs, "load": load(), "latency_s": latency,
                                  "settings_changed": changes}
                    if label:
                        default = rows[f"{mode} / {mname}" + (f", plans {latency:g} s late" if latency > 0 else "")]
                        rows[name]["plan_time_ratio_over_default"] = rows[name]["plan"]["median_ms"] / default["plan"]["median_ms"]
                    results["closed_loop"] = rows
                    write(results, args.out)  # a long run keeps what it has measured
                    print(f"{name:<40} plan {rows[name]['plan']['median_ms']:7.1f} ms  final cm "
                          + " ".join(f"{r['final_cm']:6.2f}" for r in runs) + f"  (load {load():.1f})", flush=True)
        if not args.no_peer:
            peer_model = models.get("4x200") or (next(iter(models.values())) if args.checkpoint else None)
            results["pytorch_mppi"] = peer_comparison(sim, peer_model, physics, settings, goals[:2], steps, quick)
    table = write(results, args.out)
    print(table)
    print(f"wrote {args.out}")
    return 0


def write(results: dict, path: str) -> str:
    results["load_end"] = load()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(results, fh, indent=2)
    table = markdown(results)
    with open(os.path.splitext(path)[0] + ".md", "w") as fh:
        fh.write(table)
    return table


def peer_comparison(sim, model, physics, settings, goals, steps, quick) -> dict:
    """Ours at several K against pytorch-mppi at K = 512 and 1024 on the learned 4x200 ensemble
    (the demo goal and the first random one): mean executed cost over the goals and the plan time
    ratio at equal or lower cost."""
    if model is None:
        return {"error": "the 4x200 ensemble was not part of this run"}
    try:
        import pytorch_mppi  # noqa: F401
    except ImportError as exc:
        return {"error": f"pytorch-mppi not installed: {exc}"}
    out = {"ours": {}, "pytorch_mppi": {}}
    for K in (128, 256, 512):
        runs, times = run_ours(sim, settings.replace(mode="mppi", mppi_samples=K), model, physics, goals, steps)
        out["ours"][str(K)] = {"plan": stats_ms(times), "goals": runs}
    cost = build_planner(settings.planner(), model, physics, Q0).cost
    for K in (512,) if quick else (512, 1024):
        runs, times = [], []
        for goal in goals:
            run = closed_loop(sim, goal, steps, pytorch_mppi_plan(model, cost, physics, settings, K, goal))
            runs.append(summary(run, cost))
            times.append(run.plan_s)
        out["pytorch_mppi"][str(K)] = {"plan": stats_ms(times), "goals": runs}
    mean_cost = lambda r: float(np.mean([g["executed_cost"] for g in r["goals"]]))  # noqa: E731
    ratios = {}
    for Kp, peer in out["pytorch_mppi"].items():
        ok = [K for K, r in out["ours"].items() if mean_cost(r) <= mean_cost(peer)]
        if ok:
            K = min(ok, key=lambda k: out["ours"][k]["plan"]["median_ms"])
            ratios[Kp] = {"ours_K": int(K), "plan_time_ratio_peer_over_ours":
                          peer["plan"]["median_ms"] / out["ours"][K]["plan"]["median_ms"]}
        else:
            ratios[Kp] = {"ours_K": None, "plan_time_ratio_peer_over_ours": None}
    out["equal_cost"] = ratios
    out["load"] = load()
    return out


def markdown(r: dict) -> str:
    lines = [f"Panda reach from q0, {r['steps']} steps of 50 ms, policy at 250 Hz, replanned every 50 ms, "
             f"planners from ControllerSettings(); load {r['load_start']:.1f} at start, {r['load_end']:.1f} at end; "
             f"CUDA: {'yes' if r['machine']['cuda'] else 'no (not measured)'}.", "",
             "Goals: " + ", ".join("[" + ", ".join(f"{v:.3f}" for v in g) + "]" for g in r["goals_m"]), "",
             "| planner / model | plan ms median | p95 | plan time / default's | final distance per goal (cm) | time to < 2 cm (s) | load |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in r.get("closed_loop", {}).items():
        finals = " / ".join(f"{g['final_cm']:.2f}" for g in row["goals"])
        times = " / ".join("–" if g["time_to_2cm_s"] is None else f"{g['time_to_2cm_s']:.2f}" for g in row["goals"])
        ratio = row.get("plan_time_ratio_over_default")
        lines.append(f"| {name} | {row['plan']['median_ms']:.1f} | {row['plan']['p95_ms']:.1f} | "
                     f"{'1' if ratio is None else f'{ratio:.2f}'} | {finals} | {times} | {row['load']:.1f} |")
    if r["k_step"]:
        lines += ["", "Held-out k-step errors (RMS over joints; positions mrad, velocities mrad/s):", "",
                  "| model | 1-step q | 5-step q | 20-step q | 1-step qd | 5-step qd | 20-step qd |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in r["k_step"].items():
        lines.append(f"| {name} | " + " | ".join(f"{row[k]['position_mrad']:.2f}" for k in ("1", "5", "20")) + " | "
                     + " | ".join(f"{row[k]['velocity_mrad_s']:.1f}" for k in ("1", "5", "20")) + " |")
    peer = r.get("pytorch_mppi")
    if peer and "error" not in peer:
        lines += ["", "MPPI on the learned ensemble, ours vs pytorch-mppi (same model, cost, noise, box):", "",
                  "| implementation | K | plan ms median | p95 | mean executed cost | final cm per goal |", "| --- | --- | --- | --- | --- | --- |"]
        for impl in ("ours", "pytorch_mppi"):
            for K, row in peer[impl].items():
                c = np.mean([g["executed_cost"] for g in row["goals"]])
                lines.append(f"| {impl} | {K} | {row['plan']['median_ms']:.1f} | {row['plan']['p95_ms']:.1f} | {c:.1f} | "
                             + " / ".join(f"{g['final_cm']:.2f}" for g in row["goals"]) + " |")
        for Kp, e in peer["equal_cost"].items():
            ratio = e["plan_time_ratio_peer_over_ours"]
            lines.append(f"\npytorch-mppi K = {Kp}: " + ("no K of ours reached its cost" if ratio is None else
                         f"ours reaches its cost with K = {e['ours_K']}, {ratio:.2f}x faster"))
    elif peer:
        lines += ["", f"pytorch-mppi: {peer['error']}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
