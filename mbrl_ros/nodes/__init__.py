"""rclpy nodes: thin adapters between ROS topics/parameters and the ROS-free core."""
