#!/usr/bin/env python3
"""End-to-end LQR-FLM reaching on the simulated Panda, learned from no dynamics model (no ROS).

Local time-varying linear-Gaussian models are fitted to each iteration's trials with a GMM prior,
and the linear-Gaussian controller is improved by the KL-constrained LQR-FLM update. The cost uses
the arm's forward kinematics (the end-effector target), never its dynamics.

    python bench/learn_reach.py --out runs/learn_reach            # T=100, dt=0.05, 5 trials x 10 iterations

Writes ``learn_reach.json`` (settings, per-iteration table, final distances, timings) and
``learn_reach.png`` (learning curve) into ``--out`` and prints a table per iteration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mbrl_ros  # noqa: E402,F401  (thread settings before numpy loads)
import numpy as np  # noqa: E402

from mbrl_ros.control.costs import CostSettings, ReachCost  # noqa: E402
from mbrl_ros.control.lg_policy import InitialControllerSettings, initial_pd_policy  # noqa: E402
from mbrl_ros.control.lqr_flm import LQRFLMSettings  # noqa: E402
from mbrl_ros.control.lqr_flm_trainer import LQRFLMTrainer  # noqa: E402
from mbrl_ros.data.rollout import rollout, rollouts  # noqa: E402
from mbrl_ros.dynamics.kinematics import ArmKinematics, load_arm_model  # noqa: E402
from mbrl_ros.dynamics.tvlg import GMMPrior, GMMPriorSettings  # noqa: E402
from mbrl_ros.sim.arm import SimSettings, SimulatedArm  # noqa: E402

HOME = np.array([0.0, -0.5, 0.0, -2.0, 0.0, 1.6, 0.8])
# The end-effector target is the forward kinematics of this configuration (about 27 cm from home).
GOAL_Q = HOME + np.array([0.6, 0.35, 0.0, 0.35, 0.0, -0.3, 0.0])


@dataclass(frozen=True)
class ReachSettings:
    """Settings of the learning run (units in names)."""

    iterations: int = 10
    trials_per_iteration: int = 5
    horizon_steps: int = 100
    dt_s: float = 0.05
    seed: int = 0
    reset_noise_rad: float = 0.005
    kl_step_nats_per_step: float = 0.2
    pd_omega_rad_s: float = 6.0
    noise_scale_rad_s2: float = 2.0
    ee_weight: float = 10.0
    ee_weight_terminal: float = 1000.0
    effort_weight: float = 1e-3
    velocity_weight: float = 0.01
    velocity_weight_terminal: float = 10.0
    prior_strength: float = 1.0

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.trials_per_iteration < 2 or self.horizon_steps < 2:
            raise ValueError("need iterations >= 1, trials_per_iteration >= 2, horizon_steps >= 2")
        if not self.dt_s > 0.0:
            raise ValueError(f"dt_s must be > 0, got {self.dt_s}")


def run(settings: ReachSettings, verbose: bool = True, on_episodes=None) -> dict:
    """Run the learning loop; returns a JSON-serialisable summary. ``on_episodes(iteration, episodes)``
    receives every iteration's trials (the final evaluation trials included)."""
    s = settings
    rng = np.random.default_rng(s.seed)
    arm = SimulatedArm(SimSettings(robot="panda", seed=s.seed, reset_noise_rad=s.reset_noise_rad))
    kin = ArmKinematics(load_arm_model("panda"))
    target = kin.ee_position(GOAL_Q[None])[0]
    q0 = HOME.copy()
    M0 = arm.mass_matrix(q0)
    cost_settings = CostSettings(
        ee_target_m=tuple(target.tolist()),
        ee_weight=s.ee_weight,
        ee_weight_terminal=s.ee_weight_terminal,
        effort_weight=s.effort_weight,
        effort_inertia_scaled=True,
        velocity_weight=s.velocity_weight,
        velocity_weight_terminal=s.velocity_weight_terminal,
    )
    cost = ReachCost(cost_settings, kin, arm.position_lower_rad, arm.position_upper_rad, s.effort_weight / np.diag(M0))
    policy = initial_pd_policy(
        s.horizon_steps, q0, M0, InitialControllerSettings(omega_rad_s=s.pd_omega_rad_s, noise_scale_rad_s2=s.noise_scale_rad_s2)
    )
    prior = GMMPrior(GMMPriorSettings(strength=s.prior_strength), seed=s.seed)
    trainer = LQRFLMTrainer(policy, cost, LQRFLMSettings(kl_step_nats_per_step=s.kl_step_nats_per_step), prior=prior)

    def final_distances(eps) -> np.ndarray:
        return np.linalg.norm(np.asarray(eps.metadata["final_ee_positions_m"]) - target, axis=1)

    def evaluate_mean(pol) -> tuple[float, float]:
        ep = rollout(arm, lambda x, t: pol.mean_action(x, t), s.horizon_steps, s.dt_s, target, q0, 0.0)
        return float(final_distances(ep)[0]), float(np.sum(cost.evaluate(ep.x[0], ep.u[0])))

    rows = []
    header = f"{'iter':>4} {'cost':>10} {'dist_cm':>8} {'mean_cm':>8} {'kl':>7} {'eps':>7} {'eta':>9} {'mult':>6} {'fit_s':>6} {'gmm_s':>6} {'upd_s':>6}"
    if verbose:
        print(f"target {np.round(target, 3).tolist()} m, start distance {np.linalg.norm(arm.ee_position() - target) * 100:.1f} cm")
        print(header)
    start = time.perf_counter()
    for it in range(s.iterations + 1):
        pol = trainer.policy
        eps = rollouts(arm, lambda i: pol.sampler(rng), s.trials_per_iteration, s.horizon_steps, s.dt_s, target, q0)
        if on_episodes is not None:
            on_episodes(it, eps)
        dist = final_distances(eps)
        mean_dist, mean_cost_det = evaluate_mean(pol)
        sample_costs = [float(np.sum(cost.evaluate(eps.x[n], eps.u[n]))) for n in range(eps.n_trials)]
        row = {
            "iteration": it,
            "mean_sample_cost": float(np.mean(sample_costs)),
            "mean_policy_cost": mean_cost_det,
            "sample_final_distance_m": float(np.mean(dist)),
            "sample_final_distance_max_m": float(np.max(dist)),
            "mean_policy_final_distance_m": mean_dist,
            "max_abs_velocity_rad_s": float(np.max(np.abs(eps.x[:, :, 7:]))),
        }
        if it < s.iterations:
            stats = trainer.iteration(eps)
            row.update(
                kl_nats=stats.kl_nats, epsilon_nats=stats.epsilon_nats, eta=stats.eta, step_mult=stats.step_mult,
                dynamics_fit_time_s=stats.dynamics_fit_time_s, gmm_fit_time_s=stats.prior_fit_time_s,
                update_time_s=stats.update_time_s, predicted_cost=stats.predicted_cost,
            )
        rows.append(row)
        if verbose:
            print(
                f"{it:>4} {row['mean_sample_cost']:>10.2f} {row['sample_final_distance_m'] * 100:>8.2f} "
                f"{mean_dist * 100:>8.2f} {row.get('kl_nats', float('nan')):>7.2f} {row.get('epsilon_nats', float('nan')):>7.2f} "
                f"{row.get('eta', float('nan')):>9.3g} {row.get('step_mult', float('nan')):>6.2f} "
                f"{row.get('dynamics_fit_time_s', float('nan')):>6.3f} {row.get('gmm_fit_time_s', float('nan')):>6.3f} "
                f"{row.get('update_time_s', float('nan')):>6.3f}",
                flush=True,
            )
    arm.close()
    return {
        "settings": asdict(s),
        "target_m": target.tolist(),
        "rows": rows,
        "final_sample_distance_m": rows[-1]["sample_final_distance_m"],
        "final_mean_policy_distance_m": rows[-1]["mean_policy_final_distance_m"],
        "initial_cost": rows[0]["mean_sample_cost"],
        "final_cost": rows[-1]["mean_sample_cost"],
        "wall_time_s": time.perf_counter() - start,
    }


def plot(summary: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["rows"]
    its = [r["iteration"] for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    ax[0].semilogy(its, [r["mean_sample_cost"] for r in rows], "o-", label="noisy trials (mean)")
    ax[0].semilogy(its, [r["mean_policy_cost"] for r in rows], "s--", label="mean controller")
    ax[0].set_xlabel("iteration")
    ax[0].set_ylabel("trajectory cost")
    ax[0].legend()
    ax[1].plot(its, [100 * r["sample_final_distance_m"] for r in rows], "o-", label="noisy trials (mean)")
    ax[1].plot(its, [100 * r["mean_policy_final_distance_m"] for r in rows], "s--", label="mean controller")
    ax[1].axhline(3.0, color="k", lw=0.8, ls=":", label="3 cm")
    ax[1].set_xlabel("iteration")
    ax[1].set_ylabel("final end-effector distance (cm)")
    ax[1].legend()
    fig.suptitle("LQR-FLM + TVLG/GMM prior, Panda reach (PyBullet)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/learn_reach", help="output directory")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kl-step", type=float, default=ReachSettings.kl_step_nats_per_step)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    settings = ReachSettings(iterations=args.iterations, trials_per_iteration=args.trials, seed=args.seed,
                             kl_step_nats_per_step=args.kl_step)
    summary = run(settings)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "learn_reach.json"), "w") as fh:
        json.dump(summary, fh, indent=2)
    plot(summary, os.path.join(args.out, "learn_reach.png"))
    ok = summary["final_sample_distance_m"] < 0.03
    print(
        f"final distance: noisy trials {summary['final_sample_distance_m'] * 100:.2f} cm, mean controller "
        f"{summary['final_mean_policy_distance_m'] * 100:.2f} cm ({'< 3 cm' if ok else 'NOT < 3 cm'}); "
        f"cost {summary['initial_cost']:.1f} -> {summary['final_cost']:.1f}; wall {summary['wall_time_s']:.1f} s; "
        f"wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
