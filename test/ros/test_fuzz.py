"""Seeded malformed messages, thousands of each, published at rate against the four running nodes
(test/ros/_fuzz.py makes them): /joint_states (sim_node's arm, to mpc_controller and
trajectory_recorder), /effort_controller/commands (to sim_node and the recorder), /mbrl/goal (to
the controller), /mbrl/episodes (to the controller and dynamics_learner) and /mbrl/model (to the
controller), while the controller holds the arm at a goal on the URDF model.

What is checked: no node ends; none of the messages is used (the arm's applied torque on joint 1,
which carries no gravity load, is always one the controller sent, or zero; no goal marker and no
goal parameter other than the controller's own; the controller's model version and the learner's
episode count do not move); the torque stays within its limits and the controller keeps its rate;
and each node's ``/diagnostics`` counts the messages it was sent. How the counts are checked: the
test's publishers are reliable and 2000 deep, and every subscription that counts is reliable but
the controller's /joint_states (best effort, as a controller's must be, to hear best-effort arms:
at least 95 % of the small messages, and the 10⁶-element ones as they arrive). A reliable
subscription is keep-last, so a node kept off the CPU long enough can lose the oldest in its queue
before taking them, and cannot count what it never took: each fuzzer holds back while a node is
more than 1.5 s of its messages behind, and every count must reach 99 % of what was sent. The
recorder's readers fall furthest behind (it runs at normal priority beside two real-time nodes,
and it loses what its transport cannot take in time): it logs every message
it takes into its bag before it looks at it, so its counts must equal the malformed messages in
its bag, read back once it is stopped, exactly. After the fuzz one valid goal, model and episode
are taken: the paths still work.

MBRL_SOAK=1 sends 20 times as many (about 5 minutes); MBRL_FUZZ_SEED changes the seed (0)."""

import os
import shutil
import threading
import time
from collections import Counter

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import QoSProfile
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, UInt8MultiArray
from visualization_msgs.msg import Marker

from mbrl_ros.data.bags import open_bags, read_raw
from mbrl_ros.dynamics import serialization
from mbrl_ros.dynamics.kinematics import ArmKinematics, load_arm_model
from mbrl_ros.launcher import NodeSpec, config_path, node_specs_from_config
from mbrl_ros.ros import payloads, qos
from mbrl_ros.ros.conversions import InvalidMessage, JointStateDecoder
from mbrl_ros.ros.diagnostics import status_values
from mbrl_ros.ros.spin import wait_for

import _fuzz

SEED = int(os.environ.get("MBRL_FUZZ_SEED", "0"))
SOAK = os.environ.get("MBRL_SOAK") == "1"
SCALE = 20 if SOAK else 1
GOAL = (0.30, 0.25, 0.45)
LIMITS = np.array([87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0])
#: Messages per topic and their rate (Hz); the 10⁶-element ones come after, one at a time.
PLAN = {"joint_states": (2000 * SCALE, 100.0), "commands": (2000 * SCALE, 100.0), "goals": (2000 * SCALE, 100.0),
        "episodes": (2000 * SCALE, 100.0), "models": (2000 * SCALE, 100.0)}
HUGE_EACH = 4 * (5 if SOAK else 1)
#: A fuzzer held back this long gives up: the node it waits for has stopped counting.
STALL_S = 15.0
NODES = ("sim_node", "mpc_controller", "trajectory_recorder", "dynamics_learner")
#: The controller's /joint_states subscription is best effort (sensor data, as a controller's
#: must be, to hear best-effort arms): the DDS drops what its 5-deep queue cannot hold.
BEST_EFFORT = ("mpc_controller", "rejected_joint_states")
#: The recorder logs every message it takes into its bag before it looks at it: its counts are
#: checked against the malformed messages in its bag (what reached it), exactly.
RECORDER = (("trajectory_recorder", "rejected_joint_states"), ("trajectory_recorder", "rejected_commands"))
#: The share of a topic's messages a keep-last queue may lose before its node takes them (a node
#: held off the CPU long enough loses the oldest; the printed numbers say how many).
LOSS = 0.01
#: (node, counter) -> the topic whose malformed messages it counts.
COUNTERS = {
    ("mpc_controller", "rejected_joint_states"): "joint_states",
    ("trajectory_recorder", "rejected_joint_states"): "joint_states",
    ("sim_node", "commands_rejected"): "commands",
    ("trajectory_recorder", "rejected_commands"): "commands_non_finite",
    ("mpc_controller", "rejected_goals"): "goals",
    ("mpc_controller", "rejected_episodes"): "episodes",
    ("dynamics_learner", "rejected_episodes"): "episodes",
    ("mpc_controller", "rejected_models"): "models",
}


def _deep(profile: QoSProfile) -> QoSProfile:
    """``profile`` 2000 deep: a fuzzing publisher keeps what a slow reliable reader still needs."""
    return QoSProfile(reliability=profile.reliability, durability=profile.durability, history=profile.history, depth=2000)


@pytest.fixture(scope="module")
def system(start_node, client_node, tmp_path_factory):
    bag_dir = tmp_path_factory.mktemp("bags")
    specs = {s.executable: s for s in node_specs_from_config(config_path("mbrl_sim"), {
        # Wall time, as with a real arm.
        "sim_node": {"publish_clock": False},
        # Plans at 5 Hz, not 20: each takes most of a core, and the recorder must keep up with the fuzz.
        "mpc_controller": {"use_sim_time": False, "mode": "ilqr", "model_source": "physics", "goal_xyz_m": list(GOAL),
                           "plan_rate_hz": 5.0},
        "trajectory_recorder": {"use_sim_time": False, "bag_dir": str(bag_dir)},
        "dynamics_learner": {"model_dir": str(tmp_path_factory.mktemp("models")), "ensemble_enabled": False},
    })}
    processes = {name: start_node(specs[name]) for name in NODES}
    kinematics = ArmKinematics(load_arm_model("panda"))
    seen = {"states": [], "commands": [], "markers": [], "diag": {n: {} for n in NODES}, "samples": []}

    def on_state(raw: bytes) -> None:
        if len(raw) < 4096:  # not the 10⁶-element ones (ours)
            msg = deserialize_message(raw, JointState)
            if _fuzz.well_formed_state(msg):  # the sim's; every one the test sends is malformed
                seen["states"].append((time.monotonic(), np.asarray(msg.position), np.asarray(msg.effort)))

    def on_command(raw: bytes) -> None:
        if len(raw) < 4096:
            u = np.asarray(deserialize_message(raw, Float64MultiArray).data)
            if u.shape == (7,) and np.all(np.isfinite(u)):  # the controller's: each one the test sends is malformed
                seen["commands"].append((time.monotonic(), u))

    def on_diag(msg: DiagnosticArray) -> None:
        for name in NODES:
            values = status_values(msg, name)
            if values:
                seen["diag"][name] = values
                seen["samples"].append((time.monotonic(), name, values))

    client_node.create_subscription(JointState, "joint_states", on_state, qos.JOINT_STATES_RECORD, raw=True)
    client_node.create_subscription(Float64MultiArray, "effort_controller/commands", on_command, qos.COMMANDS_RECORD, raw=True)
    client_node.create_subscription(Marker, "/mbrl/goal_marker", lambda m: seen["markers"].append((time.monotonic(), m)),
                                    qos.LATCHED)
    client_node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, qos.DIAGNOSTICS)

    def distance() -> float:
        return float(np.linalg.norm(kinematics.ee_position(seen["states"][-1][1][None])[0] - np.asarray(GOAL)))

    diag = seen["diag"]
    assert wait_for(lambda: diag["mpc_controller"].get("phase") == "planning" and seen["states"], 90.0), diag
    assert wait_for(lambda: int(diag["trajectory_recorder"].get("messages_in_bag", 0)) > 100
                    and all(diag[n] for n in NODES), 30.0), diag
    assert wait_for(lambda: distance() < 0.02, 30.0), f"the arm never reached the goal: {distance():.3f} m"
    yield {"processes": processes, "seen": seen, "distance": distance, "kinematics": kinematics, "bag_dir": bag_dir}


class Unprivileged:
    """A node's command run without CAP_SYS_NICE: real-time scheduling is refused, as for a user
    without an rtprio limit (the node says so in its log, then runs at normal priority)."""

    def __init__(self, spec: NodeSpec) -> None:
        self.spec, self.executable = spec, spec.executable

    def command(self) -> list[str]:
        return ["setpriv", "--bounding-set", "-sys_nice", "--inh-caps", "-sys_nice", *self.spec.command()]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to drop CAP_SYS_NICE")
def test_nodes_refused_real_time_scheduling_still_reject_and_count_bad_messages(start_node, client_node):
    """Logging the refusal must not break the nodes' throttled warnings (rclpy's deprecated
    ``warn`` gave every call one call site: a warning with other filters then raised ValueError,
    and the node ended on its first rejected message)."""
    sim = start_node(Unprivileged(NodeSpec("sim_node", params_file=str(config_path("sim_panda")),
                                           parameters={"publish_clock": False})))
    controller = start_node(Unprivileged(NodeSpec("mpc_controller", parameters={"mode": "ilqr", "model_source": "physics",
                                                                                "reset_service": ""})))
    diag = {"sim_node": {}, "mpc_controller": {}}
    subscription = client_node.create_subscription(
        DiagnosticArray, "/diagnostics", lambda m: [diag[n].update(status_values(m, n)) for n in diag], qos.DIAGNOSTICS)
    commands = client_node.create_publisher(Float64MultiArray, "effort_controller/commands", qos.COMMANDS_PUB)
    states = client_node.create_publisher(JointState, "joint_states", qos.JOINT_STATES_PUB)
    try:
        assert wait_for(lambda: diag["sim_node"] and diag["mpc_controller"] and commands.get_subscription_count() >= 1
                        and states.get_subscription_count() >= 1, 60.0), diag
        for sent in range(1, 4):
            commands.publish(Float64MultiArray(data=[float("nan")] * 7))
            states.publish(JointState(name=list(_fuzz.PANDA), position=[0.0] * 7, velocity=[0.0] * 6))
            assert wait_for(lambda: diag["sim_node"]["commands_rejected"] == str(sent)
                            and diag["mpc_controller"]["rejected_joint_states"] == str(sent), 10.0), diag
        assert sim.poll() is None and controller.poll() is None
    finally:
        client_node.destroy_subscription(subscription)
        client_node.destroy_publisher(commands)
        client_node.destroy_publisher(states)
        sim.stop()
        controller.stop()


class Fuzzer(threading.Thread):
    """Publishes ``count`` messages from ``make(rng)`` at ``rate_hz`` at most, and counts their
    kinds. ``behind()`` (set by the test) is how many of them the slowest node counting them has
    yet to count: while it is more than a second and a half of them the fuzzer waits, so no
    reader's queue overflows (a reliable reader loses what its queue cannot hold); after
    :data:`STALL_S` of waiting it gives up (``stalled``: a node stopped counting)."""

    def __init__(self, publisher, make, count: int, rate_hz: float, seed: int, stamp=None) -> None:
        super().__init__(daemon=True)
        self.publisher, self.make, self.count, self.rate_hz = publisher, make, count, rate_hz
        self.rng = np.random.default_rng([SEED, seed])
        self.stamp = stamp
        self.kinds: Counter[str] = Counter()
        self.non_finite = 0  # commands with a non-finite value (the recorder rejects those)
        self.behind = lambda: 0
        self.waited_s = 0.0
        self.stalled = False
        self.error: BaseException | None = None

    @property
    def sent(self) -> int:
        return sum(self.kinds.values())

    def run(self) -> None:
        try:
            deadline = time.monotonic()
            for _ in range(self.count):
                held_since = time.monotonic()
                while self.behind() > 1.5 * self.rate_hz:
                    if time.monotonic() - held_since > STALL_S:
                        self.stalled = True
                        return
                    time.sleep(0.05)
                    self.waited_s += 0.05
                    deadline = time.monotonic()
                kind, msg = self.make(self.rng)
                self.send(kind, msg)
                deadline += 1.0 / self.rate_hz
                if (wait := deadline - time.monotonic()) > 0:
                    time.sleep(wait)
        except BaseException as err:  # noqa: BLE001 - reported by the test
            self.error = err

    def send(self, kind: str, msg) -> None:
        if self.stamp is not None:
            msg.header.stamp = self.stamp()
        if isinstance(msg, Float64MultiArray) and _fuzz.has_non_finite(msg):
            self.non_finite += 1
        self.publisher.publish(msg)
        self.kinds[kind] += 1


def _counters(seen) -> dict[tuple[str, str], int]:
    return {key: int(seen["diag"][key[0]].get(key[1], -1)) for key in COUNTERS}


def test_fuzzed_messages_are_rejected_counted_and_never_used(system, client_node):
    seen, processes, diag = system["seen"], system["processes"], system["seen"]["diag"]
    ensemble_doc = serialization.ensemble_to_bytes(_fuzz.small_ensemble(), _fuzz.PANDA, model_version=9999, iteration=0)
    now = lambda: client_node.get_clock().now().to_msg()  # noqa: E731
    publishers = {
        "joint_states": client_node.create_publisher(JointState, "joint_states", _deep(qos.JOINT_STATES_PUB)),
        "commands": client_node.create_publisher(Float64MultiArray, "effort_controller/commands", _deep(qos.COMMANDS_PUB)),
        "goals": client_node.create_publisher(PointStamped, "/mbrl/goal", _deep(qos.COMMANDS_PUB)),
        "episodes": client_node.create_publisher(UInt8MultiArray, "/mbrl/episodes", _deep(qos.EPISODES)),
        "models": client_node.create_publisher(UInt8MultiArray, "/mbrl/model", _deep(qos.MODEL)),
    }
    readers = {"joint_states": 3, "commands": 3, "goals": 1, "episodes": 2, "models": 1}  # with the test's own
    assert wait_for(lambda: all(publishers[t].get_subscription_count() >= n for t, n in readers.items()), 10.0)
    params = AsyncParameterClient(client_node, "mpc_controller")
    assert params.wait_for_services(timeout_sec=10.0)
    makers = {"joint_states": _fuzz.joint_state, "commands": _fuzz.command,
              "goals": lambda rng: _fuzz.goal(rng, GOAL), "episodes": _fuzz.episode_fuzzer(),
              "models": _fuzz.model_fuzzer(ensemble_doc)}
    fuzzers = {topic: Fuzzer(publishers[topic], makers[topic], count, rate, i, stamp=now if topic == "joint_states" else None)
               for i, (topic, (count, rate)) in enumerate(PLAN.items())}
    before = _counters(seen)
    assert all(v >= 0 for v in before.values()), f"a node does not report a counter: {before}"

    def sent(topic: str) -> int:
        return fuzzers["commands"].non_finite if topic == "commands_non_finite" else fuzzers[topic].sent

    def missing() -> dict[tuple[str, str], int]:
        """Per counter, the messages sent that it has not counted (yet)."""
        now_counts = _counters(seen)
        return {key: sent(topic) - (now_counts[key] - before[key]) for key, topic in COUNTERS.items()}

    # The best-effort counter may never catch up, and the recorder's are checked against its bag:
    # neither holds the fuzz back.
    for topic, fuzzer in fuzzers.items():
        fuzzer.behind = lambda topic=topic: max((n for key, n in missing().items()
                                                if COUNTERS[key] in (topic, f"{topic}_non_finite")
                                                and key != BEST_EFFORT and key not in RECORDER), default=0)
    episodes_before = diag["dynamics_learner"]["episodes"]
    stale_before = int(diag["mpc_controller"]["stale_state_stops"])
    version_before = diag["mpc_controller"]["model_version"]
    markers_before, states_before = len(seen["markers"]), len(seen["states"])
    goal_samples = []
    sampling = threading.Event()

    def sample_goal_parameter() -> None:
        while not sampling.is_set():
            future = params.get_parameters(["goal_xyz_m"])
            if wait_for(future.done, 2.0):
                goal_samples.append(tuple(future.result().values[0].double_array_value))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample_goal_parameter, daemon=True)
    sampler.start()
    started = time.monotonic()
    for fuzzer in fuzzers.values():
        fuzzer.start()
    for fuzzer in fuzzers.values():
        fuzzer.join()
        assert fuzzer.error is None, repr(fuzzer.error)
    fuzz_s = time.monotonic() - started

    def all_counted() -> bool:
        """Every node but the recorder has counted what it was sent (the best-effort one 95 %)."""
        gap = missing()
        best_effort = gap.pop(BEST_EFFORT)
        return all(0 <= n <= LOSS * sent(COUNTERS[k]) for k, n in gap.items() if k not in RECORDER) \
            and 0 <= best_effort <= 0.05 * sent("joint_states")

    def recorder_done() -> bool:
        return all(missing()[key] == 0 for key in RECORDER)

    settled = wait_for(all_counted, 30.0, period_s=0.2)
    small = {key: sent(COUNTERS[key]) - n for key, n in missing().items()}
    small_sent = {topic: sent(topic) for topic in set(COUNTERS.values())}
    stale_ticks = [int(diag["mpc_controller"]["stale_state_stops"])]
    # Then the 10⁶-element messages, one of each at a time: each is megabytes every reader must refuse.
    rng = np.random.default_rng([SEED, 99])
    huge = Counter()
    for i in range(HUGE_EACH):
        for topic, (kind, msg) in (("joint_states", _fuzz.huge_joint_state(rng, i)), ("commands", _fuzz.huge_command(rng, i)),
                                   ("episodes", ("huge_header", _fuzz.huge_payload(payloads.EPISODES_LABEL, 8_000_000))),
                                   ("models", ("huge_header", _fuzz.huge_payload(payloads.MODEL_LABEL, 8_000_000)))):
            fuzzers[topic].send(kind, msg)
            huge[topic] += 1
        settled = wait_for(all_counted, 20.0, period_s=0.2) and settled
    stale_ticks.append(int(diag["mpc_controller"]["stale_state_stops"]))
    sampling.set()
    sampler.join(timeout=5.0)
    end = time.monotonic()
    final = _counters(seen)
    print(f"\nfuzz seed {SEED}: {fuzz_s:.1f} s, then {HUGE_EACH} of 10^6 elements per topic")
    for topic, fuzzer in fuzzers.items():
        rate = (fuzzer.sent - huge[topic]) / fuzz_s
        print(f"  {topic}: {fuzzer.sent} sent ({rate:.0f}/s, held back {fuzzer.waited_s:.1f} s) {dict(sorted(fuzzer.kinds.items()))}")
    for key, topic in COUNTERS.items():
        print(f"  {key[0]} {key[1]}: {final[key] - before[key]} of {sent(topic)} "
              f"({small[key]} of {small_sent[topic]} before the 10^6-element ones)")

    # No node ended, and each counted what it was sent.
    assert all(p.poll() is None for p in processes.values()), {n: p.poll() for n, p in processes.items()}
    stalled = [topic for topic, f in fuzzers.items() if f.stalled]
    assert settled and not stalled, (f"stalled: {stalled}", {f"{k[0]}/{k[1]}": (final[k] - before[k], sent(t))
                                                              for k, t in COUNTERS.items()})

    # None was used: no goal taken, no model, no episode.
    assert len(seen["markers"]) == markers_before, "a goal marker: the controller took a fuzzed goal"
    assert goal_samples and all(np.allclose(g, GOAL) for g in goal_samples), sorted(set(goal_samples))[:5]
    during = [(name, v) for t, name, v in seen["samples"] if started <= t <= end]
    assert {v["model_version"] for name, v in during if name == "mpc_controller"} == {version_before}
    assert {v["episodes"] for name, v in during if name == "dynamics_learner"} == {episodes_before}
    # The torque applied: within its limits, and on joint 1 one the controller sent (or none).
    states = [(q, e) for t, q, e in seen["states"][states_before:] if started <= t <= end]
    efforts = np.array([e for _, e in states])
    assert np.all(np.isfinite(efforts)) and np.all(np.abs(efforts) <= LIMITS + 1e-9)
    sent_by_controller = np.sort(np.clip([u[0] for _, u in seen["commands"]], -LIMITS[0], LIMITS[0]))
    nearest = np.searchsorted(sent_by_controller, efforts[:, 0]).clip(1, len(sent_by_controller) - 1)
    off = np.minimum(np.abs(sent_by_controller[nearest] - efforts[:, 0]), np.abs(sent_by_controller[nearest - 1] - efforts[:, 0]))
    applied_other = (off > 1e-9) & (np.abs(efforts[:, 0]) > 1e-9)
    assert not applied_other.any(), f"{applied_other.sum()} joint states apply a torque the controller never sent"
    # The controller kept its rate, and the arm its goal.
    # Its own count (torques sent over the last 5 s): the test's process, busy fuzzing, takes in
    # fewer than are sent.
    rate_hz = min(float(v["rate_hz"]) for name, v in during if name == "mpc_controller")
    ee = system["kinematics"].ee_position(np.array([q for q, _ in states]))
    farthest = float(np.linalg.norm(ee - np.asarray(GOAL), axis=1).max())
    print(f"  controller at least {rate_hz:.0f} Hz during the fuzz; ticks on a stale state (zero torque): {stale_ticks[0] - stale_before} "
          f"during the fuzz, {stale_ticks[1] - stale_ticks[0]} during the 10^6-element messages; {len(efforts)} joint "
          f"states checked; the arm at most {farthest * 100:.2f} cm from its goal")
    assert rate_hz > 200.0
    # Thousands of small malformed messages do not keep the arm's states from the controller. (A
    # 28 MB one can: the DDS participant takes it in before the states behind it, and the
    # controller, seeing none for state_timeout_s, safely sends zero torque.)
    assert stale_ticks[0] == stale_before, "the controller's state went stale during the fuzz"
    assert farthest < 0.02, "the arm left its goal"

    # The paths still work: a valid goal, model and episode are taken.
    target = (GOAL[0], GOAL[1] + 0.01, GOAL[2])
    valid_goal = PointStamped()
    valid_goal.header.frame_id = _fuzz.BASE_FRAME
    valid_goal.point.x, valid_goal.point.y, valid_goal.point.z = target
    publishers["goals"].publish(valid_goal)
    publishers["models"].publish(payloads.encode_model(ensemble_doc))
    publishers["episodes"].publish(payloads.bytes_msg(payloads.EPISODES_LABEL, _fuzz.valid_episode_document(rng)))
    assert wait_for(lambda: len(seen["markers"]) > markers_before, 10.0), "the valid goal is taken"
    assert wait_for(lambda: diag["mpc_controller"]["model_version"] == "9999", 10.0), diag["mpc_controller"]
    assert wait_for(lambda: int(diag["dynamics_learner"]["episodes"]) == int(episodes_before) + 1, 10.0)
    time.sleep(1.5)  # the next /diagnostics
    assert all(0 <= n for n in missing().values()), f"valid messages are counted as rejected: {missing()}"
    assert all(p.poll() is None for p in processes.values())

    # The recorder counted every malformed message that reached it: each is in its bag. Its reliable
    # readers fall behind a fuzz and take some messages late, so it is given until its counts stop
    # moving, and then stopped.
    recorder_started = time.monotonic()
    history = []

    def recorder_settled() -> bool:
        """All counted, or no count has moved for 5 s."""
        history.append((time.monotonic(), [_counters(seen)[key] for key in RECORDER]))
        unchanged = [t for t, counts in history if counts == history[-1][1]]
        return recorder_done() or history[-1][0] - unchanged[0] > 5.0

    wait_for(recorder_settled, 60.0, period_s=0.5)
    recorder_s = time.monotonic() - recorder_started
    time.sleep(1.5)  # its last /diagnostics (1 Hz) is out
    recorder_counts = _counters(seen)
    assert processes["trajectory_recorder"].stop() == 0
    in_bag = _malformed_in_bag(system["bag_dir"])
    for key, topic in zip(RECORDER, ("joint_states", "commands_non_finite")):
        counted = recorder_counts[key] - before[key]
        print(f"  recorder {key[1]}: {counted} counted, {in_bag[topic]} in its bag, {sent(topic)} sent "
              f"(settled {recorder_s:.1f} s after the last)")
        assert counted == in_bag[topic], "the recorder counts every malformed message it takes"


def _malformed_in_bag(bag_dir) -> dict[str, int]:
    """The joint states the recorder's decoder refuses and the non-finite commands in its bags."""
    decoder = JointStateDecoder(_fuzz.PANDA)
    counts = Counter()
    for spec, _, raw in read_raw(open_bags([bag_dir]), ["/joint_states", "/effort_controller/commands"]):
        if spec.topic == "/joint_states":
            try:
                decoder.decode_raw(raw)
            except InvalidMessage:
                counts["joint_states"] += 1
        elif _fuzz.has_non_finite(deserialize_message(raw, Float64MultiArray)):
            counts["commands_non_finite"] += 1
    return counts
