"""``make demo``: the simulated Panda learns to reach from no model, over ROS 2, in four processes.

Starts sim_node, trajectory_recorder, dynamics_learner and mpc_controller (``config/mbrl_sim.yaml``)
as separate processes, prints one line per LQR-FLM iteration from ``/mbrl/progress``, then watches
the controller hold the goal in its final mode (iLQR on the learned ensemble) and measures the
end-effector distance from ``/joint_states``. Everything lands in a run folder,
``<runs_dir>/<timestamp>/`` (``runs_dir`` by default ``$ROS_HOME/mbrl_ros/runs``): the bags, model
checkpoints, node logs, ``learning_curve.png``, ``summary.json`` and ``reaches.gif``: the final
reaches replayed from the joint states the demo recorded, after the run, in a headless PyBullet
renderer of its own (:mod:`mbrl_ros.sim.render`). With ``mismatch`` (a profile of
:mod:`mbrl_ros.sim.mismatch`) the simulated arm differs from its URDF, and the goals are reached a
second time on the nominal URDF model (``model_source: physics``), side by side with the learned one.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from mbrl_ros.launcher import ProcessGroup, config_path, node_specs_from_config
from mbrl_ros.ros import qos
from mbrl_ros.ros.conversions import JointStateDecoder
from mbrl_ros.ros.diagnostics import status_values
from mbrl_ros.ros.spin import call_trigger, spinning_node, wait_for
from mbrl_ros.ros.topic_monitor import TopicMonitor
from mbrl_ros.run_folder import BAGS, LOGS, MODELS, default_runs_dir, run_name
from mbrl_ros.sim.robots import MISMATCH_PROFILES

COLUMNS = ("iter", "trials", "final_dist_cm", "cost", "KL", "eps", "model_v", "wall_s")


@dataclass(frozen=True)
class DemoSettings:
    """What the demo runs; node settings come from the YAML ``config``, these override a few."""

    config: str = "mbrl_sim"
    iterations: int = 8
    trials_per_iteration: int = 5
    trial_steps: int = 100
    hold_s: float = 20.0
    real_time_factor: float = 1.0
    timeout_s: float = 900.0
    runs_dir: str = field(default_factory=lambda: str(default_runs_dir()))
    reach_planners: tuple[str, ...] = ("ilqr", "mppi")
    reach_goals: int = 3
    reach_s: float = 5.0
    goal_seed: int = 0
    render_reaches: bool = True
    mismatch: str = "none"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.trials_per_iteration < 2 or self.trial_steps < 2:
            raise ValueError("need iterations >= 1, trials_per_iteration >= 2, trial_steps >= 2")
        if not (self.hold_s >= 0 and self.timeout_s > 0 and self.real_time_factor > 0):
            raise ValueError("hold_s must be >= 0, timeout_s and real_time_factor > 0")
        if self.reach_goals < 0 or not self.reach_s > 0 or set(self.reach_planners) - {"ilqr", "mppi"}:
            raise ValueError("reach_goals must be >= 0, reach_s > 0 and reach_planners ilqr and/or mppi")
        if self.mismatch not in MISMATCH_PROFILES:
            raise ValueError(f"mismatch must be one of {list(MISMATCH_PROFILES)}, got {self.mismatch!r}")


def _row_text(row: dict) -> str:
    return (
        f"{row['iteration']:>4} {row['trials']:>6} {row['mean_final_distance_m'] * 100:>13.2f} {row['mean_cost']:>10.1f} "
        f"{row['kl_nats']:>6.2f} {row['epsilon_nats']:>6.2f} {row['model_version']:>7} {row['wall_time_s']:>7.0f}"
    )


REACH_COLUMNS = ("planner", "goal_m", "dist_5s_cm", "to_2cm_s", "plan_p50_ms", "plan_p95_ms", "latency_p95_ms", "stale")
#: The arm is back at the start configuration when every joint is this close (rad; the sim's reset
#: noise is 0.005 rad).
_AT_START_RAD = 0.03


def _reach_row_text(row: dict) -> str:
    to_2cm = f"{row['time_to_2cm_s']:.2f}" if row["time_to_2cm_s"] is not None else "never"
    goal = "[" + ", ".join(f"{v:.3f}" for v in row["goal_m"]) + "]"
    return (f"{row['planner']:>7} {goal:>24} {row['distance_at_end_m'] * 100:>10.2f} {to_2cm:>8} "
            f"{row['plan_time_p50_ms']:>11.1f} {row['plan_time_p95_ms']:>11.1f} {row['plan_latency_p95_ms']:>14.1f} "
            f"{row['stale_plans']:>5}")


def reach_goals(node, joints: TopicMonitor, decoder: JointStateDecoder, kinematics, diagnostics: dict, q0: np.ndarray,
                 goals: np.ndarray, settings: DemoSettings, model_source: str = "learned") -> list[dict]:
    """Each planner, from the start configuration, to each goal, on ``model_source``: the
    controller is reset (its ``~/reset`` service), given the goal, the mode and the model, and the
    end-effector distance is measured from the moment the arm is back at the start for ``reach_s``."""
    from rclpy.parameter import Parameter
    from rclpy.parameter_client import AsyncParameterClient

    params = AsyncParameterClient(node, "mpc_controller")
    if not params.wait_for_services(timeout_sec=10.0):
        raise RuntimeError("the controller's parameter services do not answer")
    nq = kinematics.nq
    rows = []
    print()
    on_model = f", on the {model_source} model" if settings.mismatch != "none" else ""
    print(f"reaching {len(goals)} goals no trial trained on, from the start configuration, for {settings.reach_s:g} s each"
          f"{on_model}")
    print(" ".join(f"{c:>{w}}" for c, w in zip(REACH_COLUMNS, (7, 24, 10, 8, 11, 11, 14, 5))), flush=True)
    for planner in settings.reach_planners:
        for goal in goals:
            future = params.set_parameters([Parameter("mode", value=planner), Parameter("model_source", value=model_source),
                                            Parameter("goal_xyz_m", value=[float(v) for v in goal])])
            if not wait_for(future.done, 10.0) or not all(r.successful for r in future.result().results):
                raise RuntimeError(f"the controller refused mode {planner} / goal {goal.tolist()}")
            if call_trigger(node, "/mpc_controller/reset") is None:
                raise RuntimeError("the controller's reset did not answer")

            def at_start() -> bool:
                x = decoder.decode(joints.latest)
                return bool(np.max(np.abs(x[:nq] - q0)) < _AT_START_RAD and np.max(np.abs(x[nq:])) < 0.05)

            if not wait_for(at_start, 20.0):
                raise RuntimeError("the arm did not return to the start configuration")
            stale_before = int(diagnostics.get("stale_plans", "0"))
            started, times, distances, p50, p95, positions = time.monotonic(), [], [], [], [], []
            latency_p95 = []
            next_diagnostics = started + 1.0
            while (now := time.monotonic()) - started < settings.reach_s:
                q = decoder.decode(joints.latest)[:nq]
                times.append(now - started)
                positions.append(q.tolist())
                distances.append(float(np.linalg.norm(kinematics.ee_position(q[None])[0] - goal)))
                if now >= next_diagnostics:  # the controller's plan times of the last second
                    next_diagnostics += 1.0
                    if float(diagnostics.get("plan_time_p50_ms", "0")) > 0:
                        p50.append(float(diagnostics["plan_time_p50_ms"]))
                        p95.append(float(diagnostics["plan_time_p95_ms"]))
                        latency_p95.append(float(diagnostics.get("plan_latency_p95_ms", "nan")))
                time.sleep(0.05)
            below = [t for t, d in zip(times, distances) if d < 0.02]
            rows.append({"planner": planner, "model_source": model_source, "goal_m": goal.tolist(),
                         "distance_at_end_m": distances[-1],
                         "time_to_2cm_s": below[0] if below else None,
                         "plan_time_p50_ms": float(np.median(p50)) if p50 else float("nan"),
                         "plan_time_p95_ms": float(np.max(p95)) if p95 else float("nan"),
                         "plan_latency_p95_ms": float(np.max(latency_p95)) if latency_p95 else float("nan"),
                         "stale_plans": int(diagnostics.get("stale_plans", "0")) - stale_before,
                         "times_s": times, "distances_m": distances, "positions_rad": positions})
            print(_reach_row_text(rows[-1]), flush=True)
    return rows


def goal_comparison(reaches: list[dict]) -> str:
    """The distance after ``reach_s`` per planner and goal, one column per model source."""
    sources = list(dict.fromkeys(r["model_source"] for r in reaches))
    table = {}
    for r in reaches:
        table.setdefault((r["planner"], tuple(r["goal_m"])), {})[r["model_source"]] = r["distance_at_end_m"]
    lines = ["final distance (cm) on the mismatched arm: " + ", ".join(f"{s} model" for s in sources),
             f"{'planner':>7} {'goal_m':>24} " + " ".join(f"{s:>9}" for s in sources)]
    for (planner, goal), row in table.items():
        goal_text = "[" + ", ".join(f"{v:.3f}" for v in goal) + "]"
        lines.append(f"{planner:>7} {goal_text:>24} " + " ".join(
            f"{row[s] * 100:>9.2f}" if s in row else f"{'–':>9}" for s in sources))
    return "\n".join(lines)


def _plot_reaches(rows: list[dict], model_source: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for row in rows:
        goal = ", ".join(f"{v:.2f}" for v in row["goal_m"])
        ax.plot(row["times_s"], np.asarray(row["distances_m"]) * 100, "-" if row["planner"] == "ilqr" else "--",
                label=f"{row['planner']} to [{goal}]")
    ax.axhline(2.0, color="red", lw=0.8, label="2 cm")
    ax.set(xlabel="time since the arm was reset to the start (s)", ylabel="end-effector distance (cm)", yscale="log",
           title=f"Reaching goals no trial trained on, on the {model_source} model")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot(rows: list[dict], hold: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    it = [r["iteration"] for r in rows]
    fig, (ax_d, ax_c) = plt.subplots(1, 2, figsize=(10, 4))
    ax_d.plot(it, [r["mean_final_distance_m"] * 100 for r in rows], "o-", label="LQR-FLM trials (mean)")
    for r in rows:
        ax_d.scatter([r["iteration"]] * len(r["final_distances_m"]), np.asarray(r["final_distances_m"]) * 100, s=8, c="gray")
    if hold.get("final_distance_m") is not None:
        ax_d.axhline(hold["final_distance_m"] * 100, color="green", ls="--", label=f"{hold['mode']} hold")
    ax_d.axhline(3.0, color="red", lw=0.8, label="3 cm")
    ax_d.set(xlabel="iteration", ylabel="final end-effector distance (cm)", yscale="log", title="Reaching from no model")
    ax_d.legend()
    ax_c.plot(it, [r["mean_cost"] for r in rows], "o-")
    ax_c.set(xlabel="iteration", ylabel="mean trial cost", yscale="log", title="Cost")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_demo(settings: DemoSettings) -> dict:
    run_dir = Path(settings.runs_dir) / run_name()
    run_dir.mkdir(parents=True)
    overrides = {
        "sim_node": {"real_time_factor": settings.real_time_factor, "mismatch": settings.mismatch},
        "trajectory_recorder": {"bag_dir": str(run_dir / BAGS)},
        "dynamics_learner": {"model_dir": str(run_dir / MODELS), "trials_per_iteration": settings.trials_per_iteration,
                             "trial_steps": settings.trial_steps},
        # Without a hold phase the controller keeps its LQR-FLM controller instead of switching modes.
        "mpc_controller": {"iterations": settings.iterations if settings.hold_s > 0 else 0,
                           "trials_per_iteration": settings.trials_per_iteration, "trial_steps": settings.trial_steps},
    }
    for node, params in settings.extra.items():
        overrides.setdefault(node, {}).update(params)
    specs = node_specs_from_config(config_path(settings.config), overrides)
    import yaml

    controller_yaml = yaml.safe_load(config_path(settings.config).read_text())["mpc_controller"]["ros__parameters"]
    final_mode = controller_yaml.get("final_mode", "ilqr")
    model_source = overrides.get("mpc_controller", {}).get("model_source", controller_yaml.get("model_source", "learned"))
    robot = controller_yaml.get("robot", "panda")
    goal = np.asarray(controller_yaml["goal_xyz_m"], dtype=float)

    from mbrl_ros.dynamics.kinematics import ArmKinematics, load_arm_model, reachable_goals

    arm_model = load_arm_model(robot)
    kinematics = ArmKinematics(arm_model)
    decoder = JointStateDecoder(arm_model.spec.joint_names)
    rows: list[dict] = []
    hold: dict = {"mode": final_mode, "final_distance_m": None}
    started = time.monotonic()
    print(f"run folder {run_dir}; {', '.join(s.executable for s in specs)} starting (logs in {run_dir / LOGS})")
    then = f", then {final_mode} on the {model_source} model for {settings.hold_s:g} s" if settings.hold_s > 0 else ""
    print(f"goal {np.round(goal, 3).tolist()} m; {settings.iterations} iterations x {settings.trials_per_iteration} trials "
          f"x {settings.trial_steps} steps{then}")
    print(" ".join(f"{c:>{w}}" for c, w in zip(COLUMNS, (4, 6, 13, 10, 6, 6, 7, 7))), flush=True)
    with ProcessGroup(specs, log_dir=run_dir / LOGS, echo=False), spinning_node("mbrl_demo") as node:
        progress = []
        node.create_subscription(String, "/mbrl/progress", lambda m: progress.append(json.loads(m.data)), qos.PROGRESS)
        diagnostics: dict[str, str] = {}

        def on_diagnostics(msg: DiagnosticArray) -> None:
            values = status_values(msg, "mpc_controller")
            if values:
                diagnostics.update(values)

        node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, qos.DIAGNOSTICS)
        deadline = started + settings.timeout_s
        while len(rows) < settings.iterations and time.monotonic() < deadline:
            while len(progress) > len(rows):
                rows.append(progress[len(rows)])
                print(_row_text(rows[-1]), flush=True)
            time.sleep(0.2)
        # Joint states are watched from here on only: every one costs this process executor time,
        # which the learner needs while the trials run. Reliable and deep, as a recorder subscribes:
        # a best-effort subscription in this (not real-time) process loses some and under-reports
        # the arm's rate.
        joints = TopicMonitor(node, JointState, "joint_states", qos.JOINT_STATES_RECORD)
        if not wait_for(lambda: joints.count >= 2, 10.0):
            raise RuntimeError("no /joint_states from sim_node")
        if len(rows) == settings.iterations and settings.hold_s > 0:
            # Measured from the first plan: until a model trained on recent trials has arrived, a PD
            # hold keeps the arm where the last trial ended.
            in_final = wait_for(lambda: diagnostics.get("mode") == final_mode and diagnostics.get("phase") == "planning"
                                and int(diagnostics.get("plans", "0")) > 0, max(1.0, deadline - time.monotonic()))
            distances = []
            end = time.monotonic() + settings.hold_s
            while in_final and time.monotonic() < end:
                msg = joints.latest
                q = decoder.decode(msg)[: kinematics.nq]
                distances.append(float(np.linalg.norm(kinematics.ee_position(q[None])[0] - goal)))
                time.sleep(0.05)
            if distances:
                tail = distances[-max(1, len(distances) // 4):]
                hold.update(start_distance_m=distances[0], final_distance_m=float(np.mean(tail)),
                            max_distance_last_quarter_m=float(np.max(tail)),
                            samples=len(distances), plan_time_p50_ms=float(diagnostics.get("plan_time_p50_ms", "nan")),
                            model_version=int(diagnostics.get("model_version", 0)))
        else:
            time.sleep(2.0)  # enough joint states for their rate
        rate = joints.summary()
        reaches = []
        if len(rows) == settings.iterations and settings.hold_s > 0 and settings.reach_goals > 0:
            q0 = np.asarray(controller_yaml.get("initial_positions_rad") or arm_model.spec.home_positions_rad, dtype=float)
            goals = reachable_goals(kinematics, q0, settings.reach_goals, settings.goal_seed, avoid_m=[goal])
            # The reaches measure the ensemble of the whole run: the learner may still be training on
            # the last iteration's trials, and a model arriving mid-reach would be measured half.
            last = settings.iterations - 1
            if model_source == "learned" and not wait_for(
                    lambda: int(diagnostics.get("ensemble_iteration", "-1")) >= last, max(1.0, deadline - time.monotonic())):
                raise RuntimeError(f"no ensemble trained on iteration {last} arrived: see {run_dir}/logs")
            reaches = reach_goals(node, joints, decoder, kinematics, diagnostics, q0, goals, settings, model_source)
            if settings.mismatch != "none" and model_source == "learned":  # what the URDF alone does on this arm
                reaches += reach_goals(node, joints, decoder, kinematics, diagnostics, q0, goals, settings, "physics")
    wall = time.monotonic() - started
    summary = {
        "settings": asdict(settings),
        "run_dir": str(run_dir),
        "goal_m": goal.tolist(),
        "iterations": rows,
        "completed_iterations": len(rows),
        "final_mean_distance_m": rows[-1]["mean_final_distance_m"] if rows else None,
        "best_mean_distance_m": min(r["mean_final_distance_m"] for r in rows) if rows else None,
        "model_source": model_source,
        "mismatch": settings.mismatch,
        "hold": hold,
        "goal_reaches": [{k: v for k, v in r.items() if k not in ("times_s", "distances_m", "positions_rad")}
                         for r in reaches],
        "joint_states_rate_hz": rate.rate_hz,
        "joint_states_period_p99_ms": rate.p99_s * 1e3,
        "wall_time_s": wall,
        "bags": sorted(p.name for p in (run_dir / BAGS).glob("*") if p.is_dir() and not p.name.startswith(".")),
        "models": sorted(p.name for p in (run_dir / MODELS).glob("*.safetensors")),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if rows:
        _plot(rows, hold, run_dir / "learning_curve.png")
    if reaches:
        _plot_reaches(reaches, model_source, run_dir / "goal_reaches.png")
    if reaches and settings.render_reaches:
        summary["video"] = _render_reaches(robot, model_source, reaches, run_dir / "reaches.gif")
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _render_reaches(robot: str, model_source: str, reaches: list[dict], path: Path) -> dict:
    """The reaches replayed from their recorded joint positions into a GIF (after the run: the
    nodes are stopped, so rendering takes no CPU from them)."""
    from mbrl_ros.sim.render import Clip, render_reaches

    clips = [Clip(f"{r['planner']}, {r.get('model_source', model_source)} model, "
                  f"goal [{', '.join(f'{v:.2f}' for v in r['goal_m'])}] m",
                  tuple(r["goal_m"]), np.asarray(r["times_s"]), np.asarray(r["positions_rad"])) for r in reaches]
    report = render_reaches(robot, clips, path)
    return {"path": str(report.path), "frames": report.frames, "render_s": report.render_s, "size_bytes": report.size_bytes}


def main(settings: DemoSettings) -> int:
    summary = run_demo(settings)
    rows, hold = summary["iterations"], summary["hold"]
    print()
    if not rows:
        print(f"no iteration completed: see the logs in {summary['run_dir']}/logs")
        return 1
    print(f"final LQR-FLM trials: mean end-effector distance {rows[-1]['mean_final_distance_m'] * 100:.2f} cm "
          f"(first iteration {rows[0]['mean_final_distance_m'] * 100:.2f} cm)")
    if hold["final_distance_m"] is not None:
        print(f"{hold['mode']} on the {summary['model_source']} model took over at {hold['start_distance_m'] * 100:.2f} cm and holds the "
              f"goal at {hold['final_distance_m'] * 100:.2f} cm")
    print(f"/joint_states observed at {summary['joint_states_rate_hz']:.1f} Hz "
          f"(period p99 {summary['joint_states_period_p99_ms']:.2f} ms) in this process")
    print(f"{len(summary['bags'])} bags, {len(summary['models'])} model checkpoints, learning_curve.png and summary.json "
          f"in {summary['run_dir']} ({summary['wall_time_s']:.0f} s)")
    if summary["mismatch"] != "none" and summary["goal_reaches"]:
        print(goal_comparison(summary["goal_reaches"]))
    if summary.get("video"):
        video = summary["video"]
        print(f"the reaches, rendered headless: {video['path']} ({video['frames']} frames, "
              f"{video['size_bytes'] / 1e6:.1f} MB, {video['render_s']:.1f} s to render)")
    return 0 if len(rows) == settings.iterations else 1
