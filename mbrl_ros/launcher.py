"""Starting and stopping our node executables as separate processes (no rclpy needed here).

This is what ``mbrl-ros`` uses where ``ros2 launch`` is not installed, and what the multi-process
tests use: each node is its installed executable with ``--ros-args``, in its own process group, and
stopping sends SIGINT (clean rclpy shutdown), then SIGTERM, then SIGKILL to the whole group.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
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


def executable_path(name: str, package: str = PACKAGE) -> str:
    """Where the executable ``name`` of ``package`` is installed: ``lib/<package>`` (colcon, a ROS 2
    distro, ``ros2 run``) or, for mbrl_ros, the environment's scripts directory (pip)."""
    if package != PACKAGE:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix

        try:
            candidate = Path(get_package_prefix(package)) / "lib" / package / name
        except (OSError, PackageNotFoundError):  # OSError: no AMENT_PREFIX_PATH at all
            raise FileNotFoundError(f"{package} is not installed (it comes with a ROS 2 distro: source its "
                                    "setup.bash)") from None
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
        raise FileNotFoundError(f"{package} has no executable {name!r} at {candidate}")
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
    if isinstance(value, str):
        return json.dumps(value)  # a YAML double-quoted string: empty and special strings survive
    return str(value)


@dataclass(frozen=True)
class NodeSpec:
    """One node to start: executable (of ``package``), its command-line ``arguments``, optional YAML
    parameters file, overrides and remappings. A node that is not ``required`` (a viewer) may exit
    without ending the others."""

    executable: str
    params_file: str | None = None
    parameters: dict = field(default_factory=dict)
    remappings: dict = field(default_factory=dict)
    package: str = PACKAGE
    arguments: tuple[str, ...] = ()
    required: bool = True

    def command(self) -> list[str]:
        args = [executable_path(self.executable, self.package), *self.arguments, "--ros-args"]
        if self.params_file:
            args += ["--params-file", str(self.params_file)]
        for key, value in self.parameters.items():
            args += ["-p", f"{key}:={_yaml_value(value)}"]
        for src, dst in self.remappings.items():
            args += ["-r", f"{src}:={dst}"]
        return args


class NodeProcess:
    """A running node executable in its own process group."""

    def __init__(self, spec: NodeSpec, env: dict | None = None, stdout=None, stderr=None, text: bool = False,
                 cwd: str | Path | None = None) -> None:
        self.spec = spec
        self.process = subprocess.Popen(
            spec.command(),
            env=env,
            cwd=cwd,
            stdout=stdout,
            stderr=stderr,
            text=text,
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


class ProcessGroup:
    """Several node processes started together, their output shown line by line with the node's
    name in front (and copied to ``log_dir``), stopped together in reverse start order."""

    def __init__(self, specs: list[NodeSpec], env: dict | None = None, log_dir: str | Path | None = None,
                 echo: bool = True) -> None:
        self.specs = specs
        # Children's print() output must reach us line by line, not in 4 KiB blocks.
        self.env = dict(env if env is not None else os.environ, PYTHONUNBUFFERED="1")
        self.log_dir = Path(log_dir) if log_dir else None
        self.echo = echo
        self.processes: list[NodeProcess] = []
        self._readers: list[threading.Thread] = []
        self._print_lock = threading.Lock()

    def _pump(self, name: str, proc: NodeProcess) -> None:
        log = open(self.log_dir / f"{name}.log", "w") if self.log_dir else None
        try:
            for line in proc.process.stdout:
                if log:
                    log.write(line)
                    log.flush()
                if self.echo:
                    with self._print_lock:
                        print(f"[{name}] {line}", end="", flush=True)
        finally:
            if log:
                log.close()

    def start(self) -> "ProcessGroup":
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        for spec in self.specs:
            proc = NodeProcess(spec, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            self.processes.append(proc)
            reader = threading.Thread(target=self._pump, args=(spec.executable, proc), daemon=True)
            reader.start()
            self._readers.append(reader)
        return self

    def exited(self) -> list[tuple[str, int]]:
        """(executable, exit code) of every required process that has ended."""
        return [(p.spec.executable, code) for p in self.processes if p.spec.required and (code := p.poll()) is not None]

    def stop(self, timeout_s: float = 5.0) -> None:
        for proc in reversed(self.processes):
            proc.stop(timeout_s)
        for reader in self._readers:
            reader.join(timeout=2.0)

    def __enter__(self) -> "ProcessGroup":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def node_specs_from_config(path: str | Path, overrides: dict[str, dict] | None = None) -> list[NodeSpec]:
    """One :class:`NodeSpec` per node section of a ROS parameters YAML, in file order; the
    wildcard section (``/**``) applies to every node through the same file."""
    import yaml

    sections = yaml.safe_load(Path(path).read_text()) or {}
    overrides = overrides or {}
    unknown = set(overrides) - set(sections)
    if unknown:
        raise ValueError(f"overrides name nodes not in {path}: {sorted(unknown)}")
    return [
        NodeSpec(name, params_file=str(path), parameters=dict(overrides.get(name, {})))
        for name in sections
        if not name.startswith("/")
    ]
