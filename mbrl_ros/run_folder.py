"""Where a run's outputs go: one folder per run, ``$ROS_HOME/mbrl_ros/runs/<timestamp>`` unless one
is given, never the current directory (standard library only: the nodes' settings, the command
line and the launch files use it).

A run folder holds ``bags/`` (the recorder's ``bag_dir``), ``models/`` (the learner's
``model_dir``) and ``logs/`` (each node's output, where ``mbrl-ros`` starts the nodes).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

BAGS = "bags"
MODELS = "models"
LOGS = "logs"
#: A run folder's name: its start time, to the second.
NAME_FORMAT = "%Y%m%d_%H%M%S"


def ros_home() -> Path:
    """``$ROS_HOME``, or ``~/.ros`` when it is unset (the ROS convention)."""
    return Path(os.environ.get("ROS_HOME") or Path.home() / ".ros").expanduser()


def default_runs_dir() -> Path:
    """The folder that receives a run folder when none is given: ``$ROS_HOME/mbrl_ros/runs``."""
    return ros_home() / "mbrl_ros" / "runs"


def run_name(now: datetime | None = None) -> str:
    """The name of a run folder started at ``now`` (default: this moment)."""
    return (now or datetime.now()).strftime(NAME_FORMAT)


def default_run_dir() -> Path:
    """A new run's folder when none is given: ``$ROS_HOME/mbrl_ros/runs/<now>`` (not created here)."""
    return default_runs_dir() / run_name()
