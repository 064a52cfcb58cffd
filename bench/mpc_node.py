"""Receding-horizon reaching inside the running nodes, over ROS, with the learner training beside it.

Run: ``python bench/mpc_node.py --checkpoint RUN/models/ensemble_latest.safetensors [--bags RUN/bags]``
(a ``make demo`` run folder). Writes ``bench/results/mpc_node.json`` and ``.md``.

The four nodes of ``config/mbrl_sim.yaml`` run as separate processes on this machine, with the
node's default planner settings: the controller in ``ilqr`` mode on the learned model (no LQR-FLM
trials), the learner started from the checkpoint and, with ``--bags``, training on those bags
during the reaches (the 2 cores are shared with it, as in a learning run). Each planner (iLQR,
then MPPI) reaches the demo's 3 seeded goals from the start configuration (the controller's
``~/reset``) for 5 s, as ``make demo`` does (:func:`mbrl_ros.demo.reach_goals`). Reported per goal:
distance at 5 s, time to < 2 cm, the controller's plan time p50/p95 and plan latency p95 (request
to result, from its ``/diagnostics``) and stale plans; the learner's training state at the start
and the end of each planner's reaches.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402

from mbrl_ros.demo import DemoSettings, reach_goals  # noqa: E402
from mbrl_ros.dynamics.kinematics import ArmKinematics, load_arm_model, reachable_goals  # noqa: E402
from mbrl_ros.launcher import ProcessGroup, config_path, node_specs_from_config  # noqa: E402
from mbrl_ros.ros import qos  # noqa: E402
from mbrl_ros.ros.conversions import JointStateDecoder  # noqa: E402
from mbrl_ros.ros.diagnostics import status_values  # noqa: E402
from mbrl_ros.ros.spin import spinning_node, wait_for  # noqa: E402
from mbrl_ros.ros.topic_monitor import TopicMonitor  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="the learned model the controller plans on")
    parser.add_argument("--bags", help="bag folder the learner trains on during the reaches (default: none)")
    parser.add_argument("--planners", default="ilqr,mppi")
    parser.add_argument("--work-dir", default="/tmp/mbrl_bench_mpc_node")
    parser.add_argument("--out", default=os.path.join(RESULTS, "mpc_node.json"))
    args = parser.parse_args(argv)
    demo = DemoSettings(reach_planners=tuple(args.planners.split(",")))
    config = yaml.safe_load(config_path("mbrl_sim").read_text())
    controller_yaml = config["mpc_controller"]["ros__parameters"]
    arm = load_arm_model(controller_yaml.get("robot", "panda"))
    kinematics, decoder = ArmKinematics(arm), JointStateDecoder(arm.spec.joint_names)
    q0 = np.asarray(controller_yaml.get("initial_positions_rad") or arm.spec.home_positions_rad, dtype=float)
    goals = reachable_goals(kinematics, q0, demo.reach_goals, demo.goal_seed, avoid_m=[controller_yaml["goal_xyz_m"]])
    work = os.path.join(args.work_dir, time.strftime("%Y%m%d_%H%M%S"))
    learner = {"checkpoint": os.path.abspath(args.checkpoint), "model_dir": os.path.join(work, "models")}
    if args.bags:
        learner["bag_paths"] = [os.path.abspath(args.bags)]
    specs = node_specs_from_config(config_path("mbrl_sim"), {
        "trajectory_recorder": {"bag_dir": os.path.join(work, "bags")},
        "dynamics_learner": learner,
        "mpc_controller": {"mode": "ilqr", "iterations": 0},
    })
    diagnostics: dict[str, str] = {}
    learner_status: dict[str, str] = {}

    def on_diagnostics(msg: DiagnosticArray) -> None:
        diagnostics.update(status_values(msg, "mpc_controller"))
        learner_status.update(status_values(msg, "dynamics_learner"))

    results = {"checkpoint": learner["checkpoint"], "bags": args.bags, "goals_m": goals.tolist(), "cpus": os.cpu_count(),
               "load_start": os.getloadavg()[0], "planners": {}}
    with ProcessGroup(specs, log_dir=os.path.join(work, "logs"), echo=False) as group, spinning_node("mbrl_bench") as node:
        node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, qos.DIAGNOSTICS)
        joints = TopicMonitor(node, JointState, "joint_states", qos.JOINT_STATES_RECORD)
        if not wait_for(lambda: int(diagnostics.get("model_version", "0")) > 0 and joints.count > 0, 120.0):
            raise RuntimeError(f"the controller got no model: {diagnostics}, exited {group.exited()}; logs in {work}")
        # Its planner child takes seconds to load torch and the model: the reaches start once it plans,
        # as in a learning run, where the child is warm by the time the reaches come.
        if not wait_for(lambda: float(diagnostics.get("plan_time_p50_ms", "0")) > 0.0, 120.0):
            raise RuntimeError(f"the controller made no plan: {diagnostics}; logs in {work}")
        for planner in demo.reach_planners:
            before = dict(learner_status)
            rows = reach_goals(node, joints, decoder, kinematics, diagnostics, q0, goals,
                               DemoSettings(reach_planners=(planner,)))
            results["planners"][planner] = {
                "goals": [{k: v for k, v in r.items() if k not in ("times_s", "distances_m", "positions_rad")} for r in rows],
                "learner_before": before, "learner_after": dict(learner_status), "load": os.getloadavg()[0]}
            write(results, args.out)
        if group.exited():
            raise RuntimeError(f"a node exited: {group.exited()}")
    print(write(results, args.out))
    return 0


def write(results: dict, path: str) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(results, fh, indent=2)
    lines = [f"In the nodes, over ROS, {results['cpus']} cores; checkpoint {results['checkpoint']}; learner training on "
             f"{results['bags'] or 'nothing'}; load {results['load_start']:.1f} at start.", "",
             "| planner | goal (m) | distance at 5 s (cm) | time to < 2 cm (s) | plan ms p50 | plan ms p95 | "
             "plan latency p95 (ms) | stale plans | learner training (ensemble trainings before → after) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for planner, row in results["planners"].items():
        trained = f"{row['learner_before'].get('ensemble_trainings', '?')} → {row['learner_after'].get('ensemble_trainings', '?')}"
        for g in row["goals"]:
            to = "never" if g["time_to_2cm_s"] is None else f"{g['time_to_2cm_s']:.2f}"
            lines.append(f"| {planner} | [{', '.join(f'{v:.3f}' for v in g['goal_m'])}] | {100 * g['distance_at_end_m']:.2f} | "
                         f"{to} | {g['plan_time_p50_ms']:.1f} | {g['plan_time_p95_ms']:.1f} | "
                         f"{g['plan_latency_p95_ms']:.1f} | {g['stale_plans']} | {trained} |")
    table = "\n".join(lines) + "\n"
    with open(os.path.splitext(path)[0] + ".md", "w") as fh:
        fh.write(table)
    return table


if __name__ == "__main__":
    raise SystemExit(main())
