"""mbrl_ros: model-based reinforcement learning for torque-controlled robot arms on ROS 2."""

import os

# Thread settings, applied before numpy, torch or Pinocchio load (importing any mbrl_ros module
# runs this first). Our matrices are small (tens of rows) and the machines small: multi-threaded
# BLAS made one GMM refit 10-100x slower on 2 busy cores, and the idle threads of torch's and
# Pinocchio's separate OpenMP runtimes spin by default and starve each other (plans 4-30x slower).
# A user's own setting wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
