#!/usr/bin/env python3
"""Throughput of ``mbrl-ros fit``: messages read per second and the time to fit 50 episodes.

The bag is what the demo's recorder would hold for 10 iterations of 5 trials: the simulated Panda
(PyBullet, 1 kHz) exploring with a mass-matrix-scaled PD and noise, T = 100 steps of dt = 0.05 s,
``/joint_states`` at 500 Hz, torque commands at 250 Hz, trial markers, one MCAP bag. Then the fit
runs exactly as the command does (default settings: ensemble of 7 × 4×200, at most 200 epochs).

    python bench/fit.py                     # writes bench/results/fit.json, prints a table

Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)
sys.path.insert(0, os.path.join(_ROOT, "test", "sim"))  # the simulated recording, a test fixture

import mbrl_ros  # noqa: E402,F401  (thread settings before numpy and torch load)
import torch  # noqa: E402

from _sim_recording import RecordingSettings, record_exploration  # noqa: E402
from mbrl_ros.fit import FitSettings, run  # noqa: E402

STEPS, DT_S, TRIALS = 100, 0.05, 50


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=TRIALS)
    parser.add_argument("--epochs", type=int, default=FitSettings.ensemble_epochs)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "fit.json"))
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="mbrl_fit_bench_") as tmp:
        bag = Path(tmp) / "bag"
        start = time.perf_counter()
        _, messages = record_exploration(bag, RecordingSettings(trials=args.trials, steps=STEPS, dt_s=DT_S, storage="mcap"))
        record_s = time.perf_counter() - start
        bag_bytes = sum(f.stat().st_size for f in bag.iterdir())
        report = run(FitSettings(bags=(str(bag),), out_dir=str(Path(tmp) / "model"), ensemble_epochs=args.epochs))
    models = report["models"]
    one_step = {name: {"position_rad": e["1"]["position_all_joints_rad"], "velocity_rad_s": e["1"]["velocity_all_joints_rad_s"]}
                for name, e in report["evaluation"]["errors"].items()}
    results = {
        "bag": {"trials": args.trials, "steps": STEPS, "dt_s": DT_S, "messages": messages, "bytes": bag_bytes,
                "storage": "mcap", "joint_states_hz": 500.0, "commands_hz": 250.0, "simulate_and_write_s": record_s},
        "machine": {"cpus": os.cpu_count(), "load_average_1min_before": load_before[0], "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(), "torch": torch.__version__},
        "read": {"messages": report["reading"]["messages"], "time_s": report["reading"]["time_s"],
                 "messages_per_s": report["reading"]["messages_per_s"], "align_time_s": report["reading"]["align_time_s"]},
        "episodes": {"fit": len(report["split"]["fit"]), "holdout": len(report["split"]["holdout"])},
        "fit": {
            "tvlg_gmm_prior_s": models["tvlg_gmm_prior"]["fit_time_s"],
            "tvlg_no_prior_s": models["tvlg_no_prior"]["fit_time_s"],
            "ensemble_s": models["ensemble"]["train_time_s"],
            "ensemble_epochs": models["ensemble"]["epochs"],
            "total_s": report["fit_time_s"],
        },
        "evaluation_s": report["evaluation_time_s"],
        "wall_s": report["wall_time_s"],
        "one_step_holdout_error": one_step,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print_table(results)
    print(f"\nwrote {out}")
    return 0


def print_table(r: dict) -> None:
    bag, fit = r["bag"], r["fit"]
    print(f"\nmbrl-ros fit on {bag['trials']} episodes x {bag['steps']} steps (dt {bag['dt_s']} s): {bag['messages']} messages, "
          f"{bag['bytes'] / 1e6:.0f} MB MCAP; {r['machine']['cpus']} CPUs, load {r['machine']['load_average_1min_before']:.1f} before")
    print(f"{'stage':<34}{'time_s':>9}  rate")
    print(f"{'read bags':<34}{r['read']['time_s']:>9.2f}  {r['read']['messages_per_s']:,.0f} messages/s")
    print(f"{'align into episodes':<34}{r['read']['align_time_s']:>9.2f}")
    print(f"{'TVLG + GMM prior':<34}{fit['tvlg_gmm_prior_s']:>9.2f}  {r['episodes']['fit']} episodes")
    print(f"{'TVLG, no prior':<34}{fit['tvlg_no_prior_s']:>9.2f}")
    print(f"{'ensemble (' + str(fit['ensemble_epochs']) + ' epochs)':<34}{fit['ensemble_s']:>9.2f}  "
          f"{fit['ensemble_epochs'] / fit['ensemble_s']:.1f} epochs/s")
    print(f"{'fit, all models (and checkpoints)':<34}{fit['total_s']:>9.2f}")
    print(f"{'evaluation':<34}{r['evaluation_s']:>9.2f}  {r['episodes']['holdout']} held-out episodes")
    print(f"{'mbrl-ros fit, wall':<34}{r['wall_s']:>9.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
