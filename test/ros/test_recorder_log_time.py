"""The recorder logs every message at the time it was sent on the arm's clock, however late it gets
to it: here the sim runs at a quarter of real time (a sim that cannot keep up, or a user's choice)
and the recorder is frozen for 2 s (a busy machine), so it handles a backlog of seconds."""

import os
import signal
import time

import numpy as np
from rclpy.parameter import Parameter
from std_msgs.msg import Float64MultiArray

from mbrl_ros.data.bags import read_messages
from mbrl_ros.launcher import NodeSpec, config_path
from mbrl_ros.ros import qos
from mbrl_ros.ros.spin import wait_for

REAL_TIME_FACTOR = 0.25
COMMANDS = "/test/commands"  # a topic the sim does not apply: these "torques" carry their send time


def test_messages_are_logged_at_their_send_time_on_the_arm_clock_after_a_backlog(start_node, client_node, tmp_path):
    client_node.set_parameters([Parameter("use_sim_time", value=True)])
    start_node(NodeSpec("sim_node", params_file=str(config_path("sim_panda")),
                        parameters={"real_time_factor": REAL_TIME_FACTOR, "publish_clock": True}))
    recorder = start_node(NodeSpec("trajectory_recorder", parameters={"bag_dir": str(tmp_path), "use_sim_time": True},
                                   remappings={"effort_controller/commands": COMMANDS}))
    commands = client_node.create_publisher(Float64MultiArray, COMMANDS, qos.COMMANDS_PUB)
    clock = client_node.get_clock()
    assert wait_for(lambda: commands.get_subscription_count() >= 1 and clock.now().nanoseconds > 0, 30.0)
    time.sleep(1.0)  # the recorder hears the joint states

    sent = []
    start = time.monotonic()
    frozen = False
    while (elapsed := time.monotonic() - start) < 6.0:
        if 1.5 <= elapsed < 3.5 and not frozen:
            os.kill(recorder.pid, signal.SIGSTOP)
            frozen = True
        elif elapsed >= 3.5 and frozen:
            os.kill(recorder.pid, signal.SIGCONT)
            frozen = False
        now_s = clock.now().nanoseconds * 1e-9
        commands.publish(Float64MultiArray(data=[now_s] + [0.0] * 6))
        sent.append(now_s)
        time.sleep(0.02)
    time.sleep(1.0)
    recorder.stop()  # the recorder writes what it holds into its tail bag

    bags = sorted(p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith("."))
    logged = [(log_ns * 1e-9, msg.data[0]) for _, log_ns, msg in read_messages(bags, [COMMANDS])]
    assert len(logged) >= 0.95 * len(sent), f"{len(logged)} of {len(sent)} commands in the bags"
    log_s, sent_s = np.asarray(logged).T
    # The sender's clock reads /clock (2 ms of sim time apart, 8 ms of wall time at this rate): the
    # send time is known to within one clock step either side.
    error_s = np.abs(log_s - sent_s)
    assert error_s.max() <= 0.01, (
        f"log time minus send time: max {error_s.max() * 1e3:.0f} ms, "
        f"{(error_s > 0.01).sum()} of {len(error_s)} commands off by more than 10 ms")
