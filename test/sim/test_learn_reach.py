"""Shortened, seeded end-to-end LQR-FLM run on the simulated Panda: cost must drop by >= 50 %."""

import importlib.util
import os
import sys

import torch

_BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "learn_reach.py")


def _bench():
    spec = importlib.util.spec_from_file_location("learn_reach_bench", _BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_lqr_flm_learns_reaching_from_no_model(tmp_path):
    torch.set_num_threads(1)
    bench = _bench()
    summary = bench.run(bench.ReachSettings(iterations=3, trials_per_iteration=5, seed=0), verbose=False)
    costs = [r["mean_sample_cost"] for r in summary["rows"]]
    print("costs per iteration", [round(c, 2) for c in costs])
    assert summary["final_cost"] <= 0.5 * summary["initial_cost"], costs
    assert summary["rows"][-1]["sample_final_distance_m"] < 0.5 * summary["rows"][0]["sample_final_distance_m"]
    for row in summary["rows"][:-1]:
        assert row["kl_nats"] < 1.1 * row["epsilon_nats"]
    bench.plot(summary, str(tmp_path / "curve.png"))
    assert (tmp_path / "curve.png").stat().st_size > 0
