"""An arm played by a test: joint states at 200 Hz, in reversed joint order (joints are mapped by
name), that can be stopped or made to lie."""

import threading
import time

from sensor_msgs.msg import JointState

from mbrl_ros.ros import qos

NAMES = [f"panda_joint{i}" for i in range(1, 8)]
HOME = [0.0, -0.5, 0.0, -2.0, 0.0, 1.6, 0.8]


class FakeArm:
    """Publishes a fixed joint state until ``running`` is cleared; ``publishing`` pauses it."""

    def __init__(self, node) -> None:
        self.pub = node.create_publisher(JointState, "joint_states", qos.JOINT_STATES_PUB)
        self.node = node
        self.position = list(reversed(HOME))
        self.running = True
        self.publishing = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            if self.publishing:
                msg = JointState(name=list(reversed(NAMES)), position=list(self.position), velocity=[0.0] * 7)
                msg.header.stamp = self.node.get_clock().now().to_msg()
                self.pub.publish(msg)
            time.sleep(0.005)
