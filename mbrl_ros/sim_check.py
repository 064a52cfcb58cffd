"""The simulated arm over ROS, measured: start ``sim_node`` as its own process, watch
``/joint_states`` and ``/diagnostics`` for a few seconds, and report rate, jitter and drift.

With the Panda's emulated gravity compensation and no command, the arm must hold still; this is
what ``make demo`` shows until the learning demo lands.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import JointState

from mbrl_ros.launcher import NodeProcess, NodeSpec, config_path
from mbrl_ros.ros import qos
from mbrl_ros.ros.diagnostics import status_values
from mbrl_ros.ros.spin import spinning_node, wait_for
from mbrl_ros.ros.topic_monitor import TopicMonitor


@dataclass(frozen=True)
class SimCheckReport:
    configured_rate_hz: float
    observed_rate_hz: float
    period_mean_ms: float
    period_std_ms: float
    period_p99_ms: float
    period_max_ms: float
    messages: int
    max_drift_rad: float
    real_time_factor: float
    gravity_compensation_emulated: bool

    def table(self) -> str:
        rows = [
            ("joint_states rate configured", f"{self.configured_rate_hz:.1f} Hz"),
            ("joint_states rate observed", f"{self.observed_rate_hz:.1f} Hz ({self.messages} messages)"),
            ("period mean / sd", f"{self.period_mean_ms:.3f} / {self.period_std_ms:.3f} ms"),
            ("period p99 / max", f"{self.period_p99_ms:.3f} / {self.period_max_ms:.3f} ms"),
            ("sim real-time factor", f"{self.real_time_factor:.3f}"),
            ("gravity compensation emulated", str(self.gravity_compensation_emulated)),
            ("max joint drift, zero command", f"{self.max_drift_rad:.2e} rad"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def run_sim_check(seconds: float = 5.0, config: str = "sim_panda", startup_timeout_s: float = 30.0) -> SimCheckReport:
    """Start sim_node with ``config``, measure for ``seconds`` after its first message, stop it."""
    import yaml

    path = config_path(config)
    params = yaml.safe_load(path.read_text())["sim_node"]["ros__parameters"]
    sim = NodeProcess(NodeSpec("sim_node", params_file=str(path)))
    try:
        with spinning_node("sim_check") as node:
            joints = TopicMonitor(node, JointState, "joint_states", qos.JOINT_STATES_SUB)
            diagnostics = TopicMonitor(node, DiagnosticArray, "/diagnostics", qos.DIAGNOSTICS)
            if not wait_for(lambda: joints.count > 10, startup_timeout_s):
                raise RuntimeError(f"no /joint_states from sim_node within {startup_timeout_s} s (exit code {sim.poll()})")
            joints.reset()
            first = np.asarray(joints.latest.position)
            drift = 0.0
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                time.sleep(0.05)
                drift = max(drift, float(np.abs(np.asarray(joints.latest.position) - first).max()))
            summary = joints.summary()
            wait_for(lambda: bool(status_values(diagnostics.latest, "sim_node")), 3.0)
            diag = status_values(diagnostics.latest, "sim_node")
    finally:
        sim.stop()
    return SimCheckReport(
        configured_rate_hz=float(params["publish_rate_hz"]),
        observed_rate_hz=summary.rate_hz,
        period_mean_ms=summary.mean_s * 1e3,
        period_std_ms=summary.std_s * 1e3,
        period_p99_ms=summary.p99_s * 1e3,
        period_max_ms=summary.max_s * 1e3,
        messages=summary.count + 1,
        max_drift_rad=drift,
        real_time_factor=float(diag.get("real_time_factor_achieved", "nan")),
        gravity_compensation_emulated=diag.get("gravity_compensation_emulated") == "True",
    )


def main(seconds: float, config: str, json_out: str | None) -> int:
    print(f"starting sim_node ({config}) and watching /joint_states for {seconds:g} s ...", flush=True)
    report = run_sim_check(seconds, config)
    print(report.table())
    if json_out:
        with open(json_out, "w") as f:
            json.dump(report.__dict__, f, indent=2)
    return 0
