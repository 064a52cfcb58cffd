"""Learning under model mismatch: the simulated Panda differs from its URDF, the controller's physics
model does not (no ROS, in-process).

Run: ``python bench/mismatch.py [--quick]`` from the repository root. Writes
``bench/results/mismatch.json``, ``bench/results/mismatch.md`` and ``docs/mismatch.png``.

For each condition (:data:`CONDITIONS`: the exact arm, a payload, friction, latency, noise, the
``realistic`` profile and a stronger one) the same data budget is collected on the mismatched arm: exploration trials
of the controller's initial mass-matrix PD with its noise, driven to seeded random configurations
around the start pose (``bench/mpc_models.py``'s exploration), 100 steps of 50 ms each; every fifth
trial is held out. On the rest it fits the learner's two global models, the ensemble and the
semi-parametric model (the nominal URDF model plus a learned residual), and reports their held-out
1/5/20-step errors next to the nominal URDF model's (:mod:`mbrl_ros.dynamics.evaluation`). Then it
reaches from the start pose to 4 seeded goals (``bench/mpc.py``'s: the demo goal and 3 random ones)
with iLQR (and MPPI with ``--mppi``) built from ``ControllerSettings()`` as the controller's planner
process builds it, on each model, in the mismatched arm, and records the final distance per goal;
and once more without the offset-free disturbance estimate (``disturbance_gain`` 0), which
otherwise corrects much of any model's error. Data and models are cached under
``bench/cache/mismatch/`` keyed by their settings.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mpc  # noqa: E402  (imports mbrl_ros first: thread settings)
import mpc_models  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from mbrl_ros.control.controller_settings import ControllerSettings  # noqa: E402
from mbrl_ros.control.planners import build_planner  # noqa: E402
from mbrl_ros.control.lg_policy import InitialControllerSettings, initial_pd_policy  # noqa: E402
from mbrl_ros.data.episodes import Episodes  # noqa: E402
from mbrl_ros.data.rollout import rollouts  # noqa: E402
from mbrl_ros.dynamics.ensemble import EnsembleDynamics, EnsembleSettings  # noqa: E402
from mbrl_ros.dynamics.kinematics import reachable_goals  # noqa: E402
from mbrl_ros.dynamics.physics import PhysicsModel  # noqa: E402
from mbrl_ros.sim.arm import SimSettings, SimulatedArm  # noqa: E402
from mbrl_ros.sim.mismatch import MismatchSettings, mismatch_profile  # noqa: E402
from mbrl_ros.sim.reach import planner_callback, receding_horizon_reach  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE_DIR = os.path.join(ROOT, "bench", "cache", "mismatch")
Q0, DT_S = mpc_models.Q0, mpc_models.DT_S
REALISTIC = mismatch_profile("realistic")
NONE = mismatch_profile("none")
#: name -> the mismatch; each single condition is one part of the realistic profile (the payload at
#: its centre of mass and inertia), latency and noise at a few times their realistic size.
CONDITIONS: dict[str, MismatchSettings] = {
    "exact": NONE,
    "payload 1 kg": NONE.replace(payload_mass_kg=1.0, payload_com_m=REALISTIC.payload_com_m,
                                 payload_inertia_kgm2=REALISTIC.payload_inertia_kgm2),
    "payload 2 kg": NONE.replace(payload_mass_kg=2.0, payload_com_m=REALISTIC.payload_com_m,
                                 payload_inertia_kgm2=REALISTIC.payload_inertia_kgm2),
    "friction": NONE.replace(viscous_friction_nms_per_rad=REALISTIC.viscous_friction_nms_per_rad,
                             coulomb_friction_nm=REALISTIC.coulomb_friction_nm),
    "latency 10 ms": NONE.replace(command_latency_ms=10.0),
    "noise": NONE.replace(position_noise_rad=5e-4, velocity_noise_rad_s=2e-2),
    "realistic": REALISTIC,
    # Stronger than realistic, as the issue asks when the nominal model still reaches every goal under
    # it: the Panda's rated payload, friction doubled, a 10 ms bus, 10 % gain errors.
    "strong": REALISTIC.replace(payload_mass_kg=3.0, command_latency_ms=10.0,
                                viscous_friction_nms_per_rad=tuple(2 * v for v in REALISTIC.viscous_friction_nms_per_rad),
                                coulomb_friction_nm=tuple(2 * v for v in REALISTIC.coulomb_friction_nm),
                                torque_gain=tuple(1.1 if i % 2 == 0 else 0.9 for i in range(7))),
}
#: model name -> semi-parametric (the nominal URDF model plus a learned residual)
MODELS = {"ensemble": False, "semi-parametric": True}
#: The planners' settings, beside the controller's defaults: without the offset-free disturbance
#: estimate, which otherwise corrects much of the nominal model's error (see the README).
VARIANTS = {"": {}, ", no disturbance estimate": {"disturbance_gain": 0.0}}


@dataclass(frozen=True)
class Budget:
    """The data every condition gets: ``trials`` exploration trials and ``reach_trials`` reaches by
    iLQR on the nominal URDF model (the controller a user starts with) to seeded goals other than
    the benchmark's; every fifth of each held out."""

    trials: int = 25
    reach_trials: int = 0
    horizon_steps: int = 100
    spread_rad: float = 0.5
    max_epochs: int = 200
    seed: int = 0


def _key(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


def nominal_reaches(arm: SimulatedArm, physics: PhysicsModel, goals: np.ndarray, steps: int) -> Episodes:
    """One episode per goal: iLQR on the nominal model (the controller's defaults) from ``Q0``, the
    states at the control steps and the mean torque of each step, as the recorder records them."""
    settings = ControllerSettings().replace(mode="ilqr", model_source="physics")
    episodes = []
    for goal in goals:
        planner = build_planner(settings.planner(), physics, physics, Q0)
        run = receding_horizon_reach(arm, planner_callback(planner, goal), goal, steps, DT_S, q0=Q0)
        episodes.append(Episodes(run.X[None], run.U[None], (DT_S * np.arange(steps + 1))[None]))
    return Episodes.concatenate(episodes)


def collect(mismatch: MismatchSettings, budget: Budget, physics: PhysicsModel,
            avoid_goals: np.ndarray = ()) -> tuple[Episodes, Episodes]:
    """``(train, held_out)`` episodes recorded on the mismatched arm (cached); the reaching trials'
    goals keep 5 cm from ``avoid_goals``."""
    os.makedirs(CACHE_DIR, exist_ok=True)
    key = _key(mismatch.as_dict(), asdict(budget))
    paths = [os.path.join(CACHE_DIR, f"data_{key}_{part}.safetensors") for part in ("train", "held_out")]
    if all(os.path.exists(p) for p in paths):
        return tuple(mpc_models._load_episodes(p) for p in paths)
    targets = mpc_models.random_configurations(budget.trials, budget.seed + 1, budget.spread_rad, physics)
    # The controller's initial PD knows only the nominal arm, as on a real one.
    M0 = physics.mass_matrix(Q0)
    rng = np.random.default_rng(budget.seed + 2)
    init = InitialControllerSettings(omega_rad_s=6.0, noise_scale_rad_s2=2.0)
    with SimulatedArm(SimSettings(robot="panda", seed=budget.seed, reset_noise_rad=0.005), mismatch) as arm:
        sources = [rollouts(arm, lambda i: initial_pd_policy(budget.horizon_steps, targets[i], M0, init).sampler(rng),
                            budget.trials, budget.horizon_steps, DT_S, (), Q0)]
        if budget.reach_trials:
            goals = reachable_goals(physics.kinematics, Q0, budget.reach_trials, budget.seed + 3, min_separation_m=0.05,
                                    avoid_m=list(avoid_goals), from_center_m=(0.10, 0.35), limit_margin_rad=0.1)
            sources.append(nominal_reaches(arm, physics, goals, budget.horizon_steps))
    def every_fifth(keep: bool) -> Episodes:  # held out (keep) or not, of each source with such trials
        return Episodes.concatenate([e.select(picked) for e in sources
                                     if (picked := [i for i in range(e.n_trials) if (i % 5 == 4) == keep])])

    train, held = every_fifth(False), every_fifth(True)
    for p, e in zip(paths, (train, held)):
        mpc_models._save_episodes(p, e)
    return train, held


def fit(name: str, train: Episodes, mismatch: MismatchSettings, budget: Budget, physics: PhysicsModel,
        log=print) -> tuple[EnsembleDynamics, dict]:
    """The learner's model ``name`` (:data:`MODELS`) at its default shape trained on ``train`` (cached)."""
    semi = MODELS[name]
    settings = EnsembleSettings(max_epochs_per_train=budget.max_epochs, seed=budget.seed)
    path = os.path.join(CACHE_DIR, f"model_{name}_{_key(mismatch.as_dict(), asdict(budget), asdict(settings))}.safetensors")
    return mpc_models.cached_ensemble(path, name, train, settings, physics if semi else None, log)


def run_condition(name: str, mismatch: MismatchSettings, budget: Budget, goals: np.ndarray, steps: int,
                  modes: tuple[str, ...], physics: PhysicsModel) -> dict:
    start = time.perf_counter()
    train, held = collect(mismatch, budget, physics, goals)
    models, training = {}, {}
    for model_name in MODELS:
        models[model_name], training[model_name] = fit(model_name, train, mismatch, budget, physics)
    k_step = mpc_models.k_step_table({"nominal URDF": physics, **models, "hold x": None}, held)
    settings = ControllerSettings()
    reaches = {}
    with SimulatedArm(SimSettings(robot="panda"), mismatch) as sim:
        for mode, (label, changes) in [(m, v) for m in modes for v in VARIANTS.items()]:
            for model_name, model in {"nominal URDF": physics, **models}.items():
                s = settings.replace(mode=mode, model_source="physics" if model is physics else "learned", **changes)
                runs, times = mpc.run_ours(sim, s, model, physics, goals, steps)
                row = reaches[f"{mode}{label} / {model_name}"] = {
                    "final_cm": [r["final_cm"] for r in runs], "max_last_second_cm": [r["max_last_second_cm"] for r in runs],
                    "plan": mpc.stats_ms(times), "settings_changed": changes}
                print(f"  {mode}{label} / {model_name:<16} final cm " + " ".join(f"{r['final_cm']:6.2f}" for r in runs)
                      + f"  plan {row['plan']['median_ms']:.0f} ms", flush=True)
    return {"mismatch": mismatch.as_dict(), "n_train_trials": int(train.n_trials), "n_held_out_trials": int(held.n_trials),
            "training": training, "k_step": k_step, "reach": reaches, "wall_s": time.perf_counter() - start}


def markdown(r: dict) -> str:
    models = ("nominal URDF", *MODELS)
    lines = [f"Panda, {r['budget']['trials']} exploration trials and {r['budget'].get('reach_trials', 0)} reaches by iLQR on the "
             f"nominal model, of {r['budget']['horizon_steps']} × 50 ms, per condition (every fifth held out), ensemble "
             f"{r['ensemble']}; reach from q0 for {r['steps']} steps of 50 ms, planners from ControllerSettings(), "
             "replanned every 50 ms in the mismatched arm.", "",
             "Goals (m): " + ", ".join("[" + ", ".join(f"{v:.3f}" for v in g) + "]" for g in r["goals_m"]), "",
             "Held-out k-step position errors, RMS over joints (mrad), " + " / ".join(models) + ":", "",
             "| condition | 1-step | 5-step | 20-step |", "| --- | --- | --- | --- |"]
    for name, c in r["conditions"].items():
        lines.append(f"| {name} | " + " | ".join(" / ".join(f"{c['k_step'][m][k]['position_mrad']:.1f}" for m in models)
                                                for k in ("1", "5", "20")) + " |")
    for mode in r["modes"]:
        lines += ["", f"{mode}: final distance per goal (cm)" + (", the controller's defaults and without the "
                  "disturbance estimate (disturbance_gain 0)" if len(VARIANTS) > 1 else "") + ":", "",
                  "| condition | model | " + " | ".join(label.lstrip(", ") or "defaults" for label in VARIANTS) + " |",
                  "| --- | --- | " + " | ".join("---" for _ in VARIANTS) + " |"]
        for name, c in r["conditions"].items():
            for m in models:
                cells = [" / ".join(f"{v:.2f}" for v in c["reach"][f"{mode}{label} / {m}"]["final_cm"])
                         if f"{mode}{label} / {m}" in c["reach"] else "–" for label in VARIANTS]
                lines.append(f"| {name} | {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(r: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, models = list(r["conditions"]), ("nominal URDF", *MODELS)
    fig, ax = plt.subplots(1, 1 + len(VARIANTS), figsize=(16, 4.5))
    x, width = np.arange(len(names)), 0.8 / len(models)
    for i, model in enumerate(models):
        offset = (i - (len(models) - 1) / 2) * width
        ax[0].bar(x + offset, [r["conditions"][n]["k_step"][model]["20"]["position_mrad"] for n in names], width, label=model)
        for a, label in zip(ax[1:], VARIANTS):
            row = f"ilqr{label} / {model}"
            worst = [max(r["conditions"][n]["reach"][row]["final_cm"]) if row in r["conditions"][n]["reach"] else np.nan
                     for n in names]
            a.bar(x + offset, worst, width, label=model)
            a.set_title(f"iLQR{label or ', the controller defaults'}", fontsize=9)
    ax[0].set(ylabel="held-out 20-step position error (mrad)", yscale="log")
    for a in ax[1:]:
        a.set(ylabel="worst final distance of 4 goals (cm)", yscale="log")
        a.axhline(1.0, color="k", lw=0.8, ls=":")
    for a in ax:
        a.set_xticks(x, names, rotation=30, ha="right")
        a.legend(fontsize=7)
    fig.suptitle("Panda under model mismatch: the nominal URDF model vs the learned models (the same data budget)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: exact and realistic, 10 trials, 20 epochs, "
                        "2 goals, 40 steps")
    parser.add_argument("--conditions", default=None, help="comma-separated subset of: " + ", ".join(CONDITIONS))
    parser.add_argument("--mppi", action="store_true", help="reach with MPPI too")
    parser.add_argument("--trials", type=int, default=Budget.trials, help="exploration trials per condition")
    parser.add_argument("--reach-trials", type=int, default=Budget.reach_trials,
                        help="reaching trials per condition, by iLQR on the nominal model (the data a user's first runs give)")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "mismatch.json"))
    parser.add_argument("--plot", default=os.path.join(ROOT, "docs", "mismatch.png"))
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="only combine the conditions of these results "
                        "(runs of other conditions, e.g. in parallel) into --out, its table and the plot")
    args = parser.parse_args(argv)
    if args.merge:
        results = {}
        for path in args.merge:
            with open(path) as fh:
                part = json.load(fh)
            results = {**part, "conditions": {**results.get("conditions", {}), **part["conditions"]}}
        results["conditions"] = {n: results["conditions"][n] for n in CONDITIONS if n in results["conditions"]}
        plot(results, args.plot)
        print(write(results, args.out))
        return 0
    torch.set_num_threads(1)
    budget = Budget(trials=10, reach_trials=min(args.reach_trials, 5), max_epochs=20) if args.quick else \
        Budget(trials=args.trials, reach_trials=args.reach_trials)
    steps = 40 if args.quick else 100
    names = ["exact", "realistic"] if args.quick else list(CONDITIONS)
    if args.conditions:
        names = [n.strip() for n in args.conditions.split(",")]
    physics = PhysicsModel.from_robot("panda", dt_s=DT_S)
    goals = np.vstack([mpc.DEMO_GOAL, reachable_goals(physics.kinematics, Q0, 1 if args.quick else 3, 7, min_separation_m=0.0,
                                                      from_center_m=(0.10, 0.35), limit_margin_rad=0.1)])
    modes = ("ilqr", "mppi") if args.mppi else ("ilqr",)
    results = {"budget": asdict(budget), "steps": steps, "goals_m": goals.tolist(), "modes": list(modes),
               "ensemble": "7 members (5 elites), 4×200 SiLU (EnsembleSettings())",
               "rows": [f"{mode}{label} / {m}" for mode in modes for label in VARIANTS for m in ("nominal URDF", *MODELS)],
               "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__},
               "date": time.strftime("%Y-%m-%d"), "conditions": {}}
    previous = {}
    if os.path.exists(args.out) and args.conditions:  # a partial run adds to the last one
        with open(args.out) as fh:
            previous = json.load(fh).get("conditions", {})
    results["conditions"] = {n: previous[n] for n in CONDITIONS if n in previous and n not in names}
    for name in names:
        print(f"{name}:", flush=True)
        results["conditions"][name] = run_condition(name, CONDITIONS[name], budget, goals, steps, modes, physics)
        results["conditions"] = {n: results["conditions"][n] for n in CONDITIONS if n in results["conditions"]}
        write(results, args.out)  # a long run keeps what it has measured
    plot(results, args.plot)
    print(write(results, args.out))
    print(f"wrote {args.out}, {os.path.splitext(args.out)[0]}.md and {args.plot}")
    return 0


def write(results: dict, path: str) -> str:
    """The JSON at ``path`` and the markdown table beside it; returns the table."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    table = markdown(results)
    for suffix, text in ((".json", json.dumps(results, indent=2)), (".md", table)):
        with open(os.path.splitext(path)[0] + suffix, "w") as fh:
            fh.write(text)
    return table


if __name__ == "__main__":
    raise SystemExit(main())
