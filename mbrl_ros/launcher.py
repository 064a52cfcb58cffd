"""Starting and stopping our node executables as separate processes (no rclpy needed here).

This is what ``mbrl-ros`` uses where ``ros2 launch`` is not installed, and what the multi-process
tests use: each node is its installed executable with ``--ros-args``, in its own process group, and
stopping sends SIGINT (clean rclpy shutdown), then SIGTERM, then SIGKILL to the whole group.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "mbrl_ros"


def share_dir() -> Path:
    """The package's share directory: the source tree when running from a checkout (pip -e),
    else the ament index (colcon install)."""
    source = Path(__file__).resolve().parent.parent
    if (source / "package.xml").is_file() and (source / "config").is_dir():
        return source
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory(PACKAGE))


def config_path(name: str) -> Path:
    """Path of a shipped YAML file in ``config/`` (``name`` with or without ``.yaml``)."""
    if Path(name).is_file():
        return Path(name)
    path = share_dir() / "config" / (name if name.endswith(".yaml") else f"{name}.yaml")
    if not path.exists():
        raise FileNotFoundError(f"no config {name!r} at {path}")
    return path


def executable_path(name: str) -> str:
    """Where the executable ``name`` is installed: ``lib/mbrl_ros`` (colcon, ``ros2 run``) or the
    environment's scripts directory (pip)."""
    for candidate in (
        Path(sys.prefix) / "lib" / PACKAGE / name,
        Path(sys.executable).parent / name,
    ):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"executable {name!r} is not installed (pip install -e . or colcon build)")
    return found


def _yaml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return str(value)


@dataclass(frozen=True)
class NodeSpec:
    """One node to start: executable, optional YAML parameters file, overrides and remappings."""

    executable: str
    params_file: str | None = None
    parameters: dict = field(default_factory=dict)
    remappings: dict = field(default_factory=dict)

    def command(self) -> list[str]:
        args = [executable_path(self.executable), "--ros-args"]
        if self.params_file:
            args += ["--params-file", str(self.params_file)]
        for key, value in self.parameters.items():
            args += ["-p", f"{key}:={_yaml_value(value)}"]
        for src, dst in self.remappings.items():
            args += ["-r", f"{src}:={dst}"]
        return args


class NodeProcess:
    """A running node executable in its own process group."""

    def __init__(self, spec: NodeSpec, env: dict | None = None, stdout=None, stderr=None) -> None:
        self.spec = spec
        self.process = subprocess.Popen(
            spec.command(),
            env=env,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        return self.process.poll()

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout_s: float = 5.0) -> int:
        """SIGINT, then SIGTERM, then SIGKILL to the process group; returns the exit code."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if self.process.poll() is not None:
                break
            self._signal(sig)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                continue
        # Children a node may have started belong to its group: make sure none outlives it.
        self._signal(signal.SIGKILL)
        return self.process.wait()
