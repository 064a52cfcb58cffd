"""Receding-horizon planning in a process of its own (no ROS).

iLQR and MPPI are long runs of small numpy/torch operations; in the controller's process they
would compete for the GIL with the torque loop and the ROS executor (measured: plans 4-18x slower
and a torque loop that misses ticks). Here they run in a spawned child process; the parent's
planner thread blocks on a pipe (releasing the GIL) and gets back a
:class:`~mbrl_ros.control.policy.LinearFeedbackPolicy`.

Requests: ``set_model`` (the physics model of the robot, or an ensemble as serialized bytes) and
``plan`` (settings, state, time, goal, and the steps executed since the last plan). The child builds
its planner with :func:`~mbrl_ros.control.planners.build_planner` and keeps it, warm-starting it
across plans, for as long as the model and the :class:`~mbrl_ros.control.controller_settings.PlannerSettings`
stay the same; it plans with the model's recent error as a disturbance
(:mod:`mbrl_ros.control.disturbance`) unless ``disturbance_gain`` is 0. A plan that fails
(:class:`~mbrl_ros.control.policy.PlanningFailed`, any error) is reported as a :class:`PlanningError`.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Sequence
from dataclasses import asdict, replace

import numpy as np

from mbrl_ros.control.controller_settings import ControllerSettings
from mbrl_ros.control.policy import LinearFeedbackPolicy


class PlanningError(RuntimeError):
    """The child could not plan; the message is the child's error."""


def _serve(connection, robot: str, dt_s: float, q_ref: tuple[float, ...]) -> None:
    from mbrl_ros.control.latency import predict_start
    from mbrl_ros.control.planners import build_planner
    from mbrl_ros.dynamics import serialization
    from mbrl_ros.dynamics.physics import PhysicsModel

    # The parent owns this process's lifetime; a Ctrl-C to the process group is the parent's to handle.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # No nice value: the torque loop is protected by real-time scheduling (mbrl_ros.realtime), and a
    # plan that arrives late is discarded as stale, so planning needs its fair share of the CPU. A
    # lower nice value did not give it more: at nice -5 in the node the child had 1.7 s of CPU in its
    # first 10 s (3.7 s at nice 0) and no plan yet. Each node runs in a session of its own, and with
    # autogroup scheduling the kernel shares the CPU between sessions before nice values count.
    physics = PhysicsModel.from_robot(robot, dt_s=dt_s)
    models = {"physics": physics, "learned": None}
    planner, key, epoch = None, None, None
    while True:
        try:
            request = connection.recv()
        except EOFError:  # the parent is gone
            return
        if request[0] == "stop":
            return
        try:
            if request[0] == "model":
                models["learned"], _ = serialization.ensemble_from_bytes(request[1], base_model=physics)
                planner, key = None, None
                connection.send(("ok",))
                continue
            _, settings_dict, x, t_s, goal, executed, in_force, lead_s, request_epoch = request
            settings = ControllerSettings(**settings_dict).planner()
            model = models[settings.model_source]
            if model is None:
                raise PlanningError("no learned model yet")
            # The goal comes with every request (set below): changing it keeps the planner's warm start.
            new_key = replace(settings, cost=replace(settings.cost, ee_target_m=None))
            # A new epoch (a reset, a gap in the states, another mode) starts afresh: a warm start
            # from where the arm was and a disturbance estimated there would mislead the first plans.
            if new_key != key or request_epoch != epoch:
                planner, key, epoch = build_planner(settings, model, physics, q_ref), new_key, request_epoch
            if hasattr(planner.model, "observe"):  # a disturbance estimate, perhaps inside a linearisation
                planner.model.observe(executed)
            planner.cost.set_ee_target(goal)
            policies = [LinearFeedbackPolicy(X, U, K, k, t0_s=t0, dt_s=dt, u_lower=-physics.effort_limit_nm,
                                             u_upper=physics.effort_limit_nm) for X, U, K, k, t0, dt in in_force]
            x0, t0_s = predict_start(planner.model, policies, x, t_s, lead_s)
            policy = planner.optimize(x0, t0_s)
            connection.send(("policy", policy.X, policy.U, policy.K, policy.k, policy.t0_s, policy.dt_s))
        except Exception as err:  # reported to the parent, which counts it and keeps the last policy
            connection.send(("error", f"{type(err).__name__}: {err}"))


class PlannerProcess:
    """The parent's handle on the planning child. Not thread-safe: one planner thread uses it.

    A child that dies fails the call in progress with :class:`PlanningError`; the next call starts
    a new child (with the learned model the old one had)."""

    def __init__(self, robot: str, dt_s: float, q_ref: np.ndarray) -> None:
        self._args = (robot, dt_s, tuple(float(v) for v in q_ref))
        self._learned: bytes | None = None
        self._start()

    def _start(self) -> None:
        # A restart comes from a SCHED_FIFO thread of the controller, whose policy a child inherits:
        # planning must stay at ordinary priority (see mbrl_ros.realtime).
        policy = os.sched_getscheduler(0)
        if policy in (os.SCHED_FIFO, os.SCHED_RR):
            os.sched_setscheduler(0, policy | os.SCHED_RESET_ON_FORK, os.sched_getparam(0))
        context = multiprocessing.get_context("spawn")  # never fork a process that runs rclpy threads
        self._connection, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, *self._args), name="mbrl_planner", daemon=True)
        # The child takes seconds to import torch before _serve ignores SIGINT, and a Ctrl-C to the
        # process group then would end it with a traceback: started with SIGINT ignored, it inherits
        # that (Python keeps an ignored SIGINT). Only the main thread may change the disposition; a
        # restart from the planner thread starts the child as is.
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            self._process.start()
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
        # Only the child may hold its end: then its death is an EOFError here, not a recv blocking forever.
        child.close()

    def _call(self, request):
        if not self._process.is_alive():
            self._connection.close()
            self._start()
            if self._learned is not None:
                self._exchange(("model", self._learned))
        return self._exchange(request)

    def _exchange(self, request):
        try:
            self._connection.send(request)
            reply = self._connection.recv()
        except (EOFError, OSError) as err:
            self._process.kill()  # whatever state it is in, the next call starts afresh
            self._process.join()
            raise PlanningError(f"the planner process died ({type(err).__name__}); it restarts on the next call") from err
        if reply[0] == "error":
            raise PlanningError(reply[1])
        return reply

    def set_learned_model(self, ensemble_bytes: bytes) -> None:
        """Plan on this ensemble (a serialized ``ensemble`` model) when ``model_source`` is learned."""
        self._call(("model", ensemble_bytes))
        self._learned = ensemble_bytes

    def plan(self, settings: ControllerSettings, x: np.ndarray, t_s: float, goal: np.ndarray,
             executed: list | None = None, in_force: Sequence[LinearFeedbackPolicy] = (),
             lead_s: float = 0.0, epoch: int = 0) -> LinearFeedbackPolicy:
        """A policy for the arm measured in state ``x`` at ``t_s``: planned from the state predicted
        ``lead_s`` later under ``in_force`` (the plan in force and the pending ones the arm executes
        meanwhile; see :mod:`mbrl_ros.control.latency`), starting then. ``executed``: ``(x, mean torque, x_next)``
        model steps the arm made since the last plan (:class:`~mbrl_ros.control.disturbance.StepWindows`).
        ``epoch``: the run's epoch of the request; a new one rebuilds the planner (no warm start,
        no disturbance estimate carried over)."""
        plans = [(p.X, p.U, p.K, p.k, p.t0_s, p.dt_s) for p in in_force]
        _, X, U, K, k, t0, dt = self._call(("plan", asdict(settings), x, t_s, goal, executed or [], plans, lead_s, epoch))
        return LinearFeedbackPolicy(X, U, K, k, t0_s=t0, dt_s=dt)

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self._connection.send(("stop",))
            except (BrokenPipeError, OSError):
                pass
            self._process.join(timeout=2.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
