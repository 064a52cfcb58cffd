"""Training data and learned models for ``bench/mpc.py``, built in-process and cached (no ROS).

Data: the demo's LQR-FLM run to the demo goal (``bench/learn_reach.py``: 8 iterations of 5 trials of
100 steps, plus the final iteration's trials) and exploration trials, the initial PD controller with
its noise driven to random joint configurations around the start pose (the region the random goals
of the benchmark come from; the LQR-FLM trials only cover the way to the demo goal). Every fifth
trial of each source is held out for the k-step errors. Each model variant is trained on the same
data. Everything lands under ``bench/cache/`` (ignored by git) keyed by its settings, so a re-run
only plans.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import mbrl_ros  # noqa: E402,F401  (thread settings before numpy's and torch's libraries load)
from mbrl_ros.control.lg_policy import InitialControllerSettings, initial_pd_policy  # noqa: E402
from mbrl_ros.data.episodes import Episodes  # noqa: E402
from mbrl_ros.data.rollout import rollouts  # noqa: E402
from mbrl_ros.dynamics import serialization  # noqa: E402
from mbrl_ros.dynamics.ensemble import EnsembleDynamics, EnsembleSettings  # noqa: E402
from mbrl_ros.dynamics.evaluation import PredictionError, hold, k_step_errors, time_invariant  # noqa: E402
from mbrl_ros.dynamics.physics import PhysicsModel  # noqa: E402
from mbrl_ros.sim.arm import SimSettings, SimulatedArm  # noqa: E402

CACHE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cache", "mpc")
Q0 = np.array([0.0, -0.5, 0.0, -2.0, 0.0, 1.6, 0.8])
DT_S = 0.05


@dataclass(frozen=True)
class DataSettings:
    lqr_flm_iterations: int = 8
    trials_per_iteration: int = 5
    exploration_trials: int = 40
    exploration_spread_rad: float = 0.5
    horizon_steps: int = 100
    seed: int = 0

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


#: name -> (hidden_layers, hidden_units, semi-parametric)
VARIANTS = {
    "4x200": (4, 200, False),
    "3x200": (3, 200, False),
    "3x128": (3, 128, False),
    "2x256": (2, 256, False),
    "semi 4x200": (4, 200, True),
    "semi 3x128": (3, 128, True),
}


def random_configurations(n: int, seed: int, spread_rad: float, physics: PhysicsModel) -> np.ndarray:
    """``n`` joint configurations ``q0 + U(-spread, spread)`` per joint, 0.1 rad inside the limits."""
    rng = np.random.default_rng(seed)
    lo, hi = physics.position_lower_rad + 0.1, physics.position_upper_rad - 0.1
    return np.clip(Q0 + rng.uniform(-spread_rad, spread_rad, (n, Q0.size)), lo, hi)


def _save_episodes(path: str, eps: Episodes) -> None:
    arrays, meta = eps.to_arrays()
    serialization.save(path, arrays, {"kind": "arrays", "episodes": meta})


def _load_episodes(path: str) -> Episodes:
    arrays, meta = serialization.load(path, "arrays")
    return Episodes.from_arrays(arrays, meta["episodes"])


def collect_data(s: DataSettings, log=print) -> tuple[Episodes, Episodes]:
    """``(train, held_out)`` episodes, from the cache when present."""
    os.makedirs(CACHE_DIR, exist_ok=True)
    paths = [os.path.join(CACHE_DIR, f"data_{s.key()}_{part}.safetensors") for part in ("train", "held_out")]
    if all(os.path.exists(p) for p in paths):
        return tuple(_load_episodes(p) for p in paths)
    import learn_reach

    start = time.perf_counter()
    lqr_flm: list[Episodes] = []
    learn_reach.run(learn_reach.ReachSettings(iterations=s.lqr_flm_iterations, trials_per_iteration=s.trials_per_iteration,
                                              horizon_steps=s.horizon_steps, dt_s=DT_S, seed=s.seed),
                    verbose=False, on_episodes=lambda it, eps: lqr_flm.append(eps))
    log(f"LQR-FLM data: {sum(e.n_trials for e in lqr_flm)} trials in {time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    physics = PhysicsModel.from_robot("panda", dt_s=DT_S)
    targets = random_configurations(s.exploration_trials, s.seed + 1, s.exploration_spread_rad, physics)
    M0 = physics.mass_matrix(Q0)
    rng = np.random.default_rng(s.seed + 2)
    init = InitialControllerSettings(omega_rad_s=6.0, noise_scale_rad_s2=2.0)
    with SimulatedArm(SimSettings(robot="panda", seed=s.seed, reset_noise_rad=0.005)) as arm:
        explore = rollouts(arm, lambda i: initial_pd_policy(s.horizon_steps, targets[i], M0, init).sampler(rng),
                           s.exploration_trials, s.horizon_steps, DT_S, (), Q0)
    log(f"exploration data: {explore.n_trials} trials in {time.perf_counter() - start:.0f} s")
    sources = [Episodes.concatenate(lqr_flm), explore]
    train = Episodes.concatenate([e.select([i for i in range(e.n_trials) if i % 5 != 4]) for e in sources])
    held = Episodes.concatenate([e.select([i for i in range(e.n_trials) if i % 5 == 4]) for e in sources])
    for p, eps in zip(paths, (train, held)):
        _save_episodes(p, eps)
    return train, held


def train_model(name: str, train: Episodes, data: DataSettings, max_epochs: int, physics: PhysicsModel,
                log=print) -> tuple[EnsembleDynamics, dict]:
    """The variant ``name`` trained on ``train`` (cached); returns the model and its training summary."""
    layers, units, semi = VARIANTS[name]
    settings = EnsembleSettings(hidden_layers=layers, hidden_units=units, max_epochs_per_train=max_epochs, seed=data.seed)
    tag = hashlib.sha1(json.dumps([data.key(), asdict(settings), semi]).encode()).hexdigest()[:10]
    path = os.path.join(CACHE_DIR, f"model_{name.replace(' ', '_')}_{tag}.safetensors")
    return cached_ensemble(path, name, train, settings, physics if semi else None, log)


def cached_ensemble(path: str, name: str, train: Episodes, settings: EnsembleSettings, base: PhysicsModel | None,
                    log=print) -> tuple[EnsembleDynamics, dict]:
    """The ensemble at ``path`` (with ``base``: the semi-parametric model on it), else trained on
    ``train`` and saved there; returns the model and its training summary."""
    if os.path.exists(path):
        model, meta = serialization.load_ensemble(path, base_model=base)
        return model, meta.get("bench", {})
    model = EnsembleDynamics(train.nx, train.nu, DT_S, settings, base_model=base)
    stats = model.train(train)
    info = {"epochs": stats.epochs, "train_s": stats.time_s, "n_train": stats.n_train}
    log(f"trained {name}: {stats.epochs} epochs in {stats.time_s:.0f} s")
    serialization.save_ensemble(path, model, bench=info)
    return model, info


def k_step_table(models: dict, held: Episodes, ks=(1, 5, 20)) -> dict:
    """Held-out RMS position (mrad) and velocity (mrad/s) errors per model and k (``mbrl-ros fit``'s metric)."""
    out = {}
    for name, model in models.items():
        predict = hold() if model is None else time_invariant(model)
        row = {}
        for k in ks:
            e = PredictionError.of(k, k_step_errors(predict, held, k))
            row[str(k)] = {"position_mrad": 1e3 * e.mean_position_rad, "velocity_mrad_s": 1e3 * e.mean_velocity_rad_s}
        out[name] = row
    return out


if __name__ == "__main__":  # prepare the cache: python bench/mpc_models.py [--quick]
    import torch

    torch.set_num_threads(1)
    quick = "--quick" in sys.argv
    data = DataSettings(lqr_flm_iterations=2, exploration_trials=10) if quick else DataSettings()
    train, held = collect_data(data)
    physics = PhysicsModel.from_robot("panda", dt_s=DT_S)
    models = {name: train_model(name, train, data, 20 if quick else 200, physics)[0] for name in VARIANTS}
    table = k_step_table({**models, "physics (URDF)": physics, "hold x": None}, held)
    for name, row in table.items():
        print(f"{name:<16}" + "".join(f"{row[k]['position_mrad']:>10.2f}" for k in row))
