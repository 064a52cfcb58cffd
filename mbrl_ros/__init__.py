"""mbrl_ros: model-based reinforcement learning for torque-controlled robot arms on ROS 2."""

import os

# torch and Pinocchio bring separate OpenMP runtimes whose idle threads spin by default and starve
# each other on small machines (plans measured 4-30x slower). Must be set before either loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
