"""Console entry points of the four nodes (``sim_node``, ``mpc_controller``, ...).

This module stays light on purpose: a node's own module imports torch, Pinocchio and rclpy, which
takes seconds when four nodes start together on two cores. A Ctrl-C (or the launcher's SIGTERM) in
that time is recorded here and the process ends with exit code 0 once the import returns, instead
of a ``KeyboardInterrupt`` traceback from deep inside an import. :func:`mbrl_ros.ros.spin.run_node`
takes the same stop request over for the node's start-up and spin.
"""

from __future__ import annotations

import importlib
import signal
import threading


def _run(module: str) -> None:
    stop = threading.Event()

    def on_signal(signum, frame) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    node_main = importlib.import_module(f"mbrl_ros.nodes.{module}").main
    if not stop.is_set():
        node_main(stop=stop)


def sim_node() -> None:
    _run("sim_node")


def trajectory_recorder() -> None:
    _run("trajectory_recorder")


def dynamics_learner() -> None:
    _run("dynamics_learner")


def mpc_controller() -> None:
    _run("mpc_controller")
