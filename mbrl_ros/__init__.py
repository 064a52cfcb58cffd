"""mbrl_ros: model-based reinforcement learning for torque-controlled robot arms on ROS 2."""

__version__ = "0.1.0"
