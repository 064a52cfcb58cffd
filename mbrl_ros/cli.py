"""``mbrl-ros``: the standalone command line (for machines without ros2cli / launch)."""

from __future__ import annotations

import argparse
import sys


def _hz(args: argparse.Namespace) -> int:
    from mbrl_ros.ros import qos
    from mbrl_ros.ros.spin import spinning_node, wait_for
    from mbrl_ros.ros.topic_monitor import TopicMonitor, message_type

    with spinning_node("mbrl_ros_hz") as node:
        monitor = TopicMonitor(node, message_type(args.type), args.topic, qos.JOINT_STATES_SUB)
        if not wait_for(lambda: monitor.count > 0, args.timeout):
            print(f"no message on {args.topic} within {args.timeout:g} s", file=sys.stderr)
            return 1
        monitor.reset()
        wait_for(lambda: False, args.seconds)
        s = monitor.summary()
    print(
        f"{args.topic}: {s.rate_hz:.1f} Hz over {s.count} periods; period mean {s.mean_s * 1e3:.3f} ms, "
        f"sd {s.std_s * 1e3:.3f} ms, p99 {s.p99_s * 1e3:.3f} ms, max {s.max_s * 1e3:.3f} ms"
    )
    return 0


def _sim_check(args: argparse.Namespace) -> int:
    from mbrl_ros import sim_check

    return sim_check.main(args.seconds, args.config, args.json)


def parse_overrides(items: list[str]) -> dict[str, dict]:
    """``node.param:=value`` items (value parsed as YAML) → {node: {param: value}}."""
    import yaml

    overrides: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition(":=")
        node, dot, param = key.partition(".")
        if not (sep and dot and node and param):
            raise SystemExit(f"--param {item!r}: expected NODE.PARAM:=VALUE")
        overrides.setdefault(node, {})[param] = yaml.safe_load(value)
    return overrides


def _demo(args: argparse.Namespace) -> int:
    from mbrl_ros import demo

    return demo.main(demo.DemoSettings(
        config=args.config, iterations=args.iterations, trials_per_iteration=args.trials, trial_steps=args.steps,
        hold_s=args.hold_s, real_time_factor=args.real_time_factor, timeout_s=args.timeout_s, runs_dir=args.runs_dir,
    ))


def _param(args: argparse.Namespace) -> int:
    from mbrl_ros.ros import param_tool

    if args.action in ("get", "describe", "set") and not args.name:
        raise SystemExit(f"mbrl-ros param {args.action} NODE NAME{' VALUE' if args.action == 'set' else ''}")
    if args.action == "set" and args.value is None:
        raise SystemExit("mbrl-ros param set NODE NAME VALUE")
    return param_tool.main(args.action, args.node, args.name, args.value)


def _run(args: argparse.Namespace) -> int:
    import signal
    import time

    from mbrl_ros.launcher import ProcessGroup, config_path, node_specs_from_config, raise_keyboard_interrupt

    specs = node_specs_from_config(config_path(args.config), parse_overrides(args.param))
    # SIGTERM stops the nodes as Ctrl-C does; SIGINT explicitly, as a shell's background job ignores it.
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    signal.signal(signal.SIGINT, raise_keyboard_interrupt)
    group = ProcessGroup(specs, log_dir=args.log_dir)
    print(f"starting {', '.join(s.executable for s in specs)} (Ctrl-C stops them all)", flush=True)
    code = 0
    try:
        group.start()
        while not (ended := group.exited()):
            time.sleep(0.2)
        for name, exit_code in ended:
            print(f"{name} exited with code {exit_code}; stopping the others", file=sys.stderr)
            code = code or exit_code or 1
    except KeyboardInterrupt:
        pass
    finally:
        group.stop()
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mbrl-ros", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    hz = sub.add_parser("hz", help="measure the rate of a topic (like ros2 topic hz)")
    hz.add_argument("topic")
    hz.add_argument("--type", default="sensor_msgs/msg/JointState", help="message type, pkg/msg/Type")
    hz.add_argument("--seconds", type=float, default=5.0)
    hz.add_argument("--timeout", type=float, default=10.0, help="how long to wait for a first message")
    hz.set_defaults(func=_hz)

    check = sub.add_parser("sim-check", help="start sim_node, measure /joint_states rate and drift, stop it")
    check.add_argument("--seconds", type=float, default=5.0)
    check.add_argument("--config", default="sim_panda", help="shipped config name or a YAML path")
    check.add_argument("--json", help="also write the report as JSON to this path")
    check.set_defaults(func=_sim_check)
    demo = sub.add_parser("demo", help="the arm learns to reach from no model (four processes), then holds the goal")
    demo.add_argument("--config", default="mbrl_sim")
    demo.add_argument("--iterations", type=int, default=8)
    demo.add_argument("--trials", type=int, default=5, help="trials per iteration")
    demo.add_argument("--steps", type=int, default=100, help="steps of dt_s per trial")
    demo.add_argument("--hold-s", type=float, default=0.0,
                      help="then measure the controller's final mode (iLQR on the learned model) for this long")
    demo.add_argument("--real-time-factor", type=float, default=1.0)
    demo.add_argument("--timeout-s", type=float, default=900.0)
    demo.add_argument("--runs-dir", default="runs")
    demo.set_defaults(func=_demo)

    param = sub.add_parser("param", help="list, get, describe or set a running node's parameters (like ros2 param)")
    param.add_argument("action", choices=["list", "get", "describe", "set"])
    param.add_argument("node")
    param.add_argument("name", nargs="?")
    param.add_argument("value", nargs="?", help="YAML value, e.g. 40, 0.5, true, [0.4, 0.1, 0.5]")
    param.set_defaults(func=_param)

    run = sub.add_parser("run", help="start the nodes of a YAML config as separate processes (like ros2 launch)")
    run.add_argument("--config", default="mbrl_sim", help="shipped config name or a YAML path")
    run.add_argument("--param", "-p", action="append", default=[], metavar="NODE.PARAM:=VALUE",
                     help="override a parameter of one node (repeatable)")
    run.add_argument("--log-dir", help="also write each node's output to DIR/<node>.log")
    run.set_defaults(func=_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
