"""``mbrl-ros run`` puts a run's outputs in one run folder, never in the current directory: by
default a new ``$ROS_HOME/mbrl_ros/runs/<start time>`` with ``bags/``, ``models/`` and ``logs/``,
or the ``--output-dir`` given; a ``bag_dir``/``model_dir`` the config sets, relative ones too, wins."""

import os
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

from mbrl_ros.launcher import executable_path
from mbrl_ros.run_folder import NAME_FORMAT

#: Short LQR-FLM iterations: 2 trials of 10 steps, so that a bag and a local model come soon.
SHORT_RUN = ["-p", "mpc_controller.trials_per_iteration:=2", "-p", "mpc_controller.trial_steps:=10",
             "-p", "dynamics_learner.trials_per_iteration:=2", "-p", "dynamics_learner.trial_steps:=10",
             "-p", "dynamics_learner.ensemble_enabled:=false"]


def _children(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return children


def start_run(args: list[str], cwd: Path, env: dict, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen([executable_path("mbrl-ros"), "run", *args], cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop_run(proc: subprocess.Popen) -> int:
    """Ctrl-C, as a user stops it (``mbrl-ros run`` stops its nodes); a run that does not end is
    killed, its nodes (each in a process group of its own) with it."""
    nodes = _children(proc.pid)
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        for pid in nodes:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.kill()
        proc.wait()
        raise


def wait_for(condition, timeout_s: float, proc: subprocess.Popen) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        assert proc.poll() is None, f"mbrl-ros run ended with code {proc.returncode}"
        time.sleep(0.5)
    return False


def test_a_run_from_any_directory_writes_bags_and_models_into_a_new_run_folder_under_ros_home(tmp_path):
    cwd, home = tmp_path / "cwd", tmp_path / "ros_home"
    cwd.mkdir()
    env = dict(os.environ, ROS_HOME=str(home))
    log = tmp_path / "run.log"
    proc = start_run(SHORT_RUN, cwd, env, log)

    def written(pattern: str) -> list[Path]:  # wherever it lands
        return [p for p in (*home.rglob(pattern), *cwd.rglob(pattern)) if not any(s.startswith(".") for s in p.parts)]

    try:
        done = wait_for(lambda: written("tvlg_v0001.safetensors") and written("*_trial_0001"), 240.0, proc)
    finally:
        code = stop_run(proc)
    assert done, f"no bag and local model within 240 s; {log.read_text()[-3000:]}"
    assert code == 0, log.read_text()[-3000:]
    assert sorted(p.name for p in cwd.iterdir()) == [], "nothing in the current directory"
    runs = list((home / "mbrl_ros" / "runs").iterdir())
    assert len(runs) == 1, runs
    datetime.strptime(runs[0].name, NAME_FORMAT)
    assert {"bags", "models", "logs"} <= {p.name for p in runs[0].iterdir()}
    assert (runs[0] / "models" / "tvlg_v0001.safetensors").is_file()
    assert any((runs[0] / "bags").glob("*_trial_0001")), sorted(p.name for p in (runs[0] / "bags").iterdir())
    assert (runs[0] / "logs" / "dynamics_learner.log").is_file()


def test_a_given_output_dir_is_used_and_a_relative_bag_dir_of_the_config_wins(tmp_path):
    cwd, home, out = tmp_path / "cwd", tmp_path / "ros_home", tmp_path / "given"
    cwd.mkdir()
    config = tmp_path / "mine.yaml"
    config.write_text("trajectory_recorder:\n  ros__parameters:\n    bag_dir: my_bags\n"
                      "dynamics_learner:\n  ros__parameters:\n    ensemble_enabled: false\n")
    env = dict(os.environ, ROS_HOME=str(home))
    log = tmp_path / "run.log"
    proc = start_run(["--config", str(config), "--output-dir", str(out)], cwd, env, log)
    learner_log = out / "logs" / "dynamics_learner.log"
    try:
        started = wait_for(lambda: (cwd / "my_bags").is_dir() and learner_log.is_file()
                           and "checkpoints in" in learner_log.read_text(), 120.0, proc)
    finally:
        code = stop_run(proc)
    assert started, log.read_text()[-3000:]
    assert code == 0, log.read_text()[-3000:]
    assert f"checkpoints in {out / 'models'}" in learner_log.read_text()
    assert sorted(p.name for p in cwd.iterdir()) == ["my_bags"], "the config's relative bag_dir, in the current directory"
    assert not (out / "bags").exists() and not home.exists(), "no other output folder"
