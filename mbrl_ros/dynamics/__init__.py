"""Dynamics models (ROS-free): the shared protocol, physics, local linear-Gaussian and learned models."""
