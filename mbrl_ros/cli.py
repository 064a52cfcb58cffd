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


def _given(args: argparse.Namespace, *names: str) -> dict:
    """The options among ``names`` given on the command line (the others are left out of ``args``,
    and their settings class supplies its own defaults)."""
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


def _demo(args: argparse.Namespace) -> int:
    from mbrl_ros import demo

    try:
        settings = demo.DemoSettings(**_given(args, "config", "iterations", "trials_per_iteration", "trial_steps", "hold_s",
                                              "real_time_factor", "timeout_s", "runs_dir", "mismatch"))
    except ValueError as err:
        print(f"mbrl-ros demo: {err}", file=sys.stderr)
        return 2
    return _until_stopped(lambda: demo.main(settings))


def _until_stopped(job) -> int:
    """``job()``, ended by SIGTERM as by Ctrl-C (SIGINT set explicitly: a shell's background job
    ignores it), so that the nodes it started are stopped on the way out; 130 when stopped."""
    import signal

    from mbrl_ros.ros.spin import raise_keyboard_interrupt

    previous = {sig: signal.signal(sig, raise_keyboard_interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return job()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _fit(args: argparse.Namespace) -> int:
    from mbrl_ros import fit
    from mbrl_ros.data.bag_episodes import BagTopics

    try:
        settings = fit.FitSettings(
            bags=tuple(args.bag), out_dir=args.out, topics=BagTopics(**_given(args, "joint_states", "commands", "trials")),
            **_given(args, "torque_source", "dt_s", "steps", "command_timeout_s", "holdout_fraction", "seed",
                     "allow_partial", "robot", "ensemble_epochs"),
        )
    except ValueError as err:
        print(f"mbrl-ros fit: {err}", file=sys.stderr)
        return 2
    return fit.main(settings)


def _replay(args: argparse.Namespace) -> int:
    from mbrl_ros.ros import replay

    try:
        settings = replay.ReplaySettings(rate=args.rate, clock=args.clock, topics=tuple(args.topics) if args.topics else None,
                                         wait_s=args.wait_s, history_depth=args.history_depth, allow_partial=args.allow_partial)
    except ValueError as err:
        print(f"mbrl-ros replay: {err}", file=sys.stderr)
        return 2
    return replay.main(args.bag, settings)


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
    from pathlib import Path

    import yaml

    from mbrl_ros import bringup
    from mbrl_ros.launcher import ProcessGroup, config_path, node_specs_from_config
    from mbrl_ros.ros.spin import raise_keyboard_interrupt
    from mbrl_ros.run_folder import LOGS

    try:
        path = config_path(args.config)
    except FileNotFoundError as err:
        print(f"mbrl-ros run: {err}", file=sys.stderr)
        return 2
    sections = yaml.safe_load(path.read_text()) or {}
    values = {a.name: getattr(args, a.name) for a in bringup.LAUNCH_ARGUMENTS if a.sets}
    parameters = bringup.node_parameters(values, sections)
    for node, params in parse_overrides(args.param).items():  # -p wins over the arguments
        parameters.setdefault(node, {}).update(params)
    specs = node_specs_from_config(path, parameters)
    nodes = {s.executable for s in specs}
    log_dir = args.log_dir or Path(args.output_dir) / LOGS
    if bringup.ARGUMENTS["rviz"] in bringup.arguments_for(nodes):
        try:
            viewers, notes = bringup.viewer_specs(args.robot, args.use_sim_time == "true", args.rviz == "true",
                                                  Path(args.output_dir))
        except FileNotFoundError as err:
            print(f"mbrl-ros run: rviz true needs RViz: {err}", file=sys.stderr)
            return 2
        specs += viewers
        for note in notes:
            print(f"mbrl-ros run: {note}", flush=True)
    # SIGTERM stops the nodes as Ctrl-C does; SIGINT explicitly, as a shell's background job ignores it.
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    signal.signal(signal.SIGINT, raise_keyboard_interrupt)
    group = ProcessGroup(specs, log_dir=log_dir)
    applied = ", ".join(f"{a.name} {values[a.name]}" for a in bringup.arguments_for(nodes) if a.sets)
    print(f"starting {', '.join(s.executable for s in specs)} ({path}; {applied}; logs in {log_dir}; "
          "Ctrl-C stops them all)", flush=True)
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


_DEFAULTS_EPILOG = "An option left out takes its default from {cls}."


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
    # demo and fit: an option left out takes its settings class's default (DemoSettings, FitSettings),
    # which is not restated here; those modules load ROS and torch, so this parser does not import them.
    from mbrl_ros.sim.robots import MISMATCH_PROFILES  # light: names only

    demo = sub.add_parser("demo", help="the arm learns to reach from no model (four processes), then holds the goal",
                          argument_default=argparse.SUPPRESS, epilog=_DEFAULTS_EPILOG.format(cls="mbrl_ros.demo.DemoSettings"))
    demo.add_argument("--config", metavar="NAME", help="shipped config name or a YAML path")
    demo.add_argument("--iterations", type=int, metavar="N", help="LQR-FLM iterations")
    demo.add_argument("--trials", dest="trials_per_iteration", type=int, metavar="N", help="trials per iteration")
    demo.add_argument("--steps", dest="trial_steps", type=int, metavar="N", help="steps of dt_s per trial")
    demo.add_argument("--hold-s", dest="hold_s", type=float, metavar="S",
                      help="then measure the controller's final mode (iLQR on the learned model) for this long; 0: skip")
    demo.add_argument("--real-time-factor", dest="real_time_factor", type=float, metavar="F",
                      help="simulated seconds per wall second")
    demo.add_argument("--timeout-s", dest="timeout_s", type=float, metavar="S", help="give up after this long")
    demo.add_argument("--runs-dir", dest="runs_dir", metavar="DIR", help="the run folder goes here (default: $ROS_HOME/mbrl_ros/runs)")
    demo.add_argument("--mismatch", choices=MISMATCH_PROFILES, help="the simulated arm differs from its URDF (a payload, "
                      "friction, latency, gain errors, noise); the goals are then also reached on the URDF model")
    demo.set_defaults(func=_demo)

    param = sub.add_parser("param", help="list, get, describe or set a running node's parameters (like ros2 param)")
    param.add_argument("action", choices=["list", "get", "describe", "set"])
    param.add_argument("node")
    param.add_argument("name", nargs="?")
    param.add_argument("value", nargs="?", help="YAML value, e.g. 40, 0.5, true, [0.4, 0.1, 0.5]")
    param.set_defaults(func=_param)

    fit = sub.add_parser("fit", help="fit dynamics models offline from rosbag2 bags; report held-out prediction errors",
                         argument_default=argparse.SUPPRESS, epilog=_DEFAULTS_EPILOG.format(cls="mbrl_ros.fit.FitSettings"))
    fit.add_argument("--bag", nargs="+", required=True, metavar="PATH",
                     help="bag directories or files (MCAP, sqlite3), or folders of bags such as a run's bags/")
    fit.add_argument("--out", required=True, metavar="DIR", help="checkpoints, report.json and prediction.png go here")
    fit.add_argument("--joint-states-topic", dest="joint_states", metavar="TOPIC", help="the JointState topic")
    fit.add_argument("--commands-topic", dest="commands", metavar="TOPIC", help="the torque command topic")
    fit.add_argument("--trials-topic", dest="trials", metavar="TOPIC",
                     help="the trial markers' topic; a bag without it is cut into fixed windows")
    fit.add_argument("--torque-source", dest="torque_source", choices=["commands", "effort"],
                     help="torques from the commands, or from the joint states' effort (arms driven by other controllers)")
    fit.add_argument("--dt", dest="dt_s", type=float, metavar="S", help="control period (s) when the bags have no trial markers")
    fit.add_argument("--steps", type=int, metavar="N", help="episode length (steps) when the bags have no trial markers; left out: the default window, "
                          "or a length chosen (and said) when the runs between pauses are too short for enough of them")
    fit.add_argument("--command-timeout", dest="command_timeout_s", type=float, metavar="S",
                     help="older commands count as zero torque (s; the arm's command timeout)")
    fit.add_argument("--holdout", dest="holdout_fraction", type=float, metavar="F", help="fraction of episodes held out for evaluation")
    fit.add_argument("--seed", type=int, metavar="N", help="seeds the split, the GMM and the ensemble")
    fit.add_argument("--allow-partial", dest="allow_partial", action="store_true",
                     help="fit on the readable part of truncated/corrupted bags")
    fit.add_argument("--robot", metavar="NAME", help="joint order and physics model")
    fit.add_argument("--epochs", dest="ensemble_epochs", type=int, metavar="N", help="ensemble training epochs (at most; it stops early)")
    fit.set_defaults(func=_fit)

    replay = sub.add_parser("replay", help="republish a bag's messages with their QoS and timing (like ros2 bag play)")
    replay.add_argument("--bag", nargs="+", required=True, metavar="PATH")
    replay.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    replay.add_argument("--clock", action="store_true", help="also publish /clock from the bag's time (for use_sim_time nodes)")
    replay.add_argument("--topics", nargs="+", help="only these topics (default: all)")
    replay.add_argument("--wait-s", type=float, default=2.0, help="wait this long at most for subscribers before playing")
    replay.add_argument("--history-depth", type=int, help="publishers' history depth instead of the recorded one "
                        "(deeper: a busy reliable subscriber catches up instead of losing messages)")
    replay.add_argument("--allow-partial", action="store_true", help="replay the readable part of truncated bags")
    replay.set_defaults(func=_replay)

    from mbrl_ros.bringup import LAUNCH_ARGUMENTS  # light: the choices' lists and the run folder

    run = sub.add_parser("run", help="start the nodes of a YAML config as separate processes (like ros2 launch)",
                         epilog="The arguments are the launch files' (ros2 launch mbrl_ros mbrl_sim.launch.py "
                                "mode:=ilqr ...); each overrides the config for the nodes it applies to.")
    for argument in LAUNCH_ARGUMENTS:
        run.add_argument(f"--{argument.name.replace('_', '-')}", dest=argument.name, default=argument.default_value(),
                         choices=argument.choices or None, help=f"{argument.description} (default: %(default)s)")
    run.add_argument("--param", "-p", action="append", default=[], metavar="NODE.PARAM:=VALUE",
                     help="override a parameter of one node (repeatable; wins over the arguments)")
    run.add_argument("--log-dir", help="write each node's output to DIR/<node>.log (default: OUTPUT_DIR/logs)")
    run.set_defaults(func=_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
