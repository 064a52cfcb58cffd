"""Shortened, seeded end-to-end LQR-FLM run on the simulated Panda: cost must drop by >= 50 %.

Runs ``bench/learn_reach.py`` itself (3 iterations x 5 trials, T = 100, dt = 0.05 s) in a subprocess,
which also gives it single-threaded BLAS (set before numpy loads).
"""

import json
import os
import subprocess
import sys

import numpy as np
from matplotlib.colors import to_rgb
from matplotlib.image import imread

_BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "learn_reach.py")


def test_lqr_flm_learns_reaching_from_no_model(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, _BENCH, "--iterations", "3", "--trials", "5", "--seed", "0", "--threads", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    print(proc.stdout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "learn_reach.json").read_text())
    costs = [r["mean_sample_cost"] for r in summary["rows"]]
    assert summary["final_cost"] <= 0.5 * summary["initial_cost"], costs
    assert summary["rows"][-1]["sample_final_distance_m"] < 0.5 * summary["rows"][0]["sample_final_distance_m"]
    for row in summary["rows"][:-1]:
        assert row["kl_nats"] < 1.1 * row["epsilon_nats"]
    image = imread(out / "learn_reach.png")
    assert image.shape[:2] == (400, 1000), "10 x 4 in at 100 dpi"
    for colour in ("C0", "C1"):  # the noisy trials and the mean controller, cost and distance
        assert (np.abs(image[..., :3] - to_rgb(colour)).max(axis=-1) < 0.05).sum() > 200, f"no {colour} line"
