"""What an arm driven by mbrl_ros does with the torque commands it receives (README, *Topic
contract*), for the code on both sides of it: sim_node, which plays the arm, and the recorder and
``mbrl-ros fit``, which pair every control step with the command the arm applied. No imports, so
that any layer can use it.
"""

#: The arm applies a torque command for at most this long (s), then zero torque until the next
#: one; a step whose command in force is older counts as zero torque.
COMMAND_TIMEOUT_S = 0.05
