"""Episodes, replay buffer and rosbag2 I/O (ROS-free)."""
