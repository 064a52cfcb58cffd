"""Running an rclpy node in a background executor thread for command-line tools and tests."""

from __future__ import annotations

import gc
import io
import signal
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import rclpy
from rclpy.clock import JumpThreshold
from rclpy.context import Context
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.experimental import EventsExecutor
from rclpy.signals import SignalHandlerOptions

from rclpy.node import Node


def raise_keyboard_interrupt(signum, frame) -> None:
    """Signal handler turning SIGTERM (or SIGINT) into ``KeyboardInterrupt``: one clean stop path."""
    raise KeyboardInterrupt


@contextmanager
def spinning_node(name: str) -> Iterator[Node]:
    """A node in its own context, spun in a background thread until the block ends (rclpy's
    events executor: see :func:`run_node`)."""
    context = Context()
    rclpy.init(context=context)
    node = rclpy.create_node(name, context=context)
    try:
        executor = EventsExecutor(context=context)
    except io.UnsupportedOperation:
        # rclpy's events executor enables faulthandler on sys.stderr, which needs a file descriptor;
        # where output is captured (pytest's capsys) the wait-set executor does the same job, dearer.
        executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    done = threading.Event()

    def spin() -> None:
        while not done.is_set():
            executor.spin_once(timeout_sec=0.1)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield node
    finally:
        # The spinning thread must be gone before the executor and the context are: a wait it is in
        # when the executor shuts down raises in that thread (rclpy destroys its guard condition).
        done.set()
        thread.join(timeout=2.0)
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)


class ClockAdvanced:
    """A :class:`threading.Event` set whenever ``node``'s clock moves forward (each ``/clock`` on
    simulated time): a thread keeping deadlines on that clock waits on it instead of polling.
    One time-jump callback, registered once (rclpy's ``Clock.sleep_until`` registers one per call)."""

    def __init__(self, node: Node) -> None:
        self.event = threading.Event()
        self._handle = node.get_clock().create_jump_callback(
            JumpThreshold(min_forward=Duration(nanoseconds=1), min_backward=None, on_clock_change=False),
            post_callback=lambda _jump: self.event.set())


def wait_for(predicate: Callable[[], bool], timeout_s: float, period_s: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true or ``timeout_s`` passes; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(period_s)
    return bool(predicate())


def call_trigger(node: Node, service: str, timeout_s: float = 10.0, attempt_s: float = 3.0):
    """Call the std_srvs/Trigger ``service`` from ``node`` (spun elsewhere) and return its response,
    or ``None`` when none came within ``timeout_s``. A call unanswered for ``attempt_s`` is made
    again: DDS can lose a response to a client the server has not discovered yet."""
    from std_srvs.srv import Trigger

    client = node.create_client(Trigger, service)
    deadline = time.monotonic() + timeout_s
    try:
        if not client.wait_for_service(timeout_sec=timeout_s):
            return None
        while (left := deadline - time.monotonic()) > 0:
            future = client.call_async(Trigger.Request())
            if wait_for(future.done, min(attempt_s, left)):
                return future.result()
            client.remove_pending_request(future)
        return None
    finally:
        node.destroy_client(client)


def run_node(factory: Callable[[], Node], args=None, events_executor: bool = True,
             stop: threading.Event | None = None) -> None:
    """``main()`` of every node: init, spin (single-threaded) until SIGINT or SIGTERM, then the
    node's own ``shutdown()`` (if it has one) while the context is still valid, so it can still
    publish (a controller's last zero torque), then destroy and shut down rclpy. ``stop`` is a stop
    request already being recorded (the entry point's, from before the node's imports)."""
    # rclpy's own handlers would invalidate the context before shutdown() could publish.
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    # A signal only records the request; the start-up and the loop below look at it. Raised in the
    # main thread while rclpy's C++ bindings run (take_message, deserialize_message, creating a
    # subscription), a KeyboardInterrupt comes out as another exception (RuntimeError, TypeError)
    # and the node exits with a traceback. Only a second Ctrl-C during the start-up raises, so a
    # start-up that hangs can still be interrupted from a terminal.
    stop = stop if stop is not None else threading.Event()
    spinning = False

    def on_signal(signum, frame) -> None:
        if signum == signal.SIGINT and stop.is_set() and not spinning:
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    node = None
    try:
        if stop.is_set():
            return
        node = factory()
        # A full garbage collection walks every object while holding the GIL: after start-up that is
        # ~200k objects of torch, Pinocchio and rclpy, 0.2-0.5 s (measured), long enough to stall a
        # torque tick or a 1 kHz sim step. Frozen, they are never scanned again.
        gc.freeze()
        # rclpy's events executor dispatches from C++: the node's 500 Hz joint states and /clock
        # cost a third of the CPU the Python wait-set executor spends on them (measured: 30 % of a
        # core per 500 Hz subscription in the default executor, 11-14 % in this one).
        executor = EventsExecutor() if events_executor else SingleThreadedExecutor()
        executor.add_node(node)
        # A signal is handled only once the wait returns to Python (at most 0.25 s), and a node on
        # simulated time whose /clock source has gone has nothing else to end its wait.
        spinning = True
        while executor.context.ok() and not stop.is_set():
            executor.spin_once(timeout_sec=0.25)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # A second Ctrl-C (or the launcher's SIGTERM) must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if node is not None:
            if hasattr(node, "shutdown"):
                node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
