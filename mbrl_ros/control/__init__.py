"""Optimal control (ROS-free): costs, LQR/iLQR, MPPI, CEM, policies and the LQR-FLM update."""
