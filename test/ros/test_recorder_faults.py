"""The recorder killed with SIGKILL in the middle of a trial, then restarted on the same bag folder:
the completed trials' bags read back, at most the trial in progress is lost, no half-written bag is
left under a bag's name, and the restarted recorder records the next trials, which the learner
(the real dynamics_learner) receives."""

import os
import signal

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.parameter import Parameter
from std_msgs.msg import Float64MultiArray, String

from mbrl_ros.data.bags import read_messages
from mbrl_ros.launcher import NodeSpec, config_path, node_specs_from_config
from mbrl_ros.ros import qos
from mbrl_ros.ros.diagnostics import status_values
from mbrl_ros.ros.spin import wait_for

from _trials import EpisodeCollector, reset_arm, run_trial, wait_until_recording

STEPS = 20
TOPICS = ["/joint_states", "/effort_controller/commands", "/mbrl/trial"]


def _trial_bags(bag_dir) -> dict[int, object]:
    return {int(p.name.rsplit("_", 1)[1]): p for p in bag_dir.iterdir() if "_trial_" in p.name}


def test_a_recorder_killed_mid_trial_loses_only_that_trial_and_a_restarted_one_records_on(
        start_node, client_node, tmp_path):
    bag_dir, model_dir = tmp_path / "bags", tmp_path / "models"
    client_node.set_parameters([Parameter("use_sim_time", value=True)])
    specs = {s.executable: s for s in node_specs_from_config(config_path("mbrl_sim"), {
        "trajectory_recorder": {"bag_dir": str(bag_dir)},
        "dynamics_learner": {"model_dir": str(model_dir), "ensemble_enabled": False, "trials_per_iteration": 2,
                             "trial_steps": STEPS},
    })}
    start_node(NodeSpec("sim_node", params_file=str(config_path("sim_panda")), parameters={"publish_clock": True}))
    recorder = start_node(specs["trajectory_recorder"])
    start_node(specs["dynamics_learner"])
    learner: dict[str, str] = {}
    client_node.create_subscription(DiagnosticArray, "/diagnostics",
                                    lambda m: learner.update(status_values(m, "dynamics_learner")), qos.DIAGNOSTICS)
    collector = EpisodeCollector(client_node)
    markers = client_node.create_publisher(String, "/mbrl/trial", qos.TRIAL_MARKERS)
    commands = client_node.create_publisher(Float64MultiArray, "effort_controller/commands", qos.COMMANDS_PUB)
    assert wait_for(lambda: commands.get_subscription_count() >= 2 and markers.get_subscription_count() >= 1, 30.0)
    assert wait_until_recording(client_node)
    rng = np.random.default_rng(0)

    def trial(n: int, iteration: int, during=None) -> None:
        reset_arm(client_node)
        run_trial(client_node, markers, commands, n, 2.0 * rng.standard_normal((STEPS, 7)), iteration, during)

    trial(0, 0)
    trial(1, 0)
    assert wait_for(lambda: collector.count() >= 2, 20.0), "two trials recorded before the kill"

    def kill_halfway(step: int) -> None:
        if step == STEPS // 2:
            os.kill(recorder.pid, signal.SIGKILL)

    trial(2, 1, during=kill_halfway)
    assert wait_for(lambda: recorder.poll() is not None, 5.0)
    assert recorder.poll() == -signal.SIGKILL

    # The completed trials' bags read back, each whole; the one in progress left no bag.
    bags = _trial_bags(bag_dir)
    assert sorted(bags) == [0, 1], f"bags after the kill: {sorted(p.name for p in bag_dir.iterdir())}"
    for n, bag in bags.items():
        counts = {}
        for topic, _, _ in read_messages([bag], TOPICS):
            counts[topic] = counts.get(topic, 0) + 1
        assert counts["/mbrl/trial"] >= 2 and counts["/joint_states"] >= 250 * STEPS * 0.05, (n, counts)
    visible = [p.name for p in bag_dir.iterdir() if not p.name.startswith(".")]
    assert all("_trial_" in name for name in visible), f"only complete bags under a bag's name: {visible}"

    # Restarted on the same folder: it records the next trials, and the learner gets them.
    recorder = start_node(specs["trajectory_recorder"])
    assert wait_until_recording(client_node)
    # Iteration 1 again, as the controller runs it when its trial 2 is lost.
    trial(3, 1)
    trial(4, 1)
    assert wait_for(lambda: collector.count() >= 4, 20.0), f"{collector.count()} episodes"
    assert sorted(e.metadata["trial"] for e in collector.episodes) == [0, 1, 3, 4]
    assert sorted(_trial_bags(bag_dir)) == [0, 1, 3, 4]
    assert wait_for(lambda: int(learner.get("episodes", 0)) == 4, 20.0), learner
    assert wait_for(lambda: int(learner.get("local_fits", 0)) >= 2, 30.0), "the learner fits on the trials after the restart"
    print(f"\nrecorder SIGKILL at step {STEPS // 2} of trial 2: bags {sorted(_trial_bags(bag_dir))}, "
          f"episodes {sorted(e.metadata['trial'] for e in collector.episodes)}, learner {learner.get('episodes')} episodes")
