"""dynamics_learner: fits models to the episodes on ``/mbrl/episodes`` and publishes them.

Local models (time-varying linear-Gaussian, with a GMM / global-model / no prior) are fitted when a
controller iteration's trials are complete; the global ensemble trains in the background on every
trial so far. Each model goes out on ``/mbrl/model`` (reliable, transient-local, versioned) and is
checkpointed atomically into ``model_dir``; a checkpoint that cannot be written (a full disk) is
logged and counted (``write_errors``, ``last_write_error``), and the model is published all the
same. Fitting runs in worker threads: callbacks stay responsive; ``/diagnostics`` says when the
ensemble is training (``ensemble_training``, ``ensemble_epoch``). Bad episode payloads (of another
arm, malformed) are rejected and counted.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path

import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from std_msgs.msg import UInt8MultiArray

from mbrl_ros.data.bag_episodes import episodes_from_streams, read_streams
from mbrl_ros.data.episodes import Episodes
from mbrl_ros.dynamics import serialization
from mbrl_ros.dynamics.learner import LEARNER_PARAMETERS, LearnerNodeSettings, ModelLearner
from mbrl_ros.ros import payloads, qos
from mbrl_ros.ros.conversions import InvalidMessage
from mbrl_ros.ros.diagnostics import diagnostic_array, status
from mbrl_ros.ros.params import declare_settings
from mbrl_ros.ros.spin import run_node
from mbrl_ros.sim.robots import robot_spec


class DynamicsLearner(Node):
    def __init__(self) -> None:
        super().__init__("dynamics_learner")
        node_settings = declare_settings(self, LearnerNodeSettings(), LEARNER_PARAMETERS)
        self._settings = node_settings.learner()
        self._model_dir = Path(node_settings.model_dir)
        self._trial_steps = node_settings.trial_steps
        torch.set_num_threads(node_settings.torch_threads)

        spec = robot_spec(node_settings.robot)
        self._joint_names = list(spec.joint_names)
        self._learner = ModelLearner(self._settings, nx=2 * spec.nq, nu=spec.nq)
        # Versions continue after the folder's: across restarts a version names one model, in the
        # folder (<kind>_v<version>) and on /mbrl/model.
        self._model_version = serialization.latest_version(self._model_dir)
        self._version_lock = threading.Lock()
        self._counts = {"episodes": 0, "rejected_episodes": 0, "local_fits": 0, "failed_fits": 0, "ensemble_trainings": 0,
                        "write_errors": 0}
        self._last_train = {}
        self._last_write_error = ""
        self._training: dict | None = None  # while the ensemble trains: the epochs it has done

        self._model_pub = self.create_publisher(UInt8MultiArray, "/mbrl/model", qos.MODEL)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", qos.DIAGNOSTICS)
        self.create_subscription(UInt8MultiArray, "/mbrl/episodes", self._on_episodes, qos.EPISODES)
        self.create_timer(1.0, self._publish_diagnostics)

        self._local_jobs: queue.Queue[int | None] = queue.Queue()
        self._global_wakeup = threading.Event()
        self._running = True
        self._workers = [
            threading.Thread(target=self._local_worker, name="local_fit", daemon=True),
            threading.Thread(target=self._global_worker, name="ensemble_training", daemon=True),
        ]
        latest = self._model_dir / "ensemble_latest.safetensors"
        if node_settings.checkpoint:
            model, _ = self._learner.start_from_checkpoint(node_settings.checkpoint)
            self._publish("ensemble", serialization.ensemble_to_bytes, model, {"source": node_settings.checkpoint})
        elif node_settings.resume and node_settings.ensemble_enabled and latest.exists():
            try:
                model, _ = self._learner.start_from_checkpoint(str(latest))
            except (ValueError, OSError) as err:  # unreadable, or another robot's: say so and learn from scratch
                self.get_logger().error(f"not resuming from {latest}: {err}")
            else:
                self.get_logger().info(f"resuming from {latest} (model v{self._model_version})")
                self._publish("ensemble", serialization.ensemble_to_bytes, model, {"source": str(latest), "resumed": True})
        for worker in self._workers:
            worker.start()
        if node_settings.seed_bags:
            self._seed_from_bags(node_settings.seed_bags)
        self.get_logger().info(
            f"learning {node_settings.robot} dynamics: local prior {node_settings.local_prior}, ensemble "
            f"{'on' if node_settings.ensemble_enabled else 'off'}{' (residual on physics)' if self._settings.semi_parametric else ''}, "
            f"checkpoints in {self._model_dir}"
        )

    def _seed_from_bags(self, paths: list[str]) -> None:
        streams = read_streams(paths, joint_names=self._joint_names)
        episodes = episodes_from_streams(streams, self._settings.dt_s, self._trial_steps)
        self.get_logger().info(f"seeding from {len(paths)} bags: {streams.messages_read} messages, {len(episodes)} episodes")
        for episode in episodes:
            self._add(episode)
        self._global_wakeup.set()

    def _on_episodes(self, msg: UInt8MultiArray) -> None:
        try:
            episodes = payloads.decode_episodes(msg, self._joint_names)
            self._add(episodes)
        except Exception as err:  # an episode, whatever it holds, must not end the node
            self._counts["rejected_episodes"] += 1
            reason = err if isinstance(err, (InvalidMessage, ValueError)) else repr(err)
            self.get_logger().warning(f"rejected episode: {reason}", throttle_duration_sec=1.0)

    def _add(self, episodes: Episodes) -> None:
        complete = self._learner.add(episodes)
        self._counts["episodes"] += episodes.n_trials
        if complete is not None:
            self._local_jobs.put(complete)
            # Once per iteration: each ensemble is several MB on the wire and seconds of training.
            self._global_wakeup.set()

    def _next_version(self) -> int:
        with self._version_lock:
            self._model_version += 1
            return self._model_version

    def _publish(self, kind: str, encode, model, info: dict) -> None:
        version = self._next_version()
        data = encode(model, self._joint_names, model_version=version, **info)
        try:
            serialization.write_checkpoint(self._model_dir, kind, version, data)
        except OSError as err:  # a full disk costs the checkpoint, not the model: the controller gets it
            self._counts["write_errors"] += 1
            self._last_write_error = f"{kind} v{version}: {err}"
            self.get_logger().error(f"checkpoint of {kind} model v{version} not written: {err}")
        self._model_pub.publish(payloads.encode_model(data))
        self.get_logger().info(f"published {kind} model v{version} ({len(data) / 1e3:.0f} kB) {info}")

    def _local_worker(self) -> None:
        while self._running:
            iteration = self._local_jobs.get()
            if iteration is None:
                return
            # Any failure (fit or checkpoint) is one lost model; the thread must live on for the
            # next iterations.
            try:
                fit = self._learner.fit_local(iteration)
                info = {"iteration": fit.iteration, "n_trials": fit.n_trials, "fit_time_s": round(fit.fit_time_s, 4)}
                self._publish("tvlg", serialization.tvlg_to_bytes, fit.dynamics, info)
            except Exception as err:
                self._counts["failed_fits"] += 1
                self.get_logger().error(f"local fit of iteration {iteration} failed: {err!r}")
                continue
            self._counts["local_fits"] += 1

    def _global_worker(self) -> None:
        # Training the ensemble is background work: a little below the local fit the controller is
        # waiting for (Linux nice values are per thread). Not far below: the sim and the controller
        # are protected by real-time scheduling, and at nice 10 the recorder and a monitor at nice 0
        # starved it (the demo's final model took 180 s; at nice 3, with the learner on wall time, 25 s).
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 3)
        while self._running:
            self._global_wakeup.wait()
            self._global_wakeup.clear()
            if not self._running:
                return
            # As in _local_worker: a failure is counted and the next completed iteration wakes us again.
            try:
                self._training = {"ensemble_epoch": 0}
                stats = self._learner.train_global(progress=self._on_epoch)
                self._training = None
                if stats is None:
                    continue
                self._report_unseen_errors()
                self._last_train = {"epochs": stats.epochs, "n_train": stats.n_train, "train_time_s": round(stats.time_s, 3),
                                    "iteration": self._learner.ensemble_iteration}
                self._publish("ensemble", serialization.ensemble_to_bytes, self._learner.ensemble, self._last_train)
            except Exception as err:
                self._training = None
                self._counts["failed_fits"] += 1
                self.get_logger().error(f"ensemble training failed: {err!r}")
                continue
            self._counts["ensemble_trainings"] += 1

    def _report_unseen_errors(self) -> None:
        scored = self._learner.unseen_errors
        if scored is not None and scored.worse_than_previous:
            k = max(scored.latest_mrad)
            self.get_logger().warning(
                f"the ensemble predicted iteration {scored.iteration}'s trials, before training on them, worse than "
                f"the version before it: {k}-step error {scored.latest_mrad[k]:.1f} mrad against {scored.previous_mrad[k]:.1f}")

    def _on_epoch(self, epoch: int, max_epochs: int) -> None:
        training = self._training
        if training is not None:
            if training["ensemble_epoch"] == 0:
                self.get_logger().info(f"training the ensemble: epoch {epoch} of at most {max_epochs}")
            training["ensemble_epoch"] = epoch

    def _publish_diagnostics(self) -> None:
        counts, training, scored = dict(self._counts), self._training, self._learner.unseen_errors
        level = DiagnosticStatus.WARN if counts["rejected_episodes"] or counts["failed_fits"] or counts["write_errors"] \
            or (scored is not None and scored.worse_than_previous) else DiagnosticStatus.OK
        values = {**counts, "last_write_error": self._last_write_error, "model_version": self._model_version,
                  "ensemble_training": training is not None,
                  "ensemble_epoch": training["ensemble_epoch"] if training is not None else 0, **self._last_train,
                  **(scored.as_dict() if scored is not None else {})}
        self._diag_pub.publish(
            diagnostic_array(self.get_clock().now().to_msg(), status("dynamics_learner", "", level, "learning", values))
        )

    def shutdown(self) -> None:
        self._running = False
        self._local_jobs.put(None)
        self._global_wakeup.set()
        for worker in self._workers:
            worker.join(timeout=5.0)


def main(args=None, stop=None) -> None:
    run_node(DynamicsLearner, args, stop=stop)


if __name__ == "__main__":
    main()
