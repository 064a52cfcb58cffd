"""Bags from the recorder fitted offline and replayed onto the topics.

A live sim_node is driven through trials by this test (trial markers, exploration torques, resets)
while the real trajectory_recorder writes one MCAP bag per trial and publishes the episodes. All on
the simulator's clock, as in the demo: a loaded machine slows the recording down instead of
tearing gaps into it. Then:
``mbrl-ros fit`` on those bags must give models as good as the learner fitted on the published
episodes, and ``mbrl-ros replay`` of the bags into a fresh recorder and the real dynamics_learner
must give back the same episodes and the same local models.
"""

import json
import re
import subprocess

import numpy as np
import pytest
from rclpy.parameter import Parameter
from std_msgs.msg import Float64MultiArray, String

from mbrl_ros.cli import main as cli_main
from mbrl_ros.data.bag_episodes import episodes_from_streams, read_streams
from mbrl_ros.data.episodes import Episodes
from mbrl_ros.dynamics import serialization
from mbrl_ros.dynamics.ensemble import EnsembleSettings
from mbrl_ros.dynamics.evaluation import PredictionError, k_step_errors, time_invariant, time_varying
from mbrl_ros.dynamics.learner import LearnerSettings, ModelLearner
from mbrl_ros.dynamics.physics import PhysicsModel
from mbrl_ros.launcher import NodeSpec, config_path, executable_path
from mbrl_ros.ros import qos
from mbrl_ros.ros.spin import wait_for

from _trials import EpisodeCollector, reset_arm, run_trial, wait_until_recording

JOINTS = tuple(f"panda_joint{i}" for i in range(1, 8))
HOME = np.array([0.0, -0.5, 0.0, -2.0, 0.0, 1.6, 0.8])
DT_S, STEPS, TRIALS, TRIALS_PER_ITERATION = 0.05, 20, 6, 3
EPOCHS = 20


@pytest.fixture(scope="module")
def recorded(start_node, client_node, tmp_path_factory):
    """TRIALS trials recorded by the real recorder: its bag folder, its episodes, and the node processes."""
    bag_dir = tmp_path_factory.mktemp("recorded_bags")
    sim = start_node(NodeSpec("sim_node", params_file=str(config_path("sim_panda")), parameters={"publish_clock": True}))
    recorder = start_node(NodeSpec("trajectory_recorder", parameters={"bag_dir": str(bag_dir), "storage": "mcap", "use_sim_time": True}))
    client_node.set_parameters([Parameter("use_sim_time", Parameter.Type.BOOL, True)])
    collector = EpisodeCollector(client_node)
    markers = client_node.create_publisher(String, "/mbrl/trial", qos.TRIAL_MARKERS)
    commands = client_node.create_publisher(Float64MultiArray, "effort_controller/commands", qos.COMMANDS_PUB)
    assert wait_for(lambda: commands.get_subscription_count() >= 2 and markers.get_subscription_count() >= 1, 30.0)
    assert wait_until_recording(client_node) and client_node.get_clock().now().nanoseconds > 0
    # Exploration torques scaled by sqrt(diag M), as the initial controller's noise (docs/learning.md), on top
    # of the emulated gravity compensation.
    scale = 0.5 * np.sqrt(np.diag(PhysicsModel.from_robot("panda").mass_matrix(HOME)))
    rng = np.random.default_rng(0)
    for trial in range(TRIALS):
        reset_arm(client_node)
        run_trial(client_node, markers, commands, trial, scale * rng.standard_normal((STEPS, 7)), trial // TRIALS_PER_ITERATION)
    assert wait_for(lambda: collector.count() >= TRIALS, 20.0), f"{collector.count()} of {TRIALS} episodes published"
    return {"bag_dir": bag_dir, "episodes": sorted(collector.episodes, key=lambda e: e.metadata["trial"]),
            "collector": collector, "nodes": (sim, recorder), "publishers": (markers, commands)}


def _learner(trials_per_iteration: int, ensemble: bool) -> ModelLearner:
    """The learner as the dynamics_learner node builds it (seed 0, GMM prior)."""
    settings = LearnerSettings(trials_per_iteration=trials_per_iteration, local_prior="gmm",
                               ensemble=EnsembleSettings(seed=0) if ensemble else None,
                               ensemble_epochs_per_update=EPOCHS, dt_s=DT_S, seed=0)
    return ModelLearner(settings, nx=14, nu=7)


def test_recorded_qos_becomes_the_publishers_profile():
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    from mbrl_ros.data.bags import qos as recorded_qos
    from mbrl_ros.ros.replay import rclpy_qos

    profile = rclpy_qos(recorded_qos(reliable=False, depth=5, transient_local=True))
    assert (profile.reliability, profile.durability, profile.depth) == (ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.TRANSIENT_LOCAL, 5)
    assert rclpy_qos(recorded_qos(reliable=True, depth=10), history_depth=1000).depth == 1000


def _errors(pairs, k) -> PredictionError:
    """RMS k-step error of (predictor, episodes) pairs together."""
    return PredictionError.of(k, np.concatenate([k_step_errors(predict, episodes, k) for predict, episodes in pairs]))


def test_fit_on_the_bags_reproduces_the_learner_on_the_published_episodes(recorded, tmp_path):
    out = tmp_path / "fit"
    code = cli_main(["fit", "--bag", str(recorded["bag_dir"]), "--out", str(out), "--epochs", str(EPOCHS),
                     "--holdout", "0.25", "--seed", "0"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["segmentation"]["method"] == "trial markers" and report["segmentation"]["episodes"] == TRIALS
    by_trial = {e.metadata["trial"]: e for e in recorded["episodes"]}
    iterations = range(TRIALS // TRIALS_PER_ITERATION)

    def published(part: str, iteration: int) -> Episodes:
        return Episodes.concatenate([by_trial[e["trial"]] for e in report["split"][part] if e["iteration"] == iteration])

    # The learner as the node runs it, fed the episodes the recorder published.
    online = _learner(TRIALS_PER_ITERATION, ensemble=True)
    learner_tvlg = {}
    for iteration in iterations:
        online.add(published("fit", iteration))
        learner_tvlg[iteration] = online.fit_local(iteration).dynamics
    online.train_global()
    fitted_tvlg = {i: serialization.load_tvlg(str(out / f"tvlg_v{i + 1:04d}.safetensors"))[0] for i in iterations}
    fitted_ensemble = serialization.load_ensemble(str(out / "ensemble_latest.safetensors"))[0]

    # The bags give back exactly the episodes the recorder published, so the local models are the same.
    from_bags = episodes_from_streams(read_streams([recorded["bag_dir"]], joint_names=JOINTS), DT_S, STEPS)
    assert sorted(e.metadata["trial"] for e in from_bags) == sorted(by_trial)
    for episode in from_bags:
        np.testing.assert_array_equal(episode.x, by_trial[episode.metadata["trial"]].x)
        np.testing.assert_array_equal(episode.u, by_trial[episode.metadata["trial"]].u)
    for i in iterations:
        np.testing.assert_allclose(fitted_tvlg[i].Fm, learner_tvlg[i].Fm, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(fitted_tvlg[i].fv, learner_tvlg[i].fv, rtol=1e-9, atol=1e-12)

    errors = report["evaluation"]["errors"]
    for k in (1, 5):
        holdout = [published("holdout", i) for i in iterations]
        pairs = {
            "tvlg": ([(time_varying(fitted_tvlg[i]), holdout[i]) for i in iterations],
                     [(time_varying(learner_tvlg[i]), holdout[i]) for i in iterations]),
            "ensemble": ([(time_invariant(fitted_ensemble), h) for h in holdout], [(time_invariant(online.ensemble), h) for h in holdout]),
        }
        for name, (fitted, learner) in pairs.items():
            ours, theirs = _errors(fitted, k), _errors(learner, k)
            print(f"{name} k={k}: fit {ours.mean_position_rad:.5f} rad {ours.mean_velocity_rad_s:.4f} rad/s, "
                  f"learner {theirs.mean_position_rad:.5f} rad {theirs.mean_velocity_rad_s:.4f} rad/s")
            assert ours.mean_position_rad == pytest.approx(theirs.mean_position_rad, rel=0.1)
            assert ours.mean_velocity_rad_s == pytest.approx(theirs.mean_velocity_rad_s, rel=0.1)
            reported = errors["tvlg_gmm_prior" if name == "tvlg" else name][str(k)]
            assert reported["velocity_all_joints_rad_s"] == pytest.approx(ours.mean_velocity_rad_s, rel=1e-9), "report = checkpoints"


def test_replay_into_a_fresh_recorder_and_learner_gives_the_same_episodes_and_models(recorded, start_node, client_node, tmp_path):
    # The run is over: the arm and the first recorder would hear the replay too, and the markers
    # publisher (transient-local) would hand its last markers to the new recorder a second time.
    for node in recorded["nodes"]:
        node.stop()
    for publisher in recorded["publishers"]:
        client_node.destroy_publisher(publisher)
    collector = recorded["collector"]
    before = collector.count()
    model_dir = tmp_path / "models"
    start_node(NodeSpec("trajectory_recorder", parameters={"bag_dir": str(tmp_path / "bags"), "use_sim_time": True}))
    start_node(NodeSpec("dynamics_learner", parameters={
        "use_sim_time": True, "trials_per_iteration": TRIALS_PER_ITERATION, "ensemble_enabled": False,
        "dt_s": DT_S, "trial_steps": STEPS, "model_dir": str(model_dir), "seed": 0}))

    # On a busy machine the recorder falls behind: at half speed its 500-deep joint-state queue
    # covers a 2 s stall, and publishers keeping 1000 messages (not the recorded 10) cover the DDS side.
    replay = subprocess.run([executable_path("mbrl-ros"), "replay", "--bag", str(recorded["bag_dir"]), "--clock",
                             "--rate", "0.5", "--history-depth", "1000", "--wait-s", "30"],
                            capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stderr
    played = re.search(r"replayed ([\d.]+) s of recording in ([\d.]+) s: (.*)", replay.stdout)
    assert played, replay.stdout
    assert float(played[2]) == pytest.approx(2 * float(played[1]), rel=0.05), "played at half the recorded speed"
    assert "messages on /joint_states" in played[3] and "messages on /mbrl/trial" in played[3]
    assert wait_for(lambda: collector.count() >= before + TRIALS, 20.0), f"{collector.count() - before} episodes from the replay"

    replayed = sorted(collector.episodes[before:], key=lambda e: e.metadata["trial"])
    for original, again in zip(recorded["episodes"], replayed):
        assert again.metadata["trial"] == original.metadata["trial"]
        np.testing.assert_array_equal(again.x, original.x)
        np.testing.assert_array_equal(again.timestamps_s, original.timestamps_s)
        np.testing.assert_array_equal(again.u, original.u)

    # The learner node fitted each iteration from the replay as the in-process learner does from the original episodes.
    reference = _learner(TRIALS_PER_ITERATION, ensemble=False)
    for iteration in range(TRIALS // TRIALS_PER_ITERATION):
        path = model_dir / f"tvlg_v{iteration + 1:04d}.safetensors"
        assert wait_for(path.exists, 30.0), f"the learner wrote no {path.name}"
        for episode in recorded["episodes"][iteration * TRIALS_PER_ITERATION:(iteration + 1) * TRIALS_PER_ITERATION]:
            reference.add(episode)
        expected = reference.fit_local(iteration).dynamics
        got, meta = serialization.load_tvlg(str(path))
        assert meta["iteration"] == iteration
        np.testing.assert_allclose(got.Fm, expected.Fm, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got.fv, expected.fv, rtol=1e-9, atol=1e-12)
