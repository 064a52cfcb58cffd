"""The disk fills up under the running system: the recorder's bags and the learner's checkpoints go
to a small tmpfs (a size-limited loop-mounted ext4 where tmpfs cannot be mounted) that the test then
fills to the last byte and keeps full, while the controller learns (LQR-FLM, 2 trials per
iteration) with all four nodes running.

What is checked: each node says so in its log (/rosout) and its /diagnostics (``write_errors``,
``last_write_error``: ENOSPC); no file under a final name is corrupt (every bag reads back with
rosbags, every checkpoint loads), nothing half-written is left but the segment in progress; both
nodes keep running; the controller is unaffected: its torques stay at 250 Hz and its iterations go
on, since episodes and models are still published; and once space is freed, bags and checkpoints
are written again. Needs root (mount); skipped, saying why, where neither mount is permitted."""

import shutil
import time
from pathlib import Path

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import Log
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float64MultiArray

from mbrl_ros.data.bags import read_messages
from mbrl_ros.dynamics import serialization
from mbrl_ros.launcher import config_path, node_specs_from_config
from mbrl_ros.ros import qos
from mbrl_ros.ros.diagnostics import status_values
from mbrl_ros.ros.spin import wait_for
from mbrl_ros.ros.topic_monitor import TopicMonitor

from _small_disk import Filler, mount_small_filesystem, unmount

SIZE_MB = 32
STEPS = 20
NODES = ("sim_node", "mpc_controller", "trajectory_recorder", "dynamics_learner")
ROSOUT = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


@pytest.fixture(scope="module")
def disk(tmp_path_factory):
    where = tmp_path_factory.mktemp("full") / "disk"
    kind = mount_small_filesystem(where, SIZE_MB)
    yield where, kind
    # After every node is stopped (start_node is set up after this fixture, so torn down before it).
    unmount(where)


@pytest.fixture(scope="module")
def system(disk, start_node, client_node):
    where, kind = disk
    client_node.set_parameters([Parameter("use_sim_time", value=True)])
    specs = {s.executable: s for s in node_specs_from_config(config_path("mbrl_sim"), {
        "trajectory_recorder": {"bag_dir": str(where / "bags")},
        "dynamics_learner": {"model_dir": str(where / "models"), "trials_per_iteration": 2, "trial_steps": STEPS,
                             "ensemble_members": 2, "ensemble_elites": 1, "ensemble_hidden_units": 16,
                             "ensemble_hidden_layers": 1, "ensemble_epochs_per_update": 5},
        "mpc_controller": {"trials_per_iteration": 2, "trial_steps": STEPS, "iterations": 1000},
    })}
    processes = {name: start_node(specs[name]) for name in NODES}
    diag: dict[str, dict[str, str]] = {n: {} for n in NODES}
    logs: list[Log] = []

    def on_diag(msg: DiagnosticArray) -> None:
        for name in NODES:
            values = status_values(msg, name)
            if values:
                diag[name] = values

    client_node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, qos.DIAGNOSTICS)
    client_node.create_subscription(Log, "/rosout", logs.append, ROSOUT)
    commands = TopicMonitor(client_node, Float64MultiArray, "effort_controller/commands", qos.COMMANDS)
    yield {"where": where, "kind": kind, "processes": processes, "diag": diag, "logs": logs, "commands": commands}


def _final_names(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


def _check_no_corrupt_file_under_a_final_name(where: Path) -> tuple[int, int]:
    """Every bag reads back whole, every checkpoint loads; what is hidden is at most the segment in
    progress (no checkpoint's temporary file is left)."""
    bags = _final_names(where / "bags")
    for bag in bags:
        assert sum(1 for _ in read_messages([bag], ["/joint_states"])) > 0, bag
    checkpoints = _final_names(where / "models")
    for path in checkpoints:
        serialization.load(str(path))
    partial = [p.name for p in (where / "bags").iterdir() if p.name.startswith(".")]
    assert all(name.endswith(".partial") for name in partial) and len(partial) <= 1, partial
    # A checkpoint being written is a hidden temporary file; a failed write leaves none behind.
    assert wait_for(lambda: not [p for p in (where / "models").iterdir() if p.name.startswith(".")], 5.0)
    return len(bags), len(checkpoints)


def test_a_full_disk_is_reported_corrupts_nothing_and_leaves_the_controller_learning(system):
    where, diag, logs, commands = system["where"], system["diag"], system["logs"], system["commands"]
    processes = system["processes"]
    # Learning, with bags and checkpoints on the small disk.
    assert wait_for(lambda: int(diag["mpc_controller"].get("iteration", 0)) >= 1
                    and len(_final_names(where / "bags")) >= 2 and len(_final_names(where / "models")) >= 2, 120.0), diag
    before = {"iteration": int(diag["mpc_controller"]["iteration"]), "episodes": int(diag["trajectory_recorder"]["episodes"]),
              "bags": len(_final_names(where / "bags")), "checkpoints": len(_final_names(where / "models"))}

    filler = Filler(where / "filler")
    filler.start()
    try:
        assert filler.full.wait(30.0), "the disk did not fill"
        full_at = time.monotonic()
        free_bytes = shutil.disk_usage(where).free
        commands.reset()
        # Both nodes hit it (the recorder within a trial, the learner at its next checkpoint), and
        # the controller goes on learning: two more iterations on a full disk.
        assert wait_for(lambda: int(diag["trajectory_recorder"].get("write_errors", 0)) >= 1
                        and int(diag["dynamics_learner"].get("write_errors", 0)) >= 1
                        and int(diag["mpc_controller"]["iteration"]) >= before["iteration"] + 2
                        # the recorder's /diagnostics may come a moment after the trial's end
                        and int(diag["trajectory_recorder"]["episodes"]) >= before["episodes"] + 4, 120.0), (before, diag)
        full_s = time.monotonic() - full_at
        rate = commands.summary()
        during = {"bags": len(_final_names(where / "bags")), "checkpoints": len(_final_names(where / "models")),
                  "iteration": int(diag["mpc_controller"]["iteration"]), "episodes": int(diag["trajectory_recorder"]["episodes"])}
        states = {name: dict(diag[name]) for name in NODES}
        alive = {name: p.poll() for name, p in processes.items()}
        files = _check_no_corrupt_file_under_a_final_name(where)
    finally:
        filler.stop()
    filler_mb = filler.written / 1e6

    recorder_state, learner_state = states["trajectory_recorder"], states["dynamics_learner"]
    print(f"\n{system['kind']} of {SIZE_MB} MB filled (filler {filler_mb:.1f} MB, {free_bytes} bytes free) for "
          f"{full_s:.1f} s: controller iterations {before['iteration']} -> {during['iteration']}, torques "
          f"{rate.rate_hz:.1f} Hz (p99 period {rate.p99_s * 1e3:.2f} ms); recorder: {recorder_state['write_errors']} bags not "
          f"written ({recorder_state['dropped_messages']} messages dropped), episodes {before['episodes']} -> "
          f"{during['episodes']}; learner: {learner_state['write_errors']} checkpoints not written, "
          f"model v{learner_state['model_version']}; bags {before['bags']} -> {during['bags']}, checkpoints "
          f"{before['checkpoints']} -> {during['checkpoints']}; recorder: {recorder_state['last_write_error']!r}; "
          f"learner: {learner_state['last_write_error']!r}")
    assert all(code is None for code in alive.values()), alive
    # Said clearly, in /diagnostics and in the log.
    for state in (recorder_state, learner_state):
        assert "No space left on device" in state["last_write_error"], state
    errors = {(m.name, m.msg) for m in logs if m.level >= Log.ERROR and "No space left on device" in m.msg}
    assert {name for name, _ in errors} >= {"trajectory_recorder", "dynamics_learner"}, sorted(errors)[:4]
    # Nothing corrupt under a final name; the episodes and models went on all the same.
    assert files == (during["bags"], during["checkpoints"])
    assert during["episodes"] >= before["episodes"] + 4, "episodes are published while their bags cannot be written"
    # The controller: unaffected.
    assert rate.rate_hz > 200.0, rate
    assert states["mpc_controller"]["lost_trials"] == "0", states["mpc_controller"]

    # Space again: the next bags and checkpoints are written.
    assert wait_for(lambda: len(_final_names(where / "bags")) > during["bags"]
                    and len(_final_names(where / "models")) > during["checkpoints"], 60.0), "writing resumes"
    _check_no_corrupt_file_under_a_final_name(where)
    assert all(p.poll() is None for p in processes.values())
    assert int(diag["trajectory_recorder"]["episodes"]) > during["episodes"]
