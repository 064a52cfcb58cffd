"""Test-session isolation for ROS: a private DDS domain on localhost and logs in a temp folder.

Set at import, before any test creates an rclpy context or starts a node process, and inherited by
every process the tests start.
"""

import os
import tempfile

import mbrl_ros  # noqa: F401  (its thread settings must precede numpy and torch)

_ros_home = tempfile.mkdtemp(prefix="mbrl_ros_test_")
os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 100)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_HOME"] = _ros_home
os.environ["ROS_LOG_DIR"] = os.path.join(_ros_home, "log")
